"""Corpus, queries and qrels readers, and their errors."""

from __future__ import annotations

import json

import pytest

from semsearch import BadInput, read_corpus, read_qrels, read_queries
from semsearch.corpus.builtin import python_docstrings


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_jsonl_beir_style_keeps_other_fields_as_metadata(tmp_path):
    f = _write(tmp_path / "c.jsonl", "\n".join([
        json.dumps({"_id": "1", "title": "T", "text": "hello", "metadata": {"year": 2020}}),
        json.dumps({"id": 2, "text": "world", "lang": "en"}),
        "",
    ]))
    docs = list(read_corpus(f))
    assert [(d.id, d.title, d.text, d.metadata) for d in docs] == [
        ("1", "T", "hello", {"year": 2020}), ("2", "", "world", {"lang": "en"})]
    assert len(read_corpus(f)) == 2


def test_csv_and_tsv_with_named_fields(tmp_path):
    c = _write(tmp_path / "c.csv", 'key,body,extra\nk1,"hello, world",x\nk2,second,y\n')
    docs = list(read_corpus(c, id_field="key", text_field="body"))
    assert [(d.id, d.text, d.metadata) for d in docs] == [("k1", "hello, world", {"extra": "x"}),
                                                         ("k2", "second", {"extra": "y"})]
    t = _write(tmp_path / "c.tsv", "id\ttext\na\tone\nb\ttwo\n")
    assert [d.id for d in read_corpus(t)] == ["a", "b"]
    with pytest.raises(BadInput, match="no column 'body'"):
        list(read_corpus(t, text_field="body"))


def test_txt_one_document_per_line_ids_are_line_numbers(tmp_path):
    f = _write(tmp_path / "c.txt", "first\n\n  second  \n")
    assert [(d.id, d.text) for d in read_corpus(f)] == [("1", "first"), ("3", "second")]


def test_folder_of_text_and_markdown_files(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "a.txt", "alpha")
    _write(tmp_path / "sub" / "b.md", "# beta")
    _write(tmp_path / "ignored.py", "x = 1")
    assert [(d.id, d.text) for d in read_corpus(tmp_path)] == [("a.txt", "alpha"), ("sub/b.md", "# beta")]


@pytest.mark.parametrize("content,message", [
    (b'{"_id": "1", "text": "ok"}\n{"_id": "2", "text": "caf\xe9"}\n', r"c.jsonl:2: not valid UTF-8"),
    (b'{"_id": "1", "text": "ok"}\n{"_id": \n', r"c.jsonl:2: invalid JSON"),
    (b'{"text": "no id"}\n', "no id field"),
    (b'{"_id": "1", "title": "", "text": "  "}\n', "empty text"),
    (b'{"_id": "1"}\n', "has no 'text' field"),
    (b'[1, 2]\n', "expected a JSON object"),
])
def test_bad_jsonl_is_reported_with_file_and_line(tmp_path, content, message):
    f = _write(tmp_path / "c.jsonl", content)
    with pytest.raises(BadInput, match=message):
        list(read_corpus(f))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        read_corpus(tmp_path / "nope.jsonl")
    with pytest.raises(BadInput, match="cannot tell the format"):
        read_corpus(_write(tmp_path / "c.xml", "<a/>"))
    with pytest.raises(BadInput, match="valid values are: jsonl, csv, tsv, parquet, txt, dir"):
        read_corpus(_write(tmp_path / "c.txt", "a"), format="xml")


def test_parquet_corpus_reads_like_jsonl_and_bad_parquet_is_reported(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    records = [{"_id": "a", "title": "T", "text": "one text", "year": 2001, "tags": ["x", "y"]},
               {"_id": "b", "title": None, "text": "two", "year": None, "tags": []}]
    _write(tmp_path / "c.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "c.parquet")
    assert list(read_corpus(tmp_path / "c.parquet")) == list(read_corpus(tmp_path / "c.jsonl"))
    pq.write_table(pa.Table.from_pylist([{"_id": "a", "body": "x"}]), tmp_path / "d.parquet")
    with pytest.raises(BadInput, match="no column 'text'"):
        list(read_corpus(tmp_path / "d.parquet"))
    _write(tmp_path / "e.parquet", "not parquet")
    with pytest.raises(BadInput, match="cannot read .* as Parquet"):
        list(read_corpus(tmp_path / "e.parquet"))


def test_python_docstrings_is_a_real_corpus_with_unique_ids():
    docs = list(python_docstrings())
    assert len(docs) > 1000
    assert all(d.text.strip() and d.id == d.title for d in docs)
    assert len({d.id for d in docs}) == len(docs)


def test_queries_and_qrels(tmp_path):
    q = _write(tmp_path / "q.jsonl", '{"_id": "1", "text": "what?"}\n{"_id": "2", "text": "why?"}\n')
    r = _write(tmp_path / "r.tsv", "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t2\n2\td3\t0\n")
    assert read_queries(q) == {"1": "what?", "2": "why?"}
    assert read_qrels(r) == {"1": {"d1": 1, "d2": 2}, "2": {"d3": 0}}
    with pytest.raises(BadInput, match=":2: expected 3 tab-separated"):
        read_qrels(_write(tmp_path / "bad.tsv", "query-id\tcorpus-id\tscore\n1 d1 1\n"))


def test_tsv_reads_quoted_fields_and_a_stray_quote_is_an_error_never_merged_rows(tmp_path):
    import csv

    with open(tmp_path / "q.tsv", "w", newline="", encoding="utf-8") as fh:  # as csv and pandas write TSV
        writer = csv.writer(fh, delimiter="\t")
        writer.writerows([["id", "text"], ["1", 'He said "hi"'], ["2", "two\nlines"], ["3", "plain"]])
    assert [(d.id, d.text) for d in read_corpus(tmp_path / "q.tsv")] == [
        ("1", 'He said "hi"'), ("2", "two\nlines"), ("3", "plain")]
    for body in ('1\t"Hello" she said\n2\tsecond\n', '1\tfirst\n2\t"unbalanced quote\n3\tthird doc\n4\tfourth\n'):
        _write(tmp_path / "c.tsv", "id\ttext\n" + body)
        with pytest.raises(BadInput, match="c.tsv:"):  # named, not documents swallowed silently
            list(read_corpus(tmp_path / "c.tsv"))


def test_a_byte_order_mark_is_dropped_by_every_reader(tmp_path):
    bom = "\ufeff"
    docs = {
        "c.csv": bom + "id,text\n1,first\n",
        "c.jsonl": bom + '{"id": "1", "text": "first"}\n',
        "c.txt": bom + "first\n",
    }
    for name, text in docs.items():
        got = list(read_corpus(_write(tmp_path / name, text)))
        assert [(d.id, d.text) for d in got] == [("1", "first")], name
    folder = tmp_path / "notes"
    folder.mkdir()
    _write(folder / "n.md", bom + "first")
    assert next(iter(read_corpus(folder))).text == "first"
    _write(tmp_path / "q.tsv", bom + "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert read_qrels(tmp_path / "q.tsv") == {"q1": {"d1": 1}}


def test_a_csv_field_longer_than_the_csv_module_default_reads_whole(tmp_path):
    text = "word " * 40_000  # 200,000 characters: over csv's default limit of 131,072
    _write(tmp_path / "big.csv", f"id,text\n1,{text}\n")
    assert next(iter(read_corpus(tmp_path / "big.csv"))).text == text


def test_an_infinite_grade_in_qrels_is_a_one_line_error(tmp_path):
    _write(tmp_path / "q.tsv", "q1\td1\tinf\n")
    with pytest.raises(BadInput, match="is not a number"):
        read_qrels(tmp_path / "q.tsv")


def test_parquet_dates_and_decimals_become_metadata_json_can_hold(tmp_path):
    import datetime
    import decimal

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from semsearch.index.store import metadata_json

    table = pa.table({"id": ["a"], "text": ["x"], "when": [datetime.datetime(2024, 5, 1, 12, 30)],
                      "day": [datetime.date(2024, 5, 1)], "price": pa.array([decimal.Decimal("9.50")],
                                                                            pa.decimal128(5, 2)),
                      "count": pa.array([decimal.Decimal("3")], pa.decimal128(5, 0))})
    pq.write_table(table, tmp_path / "c.parquet")
    doc = next(iter(read_corpus(tmp_path / "c.parquet")))
    assert doc.metadata == {"when": "2024-05-01T12:30:00", "day": "2024-05-01", "price": 9.5, "count": 3}
    assert json.loads(metadata_json(doc)) == doc.metadata


def test_metadata_of_any_reader_is_made_plain_for_json():
    import datetime

    from semsearch.corpus.readers import document_from_record

    doc = document_from_record({"id": "a", "text": "x", "day": datetime.date(2020, 1, 2)}, "here", None, "text",
                               "title")
    assert doc.metadata == {"day": "2020-01-02"}


def test_a_lone_surrogate_in_a_corpus_is_a_one_line_error_naming_its_line(tmp_path):
    _write(tmp_path / "c.jsonl", '{"id": "a", "text": "fine"}\n{"id": "b", "text": "bad \\ud800 text"}\n')
    with pytest.raises(BadInput, match=r"c.jsonl:2: record 'b' holds text that is not valid Unicode"):
        list(read_corpus(tmp_path / "c.jsonl"))
