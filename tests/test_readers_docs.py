"""Folder corpora of HTML, PDF, text and Markdown files, and what an unreadable file does."""

from __future__ import annotations

import io
import json
import logging
import random

import pytest

from semsearch import BadInput, read_corpus
from semsearch.corpus.extract import html_text, page_of, pdf_text
from semsearch.corpus.readers import ON_ERROR, Corpus

PAGES = ["Hello page one", "Second page talks about cats", "Third page about dogs"]


def _pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF, one line of Helvetica text per page, with a correct cross-reference table."""
    n = len(pages)
    font = 3 + 2 * n
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {n} >>"]
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _encrypted_pdf(pages: list[str]) -> bytes:
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(_pdf(pages))))
    writer.encrypt("secret", algorithm="RC4-128")  # RC4 needs no cryptography package
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _junk(n: int = 3000, seed: int = 7) -> bytes:
    return bytes(random.Random(seed).randrange(256) for _ in range(n))


HTML = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>  Cats and   dogs </title>
<style>p { color: red }</style><script>var hidden = "script text";</script></head>
<body><h1>Pets</h1><p>Cats   purr
   when content.</p><script>alert("nope")</script><noscript>enable js</noscript>
<div>Dogs bark.<br>Loudly.</div><ul><li>first item</li><li>second item</li></ul>
<table><tr><td>a</td><td>b</td></tr></table><template>tpl text</template></body></html>"""


def test_html_title_and_paragraphs_without_script_and_style():
    pytest.importorskip("selectolax")
    title, text = html_text(HTML, "pets.html")
    assert title == "Cats and dogs"
    assert text == "Pets\n\nCats purr when content.\n\nDogs bark.\nLoudly.\n\nfirst item\n\nsecond item\n\na b"
    for hidden in ("color", "script text", "nope", "enable js", "tpl text"):
        assert hidden not in text


def test_html_honours_meta_charset_and_defaults_to_utf8():
    pytest.importorskip("selectolax")
    latin = '<meta charset="windows-1252"><title>Café</title><p>crème brûlée</p>'.encode("cp1252")
    assert html_text(latin, "l.html") == ("Café", "crème brûlée")
    assert html_text("<p>naïve café</p>".encode(), "u.html") == ("", "naïve café")


@pytest.mark.parametrize("data,reason", [
    (_junk(), "not text"),
    (b"\x00\x01\x02<p>text</p>", "not text"),
    (b"<html><head><title>T</title></head><body><script>x</script></body></html>", "no text"),
])
def test_binary_or_textless_html_is_a_one_line_bad_input(data, reason):
    pytest.importorskip("selectolax")
    with pytest.raises(BadInput, match=f"^bad.html: {reason}") as info:
        html_text(data, "bad.html")
    assert "\n" not in str(info.value)


def test_pdf_text_and_page_starts():
    pytest.importorskip("pypdf")
    text, starts = pdf_text(_pdf(PAGES), "p.pdf")
    assert len(starts) == 3 and starts[0] == 0
    for number, (page, start) in enumerate(zip(PAGES, starts), start=1):
        assert text[start:].startswith(page)
        assert page_of(start, starts) == number and page_of(start + len(page) - 1, starts) == number
    assert text == "\n\n".join(PAGES)


def test_pdf_from_a_path(tmp_path):
    pytest.importorskip("pypdf")
    (tmp_path / "p.pdf").write_bytes(_pdf(PAGES[:2]))
    text, starts = pdf_text(tmp_path / "p.pdf", "p.pdf")
    assert starts == [0, len(PAGES[0]) + 2] and PAGES[1] in text


@pytest.mark.parametrize("make,reason", [
    (lambda: _encrypted_pdf(PAGES), "encrypted PDF \\(needs a password\\)"),
    (lambda: _junk(), "not a readable PDF \\("),
    (lambda: _pdf(PAGES)[:60], "not a readable PDF \\("),
    (lambda: b"%PDF-1.4\n" + _junk(500), "not a readable PDF \\("),
    (lambda: _pdf(["", ""]), "no extractable text"),
])
def test_unreadable_pdf_is_a_one_line_bad_input(make, reason, caplog):
    pytest.importorskip("pypdf")
    with caplog.at_level(logging.WARNING), pytest.raises(BadInput, match=f"^notes/a.pdf: {reason}") as info:
        pdf_text(make(), "notes/a.pdf")
    assert "\n" not in str(info.value)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")], "pypdf's own warnings leak"


def test_folder_reads_every_kind_with_metadata(tmp_path):
    pytest.importorskip("pypdf")
    pytest.importorskip("selectolax")
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.MD").write_text("# beta")
    (tmp_path / "c.markdown").write_text("gamma")
    (tmp_path / "sub" / "d.HTM").write_bytes(HTML)
    (tmp_path / "sub" / "e.pdf").write_bytes(_pdf(PAGES))
    (tmp_path / "empty.pdf").write_bytes(b"")
    (tmp_path / "empty.html").write_bytes(b"  \n")
    (tmp_path / "ignored.py").write_text("x = 1")
    docs = {d.id: d for d in read_corpus(tmp_path)}
    assert list(docs) == ["a.txt", "b.MD", "c.markdown", "sub/d.HTM", "sub/e.pdf"]
    assert docs["sub/d.HTM"].title == "Cats and dogs" and docs["sub/d.HTM"].metadata == {"path": "sub/d.HTM"}
    pdf = docs["sub/e.pdf"]
    assert pdf.metadata["path"] == "sub/e.pdf" and pdf.metadata["pages"] == 3
    assert [pdf.text[s:s + len(p)] for s, p in zip(pdf.metadata["page_starts"], PAGES)] == PAGES
    assert docs["a.txt"].metadata == {"path": "a.txt"}


def _bad_folder(tmp_path):
    (tmp_path / "a.txt").write_text("good text")
    (tmp_path / "b.txt").write_bytes(_junk())
    (tmp_path / "c.pdf").write_bytes(_junk())
    (tmp_path / "d.md").write_text("good markdown")
    (tmp_path / "e.txt").write_bytes(b"valid utf-8 \x00\x00 but binary")
    return tmp_path


def test_binary_txt_fails_by_default_naming_file_and_line(tmp_path):
    folder = _bad_folder(tmp_path)
    corpus = read_corpus(folder)
    with pytest.raises(BadInput, match=r"b\.txt:\d+: not valid UTF-8") as info:
        list(corpus)
    assert "\n" not in str(info.value) and str(folder / "b.txt") in str(info.value)
    (folder / "b.txt").unlink()
    (folder / "c.pdf").unlink()
    with pytest.raises(BadInput, match=r"e\.txt:1: not text \(NUL bytes"):
        list(read_corpus(folder))


def test_skip_yields_good_files_and_lists_bad_ones(tmp_path, caplog):
    pytest.importorskip("pypdf")
    folder = _bad_folder(tmp_path)
    corpus = read_corpus(folder, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="semsearch.corpus.readers"):
        docs = list(corpus)  # list() calls len() first: two passes, each file is warned about once
    assert [d.id for d in docs] == ["a.txt", "d.md"]
    skipped = dict(corpus.skipped)
    assert list(skipped) == [str(folder / "b.txt"), str(folder / "c.pdf"), str(folder / "e.txt")]
    assert skipped[str(folder / "b.txt")].startswith("line ") and "not valid UTF-8" in skipped[str(folder / "b.txt")]
    assert skipped[str(folder / "c.pdf")].startswith("not a readable PDF")
    assert "NUL bytes" in skipped[str(folder / "e.txt")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("skipping" in w for w in warnings)
    assert str(folder / "c.pdf") in warnings[1] and "not a readable PDF" in warnings[1]
    assert [d.id for d in corpus] == ["a.txt", "d.md"] and len(corpus.skipped) == 3  # a fresh list each time
    (folder / "b.txt").unlink()
    assert [d.id for d in corpus] == ["a.txt", "d.md"] and len(corpus.skipped) == 2


def test_on_error_is_validated_when_opening(tmp_path):
    assert ON_ERROR == ("fail", "skip")
    with pytest.raises(BadInput, match="valid values are: fail, skip"):
        read_corpus(tmp_path, on_error="ignore")
    with pytest.raises(BadInput, match="valid values are: fail, skip"):
        Corpus(str(tmp_path), "dir", None, "text", "title", on_error="warn")
    assert Corpus(str(tmp_path), "dir", None, "text", "title").on_error == "fail"  # old signature still works


def test_skip_does_not_apply_to_single_file_corpora(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_bytes(b'{"_id": "1", "text": "ok"}\n{"_id": \n')
    with pytest.raises(BadInput, match="c.jsonl:2: invalid JSON"):
        list(read_corpus(f, on_error="skip"))


# --- end to end: a folder of documents people have, indexed and searched ----------------------------


def _cli(*args):
    from click.testing import CliRunner

    from semsearch.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_pdf_hits_name_the_page_of_their_passage_and_skip_counts_broken_files(tmp_path, tiny_bert):
    pytest.importorskip("pypdf")
    pytest.importorskip("selectolax")
    from conftest import one_line_error

    folder = tmp_path / "docs"
    folder.mkdir()
    pages = ["the cat sat on the mat " * 8, "a dog barked at the moon " * 8, "rivers flow to the sea " * 8]
    (folder / "manual.pdf").write_bytes(_pdf(pages))
    (folder / "page.html").write_bytes(b"<title>Birds</title><p>birds sang in tall green trees</p>")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    index = tmp_path / "idx"
    one_line_error(_cli("index", folder, "--index", index, "--model", tiny_bert, "-q"), "broken.pdf")
    assert not index.exists()  # --on-error fail (the default) wrote nothing
    result = _cli("index", folder, "--index", index, "--model", tiny_bert, "-q", "--on-error", "skip",
                  "--passage-tokens", 32, "--passage-overlap", 0)
    assert result.exit_code == 0, result.output
    assert "2 documents" in result.stdout and "1 unreadable file skipped" in result.stdout
    rows = [json.loads(line) for line in _cli("query", "rivers flow to the sea", "--index", index, "--json",
                                              "--mode", "lexical", "-k", 1).stdout.splitlines()]
    assert rows[0]["id"] == "manual.pdf" and rows[0]["page"] == 3 and "rivers" in rows[0]["passage"]
    table = _cli("query", "birds trees", "--index", index, "--mode", "lexical", "-k", 1).stdout
    assert "Birds" in table and "birds sang" in table


def test_a_build_reads_each_file_of_a_folder_once_and_the_progress_total_needs_no_reading(tmp_path, monkeypatch):
    from fakes import HashEmbedder

    from semsearch import SearchEngine
    from semsearch.corpus import readers

    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(3):
        (folder / f"n{i}.txt").write_text(f"note number {i} about cats")
    reads = []
    real = readers._read_file
    monkeypatch.setattr(readers, "_read_file", lambda *a: reads.append(a[1]) or real(*a))
    corpus = read_corpus(folder)
    assert corpus.size_hint == 3 and reads == []  # counted without reading a file
    SearchEngine.build(corpus, tmp_path / "idx", embedder=HashEmbedder(), progress=True).close()
    assert sorted(reads) == ["n0.txt", "n1.txt", "n2.txt"]  # once each (len() used to read them all first)
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"id": str(i), "text": "x"}) + "\n" for i in range(5)))
    assert read_corpus(tmp_path / "c.jsonl").size_hint == 5 == len(read_corpus(tmp_path / "c.jsonl"))
    assert readers.size_hint(iter([])) is None and readers.size_hint([1, 2]) == 2
