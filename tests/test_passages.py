"""Passages: splitting, MaxP search against brute force, hits that carry their passage, changes per document."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import WORDS, one_line_error
from fakes import HashEmbedder

from semsearch import Document, Hit, Passage, SearchEngine, TransformerEmbedder
from semsearch.errors import BadInput
from semsearch.index.maxp import best_passages, max_by_document
from semsearch.index.passages import PassageSplitter, document_ids, passage_text


def _text(seed: int, paragraphs: int = 6, words: int = 12) -> str:
    rng = np.random.default_rng(seed)
    return "\n\n".join(" ".join(rng.choice(WORDS, words)) + "." for _ in range(paragraphs))


@pytest.fixture(scope="module")
def tiny(tiny_bert):
    return TransformerEmbedder(str(tiny_bert), precision="fp32", backend="torch")  # max length 64 tokens


# --- splitting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens,overlap", [(64, 0), (32, 8), (24, 4)])
def test_splitting_respects_the_token_budget_and_overlap(tiny, tokens, overlap):
    doc = Document("d", " ".join(_text(s, 1, 40) for s in range(8)), title="the cat")
    splitter = PassageSplitter(tiny, tokens=tokens, overlap=overlap)
    spans = splitter.split(doc)
    assert len(spans) > 3
    counter = tiny.tokenizer
    for span in spans:
        text = passage_text(doc.title, doc.text, span)
        assert text.startswith("the cat ")  # the title on every passage
        assert len(counter(text)["input_ids"]) <= tokens  # special tokens and title included
        assert doc.text[span.start:span.end].strip() == doc.text[span.start:span.end]  # offsets point at the words
    starts = [s.start for s in spans]
    assert starts == sorted(starts)
    shared = [a.end - b.start for a, b in zip(spans, spans[1:])]
    if overlap:
        assert max(shared) > 0  # neighbours share text
    else:
        assert max(shared) <= 0
    covered = np.zeros(len(doc.text), bool)
    for span in spans:
        covered[span.start:span.end] = True
    assert all(covered[i] for i, c in enumerate(doc.text) if not c.isspace())  # nothing is left out


def test_auto_splits_only_documents_longer_than_the_budget_and_off_never(tiny):
    short, long = Document("s", "the cat sat on the mat"), Document("l", _text(1, 8))
    auto = PassageSplitter(tiny)
    assert [len(s) for s in auto.split_many([short, long])] == [1, len(auto.split(long))]
    assert len(auto.split(long)) > 1 and auto.tokens == 64
    assert [len(s) for s in PassageSplitter(tiny, mode="off").split_many([short, long])] == [1, 1]
    assert PassageSplitter(tiny, mode="off").split(long)[0].end == len(long.text)


def test_markdown_is_cut_at_headings(tiny):
    text = "# cat\n\n" + _text(1, 2, 10) + "\n\n# dog\n\n" + _text(2, 2, 10)
    spans = PassageSplitter(tiny, tokens=40, overlap=0).split(Document("n.md", text, metadata={"path": "n.md"}))
    assert any(text[s.start:s.end].startswith("# dog") for s in spans)


@pytest.mark.parametrize("options,pattern", [
    ({"mode": "all"}, "unknown passages mode 'all'; valid values are: auto, off"),
    ({"tokens": 8}, "at least 16"),
    ({"tokens": 65}, "more than the embedder reads"),
    ({"tokens": 32, "overlap": 32}, "from 0 to 16"),
    ({"tokens": 32, "overlap": 17}, r"from 0 to 16 \(half the passage tokens\)"),
    ({"overlap": -1}, "from 0 to"),
])
def test_bad_passage_options_name_the_valid_values(tiny, options, pattern):
    with pytest.raises(BadInput, match=pattern):
        PassageSplitter(tiny, **options)


def test_passage_ids_encode_their_document():
    assert document_ids(np.array([(7 << 16) | 3, 7 << 16, 8 << 16]), 16).tolist() == [7, 7, 8]
    docs, scores = max_by_document(np.array([(2 << 16) | 1, 5 << 16, 2 << 16, -1]), np.array([0.9, 0.8, 0.7, 0]),
                                   16)
    assert docs.tolist() == [2, 5] and scores.tolist() == [0.9, 0.8]


# --- search ----------------------------------------------------------------------------------------


def _long_corpus(n: int = 30, seed: int = 0) -> list[Document]:
    return [Document(f"d{i}", _text(seed * 1000 + i, 5 + i % 4), title=f"doc {i}") for i in range(n)]


@pytest.fixture()
def long_index(tmp_path):
    return SearchEngine.build(_long_corpus(), tmp_path / "idx", embedder=HashEmbedder(), progress=False,
                              passage_tokens=16, passage_overlap=0)


def test_maxp_matches_brute_force_over_every_passage(long_index):
    engine = long_index
    assert engine.index.ntotal > 3 * len(engine)  # many passages per document
    ids, vectors = engine.store.all_vectors()
    docs = document_ids(ids, engine.store.id_bits)
    names = dict(zip(docs.tolist(), engine.store.string_ids(docs)))
    rng = np.random.default_rng(1)
    for _ in range(10):
        query = " ".join(rng.choice(WORDS, 3))
        q = HashEmbedder().encode([query])[0]
        sims = vectors @ q
        best = {}
        for d, s in zip(docs.tolist(), sims):
            best[d] = max(best.get(d, -np.inf), s)
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[:5]
        hits = engine.search(query, k=5, mode="dense")
        assert [h.id for h in hits] == [names[d] for d, _ in ranked] or \
            np.allclose([h.score for h in hits], [s for _, s in ranked], atol=1e-6)  # ties may swap
        assert np.allclose([h.score for h in hits], [s for _, s in ranked], atol=1e-6)


def test_each_hit_carries_its_best_passages_by_brute_force_from_the_index_or_the_store(long_index):
    engine = long_index
    ids, vectors = engine.store.all_vectors()
    docs = document_ids(ids, engine.store.id_bits)
    spans = engine.store.passages(set(docs.tolist()))
    int_of = {name: d for d, name in zip(docs.tolist(), engine.store.string_ids(docs))}
    rng = np.random.default_rng(2)
    for _ in range(5):
        query = " ".join(rng.choice(WORDS, 3))
        q = HashEmbedder().encode([query])
        hits = engine.search(query, k=8, mode="hybrid")
        rankings = [np.array([int_of[h.id] for h in hits])]
        from_store = best_passages(engine.store, rankings, [query], q, held=None)[0]  # the store's vectors
        for hit in hits:
            d = int_of[hit.id]
            cos = {pid: float(v @ q[0]) for pid, v in zip(ids.tolist(), vectors) if pid >> engine.store.id_bits == d}
            expected = sorted(spans[d], key=lambda r: -cos[r[0]])[:2]
            for got in (hit.passages, from_store[d]):
                assert [(p.start, p.end) for p in got] == [(r[1], r[2]) for r in expected]
                assert [p.score for p in got] == pytest.approx([cos[r[0]] for r in expected], abs=1e-5)


def test_the_vector_index_gives_the_vectors_it_holds_or_none():
    from semsearch.index.vectors import VectorIndex

    data = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    ids = np.arange(300, dtype=np.int64) * 7
    flat = VectorIndex.create(8, "Flat")
    flat.add(data, ids)
    np.testing.assert_array_equal(flat.held_vectors(ids[[5, 0, 299]]), data[[5, 0, 299]])
    assert flat.held_vectors(np.array([1], np.int64)) is None  # an id it does not hold
    ivf = VectorIndex.create(8, "IVF4,Flat")
    ivf.train(data)
    ivf.add(data, ids)
    assert ivf.held_vectors(ids[:3]) is None  # no id map: the caller reads the store instead


def test_a_document_comes_back_once_with_its_best_passage(tmp_path):
    paragraphs = [" ".join(["cat"] * 3 + list(np.random.default_rng(i).choice(WORDS, 9))) for i in range(6)]
    paragraphs[3] = "the moon and the stars over tall green trees tonight"
    text = "\n\n".join(paragraphs)
    docs = [Document("long", text, title="night")] + [Document(f"o{i}", " ".join(WORDS[i:i + 6])) for i in range(8)]
    engine = SearchEngine.build(docs, tmp_path / "idx", embedder=HashEmbedder(dim=1024), progress=False,
                                passage_tokens=16, passage_overlap=0)  # (wide: no hash collisions among these words)
    for mode in ("dense", "hybrid", "lexical"):
        hits = engine.search("moon stars tall trees", k=5, mode=mode)
        assert len({h.id for h in hits}) == len(hits) and (len(hits) == 5 or mode == "lexical"), mode
        hit = next(h for h in hits if h.id == "long")
        assert hit.passage == paragraphs[3], mode
        assert hit.text[hit.start:hit.end] == hit.passage and hit.start == text.index(paragraphs[3])
        row = hit.to_dict()
        assert row["passage"] == paragraphs[3] and (row["start"], row["end"]) == (hit.start, hit.end)
    dense = engine.search("moon stars tall trees", k=1, mode="dense")[0]
    assert dense.passages[0].score == pytest.approx(dense.score, abs=1e-6)  # MaxP: the best passage's cosine


def test_k_distinct_documents_even_when_one_document_has_every_top_passage(tmp_path):
    docs = [Document("many", "\n\n".join(["red green blue cyan " * 3] * 20))] + \
        [Document(f"x{i}", f"{WORDS[i]} {WORDS[i + 1]} red") for i in range(10)]
    engine = SearchEngine.build(docs, tmp_path / "idx", embedder=HashEmbedder(), progress=False, passage_tokens=16,
                                passage_overlap=0, lexical=False)
    hits = engine.search("red green blue cyan", k=6, mode="dense")
    assert len(hits) == 6 and len({h.id for h in hits}) == 6 and hits[0].id == "many"


def test_filters_select_documents_by_metadata(tmp_path):
    docs = [Document(f"d{i}", _text(i), metadata={"year": 2000 + i}) for i in range(12)]
    engine = SearchEngine.build(docs, tmp_path / "idx", embedder=HashEmbedder(), progress=False, passage_tokens=16)
    for mode in ("dense", "lexical", "hybrid"):
        hits = engine.search("cat dog moon", k=5, mode=mode, filters=["year>=2009"])
        assert {h.id for h in hits} <= {"d9", "d10", "d11"} and len(hits) == 3, mode


def test_bm25_over_passages_returns_documents(tmp_path):
    engine = SearchEngine.build(_long_corpus(), tmp_path / "idx", embedder=HashEmbedder(), progress=False,
                                passage_tokens=16, lexical_unit="passage")
    assert engine.lexical.unit == "passage" and len(engine.lexical) == engine.index.ntotal
    hits = engine.search("moon birds", k=8, mode="lexical")
    assert len({h.id for h in hits}) == len(hits) == 8
    reopened = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())
    assert [h.id for h in reopened.search("moon birds", k=8, mode="hybrid")] == \
        [h.id for h in engine.search("moon birds", k=8, mode="hybrid")]


def test_manifest_records_the_passages_and_an_off_index_has_one_vector_per_document(tmp_path):
    off = SearchEngine.build(_long_corpus(10), tmp_path / "off", embedder=HashEmbedder(), progress=False,
                             passages="off")
    assert off.index.ntotal == len(off) == 10
    manifest = json.loads((tmp_path / "off" / "manifest.json").read_text())
    assert manifest["passages"]["mode"] == "off" and manifest["vectors"] == 10
    assert manifest["passages"]["id_bits"] == 0 and manifest["format_version"] == 1  # older versions read it
    auto = SearchEngine.build(_long_corpus(10), tmp_path / "auto", embedder=HashEmbedder(), progress=False,
                              passage_tokens=20, passage_overlap=4)
    manifest = json.loads((tmp_path / "auto" / "manifest.json").read_text())
    assert manifest["passages"]["tokens"] == 20 and manifest["passages"]["overlap"] == 4
    assert manifest["passages"]["splitter"].startswith("semantic-text-splitter")
    assert manifest["vectors"] == auto.index.ntotal > 10 and manifest["format_version"] == 3


# --- changes ---------------------------------------------------------------------------------------


def test_upsert_of_one_changed_paragraph_re_embeds_one_passage(tmp_path):
    paragraphs = [f"{WORDS[i]} " + " ".join(np.random.default_rng(i).choice(WORDS, 10)) for i in range(6)]
    doc = Document("d", "\n\n".join(paragraphs), title="t")
    engine = SearchEngine.build([doc, Document("other", "cat sat")], tmp_path / "idx", embedder=HashEmbedder(),
                                progress=False, passage_tokens=16, passage_overlap=0)
    before = engine.index.ntotal
    assert before == 7  # one passage per paragraph, and the other document
    paragraphs[2] = "a completely new paragraph about rivers and the sea"
    report = engine.add([Document("d", "\n\n".join(paragraphs), title="t")], progress=False)
    assert (report.updated, report.embedded, report.from_cache) == (1, 1, 5)
    assert engine.index.ntotal == before
    hit = engine.search("rivers sea paragraph", k=1, mode="dense")[0]
    assert hit.id == "d" and hit.passage == paragraphs[2]
    reopened = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())
    assert reopened.search("rivers sea paragraph", k=1, mode="dense")[0].passage == paragraphs[2]


def test_an_update_with_fewer_passages_leaves_none_of_the_old_ones(tmp_path):
    engine = SearchEngine.build([Document("d", _text(1, 8)), Document("e", "cat sat")], tmp_path / "idx",
                                embedder=HashEmbedder(), progress=False, passage_tokens=16, passage_overlap=0)
    engine.add([Document("d", "a short text now")], progress=False)
    assert engine.index.ntotal == 2 == engine.store.passage_count()
    reopened = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())
    assert reopened.index.ntotal == 2 and reopened.search("short text", k=1)[0].passage == "a short text now"


def test_delete_removes_every_passage_of_a_document(long_index, tmp_path):
    engine = long_index
    found = engine.store.lookup(["d3"])
    count = len(engine.store.passages([found["d3"][0]])[found["d3"][0]])
    before = engine.index.ntotal
    engine.delete(["d3"])
    assert engine.index.ntotal == before - count == engine.store.passage_count()
    reopened = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())
    for mode in ("dense", "lexical", "hybrid"):
        assert "d3" not in {h.id for h in reopened.search(_text(3, 1), k=29, mode=mode)}
    reopened.compact()
    assert SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder()).index.ntotal == before - count


def test_a_reader_catches_up_on_passages_a_writer_committed(long_index, tmp_path):
    reader = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())
    long_index.add([Document("new", _text(77, 6))], progress=False)
    long_index.delete(["d1"])
    reader.reload()
    assert reader.index.ntotal == long_index.index.ntotal
    assert reader.search(_text(77, 1), k=1, mode="dense")[0].id == "new"


# --- reranking the passage -------------------------------------------------------------------------


def test_the_reranker_reads_the_best_passage_or_the_best_two(tmp_path, tiny_cross_encoder):
    from semsearch import Reranker

    text = "first part about cats.\n\nsecond part about the moon."
    hit = Hit("d", 0.5, 1, text, "t", passages=(Passage(text.index("second"), len(text)), Passage(0, 22)))
    reranker = Reranker(str(tiny_cross_encoder), precision="fp32", backend="torch")
    assert hit.passage_texts(2) == ["t second part about the moon.", "t first part about cats."]
    one = reranker.rerank(["moon"], [[hit]], 1)[0][0]
    assert one.rerank_score == pytest.approx(float(reranker.score([("moon", "t second part about the moon.")]).scores[0]))
    reranker.passages = 2
    two = reranker.rerank(["moon"], [[hit]], 1)[0][0]
    scores = reranker.score([("moon", t) for t in hit.passage_texts(2)]).scores
    assert two.rerank_score == pytest.approx(float(max(scores)))
    with pytest.raises(BadInput, match="1 or 2 passages"):
        Reranker(str(tiny_cross_encoder), passages=3, precision="fp32", backend="torch")


# --- the CLI ---------------------------------------------------------------------------------------


def _run(*args):
    from click.testing import CliRunner

    from semsearch.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_index_passages_and_query_shows_the_passage(tmp_path, tiny_bert):
    corpus = tmp_path / "notes"
    corpus.mkdir()
    paragraphs = [_text(i, 1, 20) for i in range(6)]
    paragraphs[4] = "rivers flow to the sea under bright stars " * 2
    (corpus / "a.md").write_text("# Notes\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    (corpus / "b.txt").write_text("the cat sat on the mat", encoding="utf-8")
    index = tmp_path / "idx"
    result = _run("index", corpus, "--index", index, "--model", tiny_bert, "--passage-tokens", 40, "-q",
                  "--precision", "fp32")
    assert result.exit_code == 0, result.output
    assert "2 documents (" in result.stdout and "passages)" in result.stdout
    rows = [json.loads(line) for line in _run("query", "rivers sea stars", "--index", index, "--json", "-k", 2,
                                              "--mode", "lexical").stdout.splitlines()]
    assert rows[0]["id"] == "a.md" and "rivers flow to the sea" in rows[0]["passage"]
    assert rows[0]["text"][rows[0]["start"]:rows[0]["end"]] == rows[0]["passage"]
    table = _run("query", "rivers sea stars", "--index", index, "-k", 1, "--mode", "lexical", "--plain").stdout
    assert "rivers flow to the sea" in table and "\x1b[" not in table
    one_line_error(_run("index", corpus, "--index", tmp_path / "x", "--model", tiny_bert, "--passages", "some"),
                   "unknown passages mode 'some'")
    one_line_error(_run("index", corpus, "--index", tmp_path / "x", "--model", tiny_bert, "--passage-tokens", 40,
                        "--passage-overlap", 40), "passage overlap")
    one_line_error(_run("query", "x", "--index", index, "--rerank-passages", 2), "only with --rerank")


def test_highlight_marks_the_query_words_on_a_terminal_only():
    from semsearch.cli.search import excerpt, highlight, words_of

    terms = words_of("Where do the rivers flow?")
    assert terms == {"rivers", "flow"}
    marked = highlight("Rivers flow to the sea", terms, colour=True)
    assert "\x1b[" in marked and marked.count("\x1b[0m") == 2
    assert highlight("Rivers flow to the sea", terms, colour=False) == "Rivers flow to the sea"
    long = "word " * 100 + "rivers flow here " + "word " * 100
    piece = excerpt(long, terms, 60)
    assert "rivers flow" in piece and piece.startswith("…") and piece.endswith("…") and len(piece) <= 62
