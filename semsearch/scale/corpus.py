"""Stage 1 at scale, first half: the corpus of a Ray build (``semsearch index --engine ray``) as a Ray Dataset.

A corpus is a JSONL, CSV/TSV or Parquet file, or a folder of files of one format. JSONL is read as
numbered lines that the embedding actors parse exactly as a local build does; CSV/TSV by the local
reader itself, one task per file; Parquet as it is. Used by :mod:`semsearch.scale.build`.

>>> corpus_files("corpus.jsonl")                                  # doctest: +SKIP
([PosixPath('corpus.jsonl')], 'jsonl')
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..corpus.readers import EXTENSIONS
from ..errors import BadInput
from ..index.store import metadata_json

__all__ = ["corpus_files", "check_columns", "read_dataset", "RAY_FORMATS"]

RAY_FORMATS = ("jsonl", "csv", "tsv", "parquet")


def corpus_files(source: str | os.PathLike, format: str | None = None) -> tuple[list[Path], str]:
    """The files of a corpus for Ray, and their format: a file, or every file of one format in a folder."""
    p = Path(source).expanduser()
    if not p.exists():
        raise BadInput(f"corpus {str(source)!r} does not exist")
    if format is not None and format not in RAY_FORMATS:
        raise BadInput(f"the Ray engine reads {', '.join(RAY_FORMATS)}, not {format!r}")
    if p.is_file():
        fmt = format or EXTENSIONS.get(p.suffix.lower())
        if fmt not in RAY_FORMATS:
            raise BadInput(f"the Ray engine reads {', '.join(RAY_FORMATS)} files; cannot tell the format of "
                           f"{str(source)!r} from its extension (pass a format)")
        return [p], fmt
    files = sorted(f for f in p.rglob("*") if f.is_file() and EXTENSIONS.get(f.suffix.lower()) in RAY_FORMATS)
    kinds = sorted({EXTENSIONS[f.suffix.lower()] for f in files})
    if format is not None:
        files = [f for f in files if EXTENSIONS[f.suffix.lower()] == format]
    elif len(kinds) > 1:
        raise BadInput(f"folder {str(source)!r} holds files of several formats ({', '.join(kinds)}); pass a format")
    if not files:
        raise BadInput(f"folder {str(source)!r} holds no {format or ' / '.join(RAY_FORMATS)} files")
    return files, format or kinds[0]


def check_columns(files: list[Path], fmt: str, fields: tuple) -> None:
    """CSV/TSV and Parquet name their columns up front: check the id and text columns are there."""
    if fmt == "jsonl":
        return
    id_field, text_field, _ = fields
    for file, columns in zip(files, _columns(files, fmt)):
        for field in (id_field or next((f for f in ("_id", "id") if f in columns), "id"), text_field):
            if field not in columns:
                raise BadInput(f"{file}: no column {field!r} (columns: {', '.join(columns) or 'none'})")


def _columns(files: list[Path], fmt: str) -> list[list[str]]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return [pq.read_schema(f).names for f in files]
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read Parquet schema: {exc}") from None
    headers = []
    for file in files:
        try:
            with open(file, encoding="utf-8-sig", newline="") as fh:  # as the local reader, a BOM is dropped
                headers.append(next(csv.reader(fh, delimiter="\t" if fmt == "tsv" else ","), []))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise BadInput(f"cannot read the header of {file}: {exc}") from None
    return headers


def read_dataset(ray, files: list[Path], fmt: str, fields: tuple, rows_per_block: int):
    """The corpus as a Ray Dataset of raw records: JSONL as numbered lines (split on newlines only, and
    parsed by the actors exactly as a local build parses them; no schema inference), CSV/TSV as documents
    read by the local reader, one task per file, Parquet as it is (folder names are not read as columns).
    A file's records come as one block; they are split into blocks of ``rows_per_block`` so that every
    actor gets work."""
    paths = [str(f) for f in files]
    if fmt == "jsonl":
        lines = ray.data.read_binary_files(paths, include_paths=True).flat_map(_jsonl_lines)
        return lines.repartition(target_num_rows_per_block=rows_per_block)  # a file is one block: split it
    if fmt == "parquet":
        return ray.data.read_parquet(paths, partitioning=None)
    # CSV/TSV: parsed by the local reader itself (Python's csv: quoted newlines, short rows, line numbers)
    documents = ray.data.from_items([{"path": p} for p in paths]).flat_map(_csv_documents, fn_args=(fmt, fields))
    return documents.repartition(target_num_rows_per_block=rows_per_block)


def _csv_documents(row: dict, fmt: str, fields: tuple) -> list[dict]:
    """One CSV/TSV file's documents, read by :func:`semsearch.corpus.read_corpus` (same rules, same errors)."""
    from ..corpus.readers import read_corpus

    id_field, text_field, title_field = fields
    return [{"id": d.id, "title": d.title, "text": d.text, "metadata": metadata_json(d)}
            for d in read_corpus(row["path"], format=fmt, id_field=id_field, text_field=text_field,
                                 title_field=title_field)]


def _jsonl_lines(row: dict) -> list[dict]:
    """A JSONL file's non-blank lines, numbered from 1: split on ``\\n`` only, as the local reader does
    (``str.splitlines`` would also split inside strings holding U+2028 or U+0085)."""
    lines = []
    for number, raw in enumerate(row["bytes"].split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"{row['path']}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        if line.strip():
            lines.append({"line": line, "path": row["path"], "number": number})
    return lines
