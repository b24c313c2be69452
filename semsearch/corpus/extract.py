"""Plain text out of HTML and PDF files, for the folder-corpus reader.

Both need the ``docs`` extra (``pip install 'semsearch[docs]'``: selectolax and pypdf), imported only
when a file of that kind is read. Every failure is a one-line :class:`~semsearch.errors.BadInput`
that names the file.

>>> html = b"<title>Cats</title><p>Cats purr.</p><script>x()</script><p>Dogs bark.</p>"
>>> html_text(html, "a.html")                                 # doctest: +SKIP
('Cats', 'Cats purr.\\n\\nDogs bark.')
>>> text, page_starts = pdf_text("manual.pdf", "manual.pdf")    # doctest: +SKIP
>>> page_starts                                                # doctest: +SKIP
[0, 1893, 4120]
"""

from __future__ import annotations

import contextlib
import io
import logging
from bisect import bisect_right
from pathlib import Path
from typing import Iterator

from ..errors import BadInput

__all__ = ["html_text", "pdf_text", "page_of", "DROPPED_TAGS", "BLOCK_TAGS"]

log = logging.getLogger(__name__)

#: Elements whose content is never text of the page.
DROPPED_TAGS = ("script", "style", "noscript", "template", "head")
#: Elements that start a new paragraph (``br`` and ``tr`` start a new line instead).
BLOCK_TAGS = ("p", "div", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "section",
              "article", "aside", "header", "footer", "nav", "main", "blockquote", "pre", "table", "caption",
              "figure", "figcaption", "form", "fieldset", "address", "details", "summary", "hr")
_LINE_TAGS = ("br", "tr")
_CELL_TAGS = ("td", "th")
# Private-use characters stand for breaks while the tree is flattened to one string.
_PARA, _LINE = "\ue000", "\ue001"
# Above this share of U+FFFD and control characters, "HTML" is taken for a binary file.
_MAX_JUNK = 0.05
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff")
_EXTRA = "pip install 'semsearch[docs]'"


def html_text(data: bytes, where: str) -> tuple[str, str]:
    """``(title, text)`` of an HTML document; ``where`` names it in errors.

    Bytes are UTF-8 unless a byte-order mark or a ``<meta charset>`` says otherwise. The title is the
    ``<title>`` ("" if none). The text leaves out scripts, styles and the head; each block element
    (paragraph, heading, list item, ...) becomes a paragraph, paragraphs are separated by a blank line
    and the whitespace inside one is collapsed (``<br>`` keeps a line break). :class:`BadInput` if the
    bytes are not text (a binary file) or the page has no text.
    """
    try:
        from selectolax.lexbor import LexborHTMLParser
    except ImportError:
        raise BadInput(f"reading .html files needs selectolax: {_EXTRA}") from None
    if b"\x00" in data and not data.startswith(_UTF16_32_BOMS):
        raise BadInput(f"{where}: not text (NUL bytes: a binary file?)")
    try:
        tree = LexborHTMLParser(data, encoding=True)
    except Exception as exc:  # selectolax raises assorted errors on input it cannot take
        raise BadInput(f"{where}: not readable HTML ({_one_line(exc)})") from None
    title_node = tree.css_first("head > title") or tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    text = _body_text(tree)
    if not text:
        raise BadInput(f"{where}: no text")
    if _junk_share(text) > _MAX_JUNK:
        raise BadInput(f"{where}: not text (undecodable bytes: a binary file?)")
    return title, text


def _body_text(tree) -> str:
    for node in tree.css(", ".join(DROPPED_TAGS)):
        node.decompose()
    body = tree.body
    if body is None:
        return ""
    for node in body.css("pre"):  # keep the lines of preformatted text
        node.replace_with(_PARA + node.text().replace("\n", _LINE) + _PARA)
    for node in body.css(", ".join(_LINE_TAGS)):
        node.insert_after(_LINE)
    for node in body.css(", ".join(_CELL_TAGS)):
        node.insert_after(" ")
    for node in body.css(", ".join(BLOCK_TAGS)):
        node.insert_before(_PARA)
        node.insert_after(_PARA)
    return _paragraphs(body.text())


def _paragraphs(flat: str) -> str:
    """Text with break markers → paragraphs separated by a blank line, whitespace collapsed inside."""
    paragraphs = []
    for chunk in flat.split(_PARA):
        lines = (" ".join(line.split()) for line in chunk.split(_LINE))
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def _junk_share(text: str) -> float:
    junk = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\n\r\f"))
    return junk / len(text)


def pdf_text(data_or_path: bytes | str | Path, where: str) -> tuple[str, list[int]]:
    """``(text, page_starts)`` of a PDF given as bytes or a path; ``where`` names it in errors.

    ``text`` is the text of the pages joined by a blank line (``"\\n\\n"``); ``page_starts[i]`` is the
    offset in ``text`` where page ``i + 1`` starts (``page_starts[0] == 0``), so :func:`page_of` turns
    an offset into a page number (a page without text starts where the next text starts).
    :class:`BadInput` if the PDF is encrypted with a password, broken, or has no extractable text
    (a scanned PDF needs OCR first).
    """
    try:
        from pypdf import PasswordType, PdfReader
        from pypdf.errors import DependencyError
    except ImportError:
        raise BadInput(f"reading .pdf files needs pypdf: {_EXTRA}") from None
    stream = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path
    with _quiet("pypdf"):
        try:
            reader = PdfReader(stream)
            if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                raise BadInput(f"{where}: encrypted PDF (needs a password)")
            pages = [page.extract_text() or "" for page in reader.pages]
        except BadInput:
            raise
        except DependencyError as exc:  # AES encryption without the cryptography package
            raise BadInput(f"{where}: encrypted PDF that pypdf cannot decrypt ({_one_line(exc)})") from None
        except Exception as exc:  # broken files raise assorted errors, not only PdfReadError
            raise BadInput(f"{where}: not a readable PDF ({_one_line(exc)})") from None
    text, page_starts = _join_pages(pages)
    if not text:
        raise BadInput(f"{where}: no extractable text in {len(pages)} page(s) (a scanned PDF? run OCR first)")
    return text, page_starts


def _join_pages(pages: list[str]) -> tuple[str, list[int]]:
    parts: list[str] = []
    starts: list[int] = []
    length = 0
    for page in pages:
        page = page.strip()
        if page and parts:
            parts.append("\n\n")
            length += 2
        starts.append(length)
        if page:
            parts.append(page)
            length += len(page)
    return "".join(parts), starts


def page_of(offset: int, page_starts: list[int]) -> int:
    """The page number (from 1) of the character at ``offset`` of a PDF's text.

    >>> [page_of(i, [0, 10, 10, 25]) for i in (0, 9, 10, 30)]
    [1, 1, 3, 4]
    """
    return max(1, bisect_right(page_starts, offset))


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library's warnings (broken files make pypdf log many) while it reads one file."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if len(message) <= 200 else message[:197] + "..."
