"""Reading documents, queries and relevance judgements from files.

Supported corpora: JSONL (BEIR style), CSV/TSV, Parquet, plain ``.txt`` (one document
per line), a folder of documents, and ``builtin:python-docs`` (the docstrings of the
installed Python standard library, a real corpus every machine has).

A folder corpus reads, in every subfolder, one document per file: ``.txt``, ``.md`` /
``.markdown`` (as they are), ``.html`` / ``.htm`` (the visible text, the ``<title>`` as title)
and ``.pdf`` (the text of every page; metadata ``pages`` and ``page_starts``). HTML and PDF
need the ``docs`` extra: ``pip install 'semsearch[docs]'``. A file that cannot be read stops
the reading, or with ``on_error="skip"`` is left out and listed in :attr:`Corpus.skipped`.

>>> docs = read_corpus("corpus.jsonl")        # doctest: +SKIP
>>> len(docs), next(iter(docs)).id            # doctest: +SKIP
(5183, '4983')
"""

from __future__ import annotations

import csv
import datetime
import decimal
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import BadInput
from ..types import Document
from .builtin import python_docstrings
from .extract import html_text, pdf_text

__all__ = ["Corpus", "read_corpus", "size_hint", "document_from_record", "invalid_unicode", "json_record",
           "read_queries", "read_qrels", "read_jsonl_fields", "FORMATS", "EXTENSIONS", "ON_ERROR", "DIR_SUFFIXES"]

log = logging.getLogger(__name__)

_BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark
_FIELD_LIMIT = 2**31 - 1  # the csv module's field size limit while reading a corpus (a C long on every platform)

FORMATS = ("jsonl", "csv", "tsv", "parquet", "txt", "dir")
#: File extension of each single-file format.
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".txt": "txt"}
#: What a folder corpus reads: file suffix (lower case) → kind of file.
DIR_SUFFIXES = {".txt": "text", ".md": "text", ".markdown": "text", ".html": "html", ".htm": "html", ".pdf": "pdf"}
#: Valid values of ``on_error``: stop at the first unreadable file, or leave it out and go on.
ON_ERROR = ("fail", "skip")
BUILTIN_PYTHON_DOCS = "builtin:python-docs"
_ID_FIELDS = ("_id", "id")


class Corpus:
    """A re-iterable stream of :class:`Document` read from a file or folder.

    Iterating parses the source again; ``len()`` counts documents with one pass
    (cached), so a progress bar can show a total without holding the corpus in memory.

    ``on_error`` (one of :data:`ON_ERROR`) says what an unreadable file of a folder corpus does:
    ``"fail"`` raises :class:`BadInput`, ``"skip"`` logs a warning, leaves the file out and lists it in
    :attr:`skipped`.
    """

    def __init__(self, source: str, fmt: str, id_field: str | None, text_field: str, title_field: str, *,
                 on_error: str = "fail"):
        self.source, self.format = source, fmt
        self._fields = (id_field, text_field, title_field)
        self.on_error = _check_on_error(on_error)
        self._len: int | None = None
        self._skipped: list[tuple[str, str]] = []
        self._warned: set[str] = set()

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of each file the latest iteration left out (``on_error="skip"``).

        Reset when an iteration starts; ``len()`` iterates too, the first time (and ``list(corpus)`` calls
        ``len()``). Each file is logged as a warning once per corpus, however many times it is iterated.
        """
        return list(self._skipped)

    def __iter__(self) -> Iterator[Document]:
        if self.format == "builtin":
            return python_docstrings()
        if self.format == "dir":
            self._skipped = []
            return _read_dir(Path(self.source), self.on_error, self._skip)
        reader = {"jsonl": _read_jsonl, "csv": _read_csv, "tsv": _read_csv, "parquet": _read_parquet, "txt": _read_txt}
        return reader[self.format](Path(self.source), self.format, *self._fields)

    def _skip(self, path: str, reason: str) -> None:
        if path not in self._warned:
            self._warned.add(path)
            log.warning("skipping %s: %s", path, reason)
        self._skipped.append((path, reason))

    def __len__(self) -> int:
        """The number of documents: the corpus is read through once to count them (then remembered)."""
        if self._len is None:
            self._len = sum(1 for _ in self)
        return self._len

    @property
    def size_hint(self) -> int:
        """About how many documents there are, for a progress bar, without parsing them: a folder's
        readable-looking files (none is read, so a PDF is not extracted twice), a JSONL or text file's
        lines; the exact :func:`len` for the other formats."""
        if self._len is not None:
            return self._len
        if self.format == "dir":
            return sum(1 for f in Path(self.source).rglob("*") if f.suffix.lower() in DIR_SUFFIXES and f.is_file())
        if self.format in ("jsonl", "txt"):
            try:
                with open(self.source, "rb") as fh:
                    return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
            except OSError:
                return 0  # reading it will say why
        return len(self)

    def __repr__(self) -> str:
        return f"Corpus({self.source!r}, format={self.format!r})"


def size_hint(documents) -> int | None:
    """About how many documents an iterable holds, for a progress bar: :attr:`Corpus.size_hint`, ``len()``
    of a sized collection, else ``None`` (a generator is never consumed to count it)."""
    if isinstance(documents, Corpus):
        return documents.size_hint
    return len(documents) if hasattr(documents, "__len__") else None


def read_corpus(
    path: str | Path,
    *,
    format: str | None = None,
    id_field: str | None = None,
    text_field: str = "text",
    title_field: str = "title",
    on_error: str = "fail",
) -> Corpus:
    """Open a corpus. ``format`` is guessed from the extension unless given (one of :data:`FORMATS`).

    ``id_field`` defaults to ``_id`` or ``id`` (whichever the record has). Fields
    other than id, title and text are kept as metadata. Errors (missing file,
    bad JSON, non-UTF-8 bytes, missing fields) raise :class:`BadInput` naming the
    file and line; they surface when the corpus is iterated.

    A folder corpus (format ``dir``) reads the files of :data:`DIR_SUFFIXES`; document ids are the
    paths relative to the folder, metadata ``{"path": ...}`` plus, for a PDF, ``pages`` (count) and
    ``page_starts`` (offset in the text where each page starts). ``on_error`` (one of
    :data:`ON_ERROR`) says what a file that cannot be read (binary bytes, a broken or encrypted
    PDF, an HTML page without text) does: ``"fail"`` (default) raises :class:`BadInput` naming it,
    ``"skip"`` logs a warning, leaves it out and records it in :attr:`Corpus.skipped`. Empty files are
    left out silently. ``on_error`` applies to the files of a folder only: in a single-file corpus
    (JSONL, CSV, ...) a bad line or record always raises.
    """
    _check_on_error(on_error)
    source = str(path)
    if source == BUILTIN_PYTHON_DOCS:
        return Corpus(source, "builtin", None, text_field, title_field, on_error=on_error)
    p = Path(source).expanduser()
    if not p.exists():
        raise BadInput(f"corpus {source!r} does not exist")
    if format is None:
        if p.is_dir():
            format = "dir"
        else:
            format = EXTENSIONS.get(p.suffix.lower())
            if format is None:
                raise BadInput(
                    f"cannot tell the format of {source!r} from its extension; "
                    f"pass a format, one of: {', '.join(FORMATS)}"
                )
    elif format not in FORMATS:
        raise BadInput(f"unknown corpus format {format!r}; valid values are: {', '.join(FORMATS)}")
    if (format == "dir") != p.is_dir():
        raise BadInput(f"corpus {source!r} is {'a folder' if p.is_dir() else 'a file'}, not format {format!r}")
    return Corpus(str(p), format, id_field, text_field, title_field, on_error=on_error)


def _check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise BadInput(f"unknown on_error value {on_error!r}; valid values are: {', '.join(ON_ERROR)}")
    return on_error


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 file, numbered from 1 (a byte-order mark at its start, as some editors write, dropped)."""
    try:
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BadInput(f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None


def invalid_unicode(value: Any) -> bool:
    """Whether ``value`` (text, or lists and maps of it) holds a lone surrogate, as JSON can spell one
    (``"\\ud800"``): valid JSON, but no tokenizer, database or JSON answer takes it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(invalid_unicode(k) or invalid_unicode(v) for k, v in value.items())
    if isinstance(value, list):
        return any(invalid_unicode(v) for v in value)
    return False


def document_from_record(record: dict[str, Any], where: str, id_field: str | None, text_field: str,
                         title_field: str) -> Document:
    """One record (a JSON object, a CSV row, a Parquet row) as a :class:`Document`; :class:`BadInput`
    naming ``where`` if it lacks an id or a text. Fields other than id, title and text become metadata."""
    fields = [id_field] if id_field else [f for f in _ID_FIELDS if f in record][:1]
    if not fields or fields[0] not in record:
        raise BadInput(f"{where}: record has no id field ({id_field or ' or '.join(_ID_FIELDS)})")
    doc_id = record[fields[0]]
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id).strip() == "":
        raise BadInput(f"{where}: id must be a non-empty string or integer, got {doc_id!r}")
    text, title = record.get(text_field), record.get(title_field) or ""
    if text is None:
        raise BadInput(f"{where}: record {doc_id!r} has no {text_field!r} field")
    if not isinstance(text, str) or not isinstance(title, str):
        raise BadInput(f"{where}: record {doc_id!r}: {text_field!r} and {title_field!r} must be strings")
    if not text.strip() and not title.strip():
        raise BadInput(f"{where}: record {doc_id!r} has an empty text")
    if invalid_unicode(record):  # a JSON escape can spell a lone surrogate; encoding a record costs microseconds
        raise BadInput(f"{where}: record {doc_id!r} holds text that is not valid Unicode (a lone surrogate)")
    skip = {fields[0], text_field, title_field}
    metadata = {k: _plain(v) for k, v in record.items() if k not in skip}
    if set(metadata) == {"metadata"} and isinstance(metadata["metadata"], dict):
        metadata = metadata["metadata"]  # BEIR files nest it already
    return Document(str(doc_id), text, title, metadata)


def json_record(line: str, where: str) -> dict[str, Any]:
    """One JSONL line as a JSON object; :class:`BadInput` naming ``where`` (file:line) otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise BadInput(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _read_jsonl(path: Path, fmt, id_field, text_field, title_field) -> Iterator[Document]:
    for number, line in _lines(path):
        if line.strip():
            where = f"{path}:{number}"
            yield document_from_record(json_record(line, where), where, id_field, text_field, title_field)


def _read_csv(path: Path, fmt, id_field, text_field, title_field) -> Iterator[Document]:
    # quoted fields as Python's csv and pandas write them; strict: a stray quote (a text that starts with '"' in
    # a file that does not quote) is an error naming its line, never a field that swallows the rows after it
    csv.field_size_limit(_FIELD_LIMIT)  # raised for the process: the default, 128 KiB, is less than a long document
    rows = csv.DictReader((line for _, line in _lines(path)), delimiter="\t" if fmt == "tsv" else ",", strict=True)
    try:
        header = rows.fieldnames or []
        for field in (id_field or next((f for f in _ID_FIELDS if f in header), "id"), text_field):
            if field not in header:
                raise BadInput(f"{path}: no column {field!r} (columns: {', '.join(header) or 'none'})")
        for row in rows:
            if None in row:
                raise BadInput(f"{path}:{rows.line_num}: more fields than the header has")
            yield document_from_record(row, f"{path}:{rows.line_num}", id_field, text_field, title_field)
    except csv.Error as exc:  # raised while reading the line after the last one counted
        raise BadInput(f"{path}:{rows.line_num + 1}: {exc}") from None


def _read_parquet(path: Path, fmt, id_field, text_field, title_field) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise BadInput(f"cannot read {path} as Parquet: {exc}") from None
    columns = parquet.schema_arrow.names
    for field in (id_field or next((f for f in _ID_FIELDS if f in columns), "id"), text_field):
        if field not in columns:
            raise BadInput(f"{path}: no column {field!r} (columns: {', '.join(columns) or 'none'})")
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            row += 1
            yield document_from_record(record, f"{path}: row {row}", id_field, text_field, title_field)


def _plain(value: Any) -> Any:
    """A metadata value as JSON can hold it (Parquet's dates and the like): dates and times as ISO 8601 text,
    decimals as numbers, bytes as text where they are UTF-8 (else left out), inside lists and maps too."""
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _read_txt(path: Path, fmt, id_field, text_field, title_field) -> Iterator[Document]:
    for number, line in _lines(path):
        if line.strip():
            yield Document(str(number), line.strip())


def _read_dir(path: Path, on_error: str, skip: Callable[[str, str], None]) -> Iterator[Document]:
    """The documents of a folder; an unreadable file raises, or with ``on_error="skip"`` goes to ``skip``."""
    files = sorted(f for f in path.rglob("*") if f.suffix.lower() in DIR_SUFFIXES and f.is_file())
    for file in files:
        try:
            doc = _read_file(file, file.relative_to(path).as_posix())
        except BadInput as exc:
            if on_error == "fail":
                raise
            skip(str(file), _reason(str(exc), str(file)))
            continue
        if doc is not None:
            yield doc


def _read_file(file: Path, rel: str) -> Document | None:
    """One file of a folder corpus as a document (``None`` if it is empty); :class:`BadInput` if unreadable."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise BadInput(f"{file}: cannot read ({exc.strerror or exc})") from None
    if not data.strip():
        return None
    kind = DIR_SUFFIXES[file.suffix.lower()]
    if kind == "pdf":
        text, page_starts = pdf_text(data, str(file))
        return Document(rel, text, metadata={"path": rel, "pages": len(page_starts), "page_starts": page_starts})
    if kind == "html":
        title, text = html_text(data, str(file))
        return Document(rel, text, title=title, metadata={"path": rel})
    text = _utf8_text(data, file).strip()
    return Document(rel, text, metadata={"path": rel}) if text else None


def _utf8_text(data: bytes, file: Path) -> str:
    """A text file's bytes as text; :class:`BadInput` naming ``file:line`` if not UTF-8 or binary (NUL bytes)."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)
        raise BadInput(f"{file}:{line}: not valid UTF-8 ({exc.reason} at byte {start})") from None
    nul = text.find("\0")
    if nul >= 0:
        raise BadInput(f"{file}:{text.count(chr(10), 0, nul) + 1}: not text (NUL bytes: a binary file?)")
    return text


def _reason(message: str, where: str) -> str:
    """The reason in a ``where: reason`` or ``where:line: reason`` message."""
    if message.startswith(f"{where}: "):
        return message[len(where) + 2:]
    if message.startswith(f"{where}:"):
        line, _, rest = message[len(where) + 1:].partition(": ")
        if line.isdigit():
            return f"line {line}: {rest}"
    return message


def read_jsonl_fields(path: str | Path, fields: tuple[str, ...], what: str) -> Iterator[tuple[int, tuple]]:
    """``(line number, values of fields)`` for each non-blank line of a JSONL file of objects.

    Shared by the small JSONL inputs (labelled examples, training pairs): the file must exist,
    be UTF-8 and hold JSON objects with every one of ``fields``; errors name the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{what} file {str(path)!r} does not exist")
    wanted = " and ".join(repr(f) for f in fields)
    for number, line in _lines(p):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            yield number, tuple(row[f] for f in fields)
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"{p}:{number}: expected a JSON object with {wanted}") from None


def read_queries(path: str | Path) -> dict[str, str]:
    """Queries from a BEIR ``queries.jsonl`` (``_id``, ``text``): ``{query_id: text}``."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"queries file {str(path)!r} does not exist")
    queries: dict[str, str] = {}
    for doc in _read_jsonl(p, "jsonl", None, "text", "title"):
        if doc.id in queries:
            raise BadInput(f"{p}: duplicate query id {doc.id!r}")
        queries[doc.id] = doc.text
    if not queries:
        raise BadInput(f"{p}: no queries")
    return queries


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Relevance judgements from a BEIR qrels TSV (header ``query-id corpus-id score``)."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"qrels file {str(path)!r} does not exist")
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(p):
        parts = line.rstrip("\r\n").split("\t")
        if number == 1 and parts[:2] == ["query-id", "corpus-id"]:
            continue
        if not line.strip():
            continue
        if len(parts) != 3:
            raise BadInput(f"{p}:{number}: expected 3 tab-separated fields (query-id corpus-id score)")
        try:
            grade = int(float(parts[2]))
        except (ValueError, OverflowError):
            raise BadInput(f"{p}:{number}: score {parts[2]!r} is not a number") from None
        qrels.setdefault(parts[0], {})[parts[1]] = grade
    if not qrels:
        raise BadInput(f"{p}: no relevance judgements")
    return qrels

