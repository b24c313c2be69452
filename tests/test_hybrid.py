"""Hybrid retrieval: fusion maths, BM25 side, metadata filters, fusion tuning, and `bench`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import HashEmbedder

from semsearch import BadInput, Document, SearchEngine
from semsearch.bench.report import run_bench
from semsearch.cli import cli
from semsearch.index.filters import parse_filter
from semsearch.index.fusion import Fusion, rrf, score_fusion
from semsearch.index.lexical import LexicalBuilder
from semsearch.index.vectors import IndexBuilder


def R(ids, scores=None):
    ids = np.array(ids, dtype=np.int64)
    return ids, np.array(scores if scores is not None else np.linspace(1, 0.1, len(ids)), dtype=np.float64)


# --- fusion maths -------------------------------------------------------------------------------

def test_rrf_matches_hand_computed_scores():
    ids, scores = rrf(R([1, 2, 3]), R([3, 4]), k=60)
    expected = {1: 0.5 / 61, 2: 0.5 / 62, 3: 0.5 / 63 + 0.5 / 61, 4: 0.5 / 62}
    assert [int(i) for i in ids] == [3, 1, 2, 4]  # 2 and 4 tie: the dense side's document goes first
    assert dict(zip(ids.tolist(), scores.tolist())) == pytest.approx(expected)


def test_weighted_rrf_leans_to_the_heavier_side():
    dense, lexical = R([1, 2]), R([2, 1])
    assert rrf(dense, lexical, weight=0.9)[0].tolist() == [1, 2]
    assert rrf(dense, lexical, weight=0.1)[0].tolist() == [2, 1]
    assert rrf(dense, lexical, weight=1.0)[1].tolist() == pytest.approx([1 / 61, 1 / 62])  # lexical counts nothing


def test_score_fusion_min_max_normalises_each_side():
    dense = R([1, 2, 3], [0.9, 0.7, 0.5])       # -> 1, 0.5, 0
    lexical = R([3, 4], [20.0, 10.0])           # -> 1, 0
    ids, scores = score_fusion(dense, lexical, weight=0.6)
    got = dict(zip(ids.tolist(), scores.tolist()))
    assert got == pytest.approx({1: 0.6, 2: 0.3, 3: 0.4, 4: 0.0})
    assert ids.tolist() == [1, 3, 2, 4]


@pytest.mark.parametrize("fuse", [lambda d, lx: rrf(d, lx), lambda d, lx: score_fusion(d, lx, weight=0.3)])
def test_one_side_empty_the_other_answers_in_its_own_order(fuse):
    empty = R([])
    assert fuse(R([5, 6, 7]), empty)[0].tolist() == [5, 6, 7]
    assert fuse(empty, R([9, 8])) [0].tolist() == [9, 8]
    assert len(fuse(empty, empty)[0]) == 0


def test_fusion_validates_its_options():
    with pytest.raises(BadInput, match="valid: rrf, score"):
        Fusion("max")
    with pytest.raises(BadInput, match=r"\[0, 1\]"):
        Fusion("rrf", weight=1.5)
    f = Fusion("score", 0.25, tuned_on={"queries": 3})
    assert Fusion.from_dict(json.loads(json.dumps(f.to_dict()))) == f


# --- lexical side -------------------------------------------------------------------------------

def test_bm25_stems_drops_stop_words_and_round_trips(tmp_path):
    b = LexicalBuilder()
    b.add(["the runner was running fast", "a cat sleeps", "stock prices"], np.array([10, 11, 12]))
    lex = b.finish()
    ids, scores = lex.search(["runs"], k=3)[0]
    assert ids.tolist() == [10] and scores[0] > 0          # run/running/runner share the stem "run"
    assert len(lex.search(["the and of"], k=3)[0][0]) == 0  # only stop words: no hits, not arbitrary ones
    lex.save(tmp_path / "lex")
    again = type(lex).load(tmp_path / "lex")
    np.testing.assert_array_equal(again.search(["cat stock"], k=3)[0][0], lex.search(["cat stock"], k=3)[0][0])


# --- filters ------------------------------------------------------------------------------------

def test_parse_filter_forms_and_errors():
    assert parse_filter("year >= 2020").op == ">="
    assert parse_filter("tag in a, b ,c").values == ("a", "b", "c")
    assert parse_filter("lang!=en").op == "!="
    for bad, msg in [("year>=recent", "needs a number"), ("novalue=", "empty value"), ("just words", "cannot parse"),
                     ("", "empty filter")]:
        with pytest.raises(BadInput, match=msg):
            parse_filter(bad)


def _meta_docs(n=60):
    colours = ["red", "green", "blue"]
    return [Document(f"d{i}", f"item {i} " + ("apple " if i % 2 else "pear ") * (1 + i % 3),
                     metadata={"year": 2000 + i % 10, "colour": colours[i % 3], "flag": i % 4 == 0, "n": str(i),
                               "tags": ["even" if i % 2 == 0 else "odd"] + (["five"] if i % 5 == 0 else [])})
            for i in range(n)]


@pytest.fixture(scope="module")
def meta_engine(tmp_path_factory):
    return SearchEngine.build(_meta_docs(), tmp_path_factory.mktemp("meta") / "idx", embedder=HashEmbedder(),
                              progress=False)


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
@pytest.mark.parametrize("filters, pred", [
    (["colour=red"], lambda m: m["colour"] == "red"),
    (["year>=2007"], lambda m: m["year"] >= 2007),
    (["colour in green,blue", "year<2003"], lambda m: m["colour"] in ("green", "blue") and m["year"] < 2003),
    (["flag=true"], lambda m: m["flag"]),
    (["n=7"], lambda m: m["n"] == "7"),
    (["colour!=red"], lambda m: m["colour"] != "red"),
    (["tags=five"], lambda m: "five" in m["tags"]),
    (["tags in five,odd", "tags!=even"], lambda m: "odd" in m["tags"]),
])
def test_filters_apply_before_ranking(meta_engine, mode, filters, pred):
    matching = {d.id for d in _meta_docs() if pred(d.metadata)}
    k = 5
    hits = meta_engine.search("apple pear item", k=k, mode=mode, filters=filters)
    assert {h.id for h in hits} <= matching
    assert len(hits) == min(k, len(matching))  # every document has "item", so lexical finds them all too


@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_filtered_search_is_the_best_k_of_the_matching_documents(meta_engine, mode):
    query, k = "apple pear item 7", 7
    everything = meta_engine.search(query, k=60, mode=mode)  # exact (Flat / BM25): every document, ranked
    wanted = [h for h in everything if h.metadata["year"] >= 2004 and h.metadata["colour"] != "blue"][:k]
    got = meta_engine.search(query, k=k, mode=mode, filters=["year>=2004", "colour!=blue"])
    # the same scores, best first (documents with equal scores may swap places)
    assert [round(h.score, 5) for h in got] == [round(h.score, 5) for h in wanted]
    assert all(h.metadata["year"] >= 2004 and h.metadata["colour"] != "blue" for h in got)


def test_filter_edge_cases(tmp_path):
    docs = [Document("a", "apple one", metadata={"year": "2021", "big": 1, "tag": "x"}),  # CSV-style text number
            Document("b", "apple two", metadata={"year": 2019}),
            Document("c", "apple three", metadata={"year": 2023, "tag": None})]
    engine = SearchEngine.build(docs, tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    ids = lambda f: sorted(h.id for h in engine.search("apple", k=3, mode="dense", filters=f))  # noqa: E731
    assert ids("year>=2020") == ["a", "c"]            # "2021" (text) compares as a number
    assert ids("tag!=x") == ["b", "c"]                # missing field and null: not equal to x
    assert ids(["big=99999999999999999999"]) == []    # beyond SQLite's integers: no crash
    with pytest.raises(BadInput, match="cannot start with"):
        ids("year==2020")
    with pytest.raises(BadInput, match="needs a number"):
        ids("year>=nan")


def test_a_field_with_spaces_or_dots_is_filtered_in_quotes_and_one_with_a_quote_is_refused(tmp_path):
    docs = [Document("a", "apple one", metadata={"unit price": "9.5", "v.2": "x", 'say "hi"': 1}),
            Document("b", "apple two", metadata={"unit price": 20, "v.2": "y"})]
    engine = SearchEngine.build(docs, tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    ids = lambda f: sorted(h.id for h in engine.search("apple", k=2, mode="dense", filters=f))  # noqa: E731
    assert ids('"unit price"<=10') == ["a"] and ids("'unit price' in 20, 21") == ["b"]
    assert ids('"v.2"=y') == ids("v.2=y") == ["b"]  # a field name is never a path: a dot is a dot
    with pytest.raises(BadInput, match="cannot filter on the field"):
        parse_filter("""'say "hi"'=1""")
    with pytest.raises(BadInput, match="cannot filter on the field"):
        parse_filter('a"b=1')
    assert parse_filter("author's=bob").field == "author's"  # a quote inside a bare name is part of it


def test_corpus_of_stop_words_only_needs_no_lexical(tmp_path):
    docs = [Document("a", "the of and"), Document("b", "a an it")]
    with pytest.raises(BadInput, match="--no-lexical"):
        SearchEngine.build(docs, tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    assert SearchEngine.build(docs, tmp_path / "idx", embedder=HashEmbedder(), lexical=False, progress=False)


def test_lexical_ties_at_the_cut_do_not_depend_on_k():
    b = LexicalBuilder()
    b.add(["apple"] * 20 + ["apple apple pear"], np.arange(21))
    lex = b.finish()
    top3 = lex.search(["apple pear"], k=3)[0][0].tolist()
    top8 = lex.search(["apple pear"], k=8)[0][0].tolist()
    assert top8[:3] == top3 == [20, 0, 1]  # the only "pear", then the 20 tied documents in id order


def test_filter_matching_nothing_gives_no_hits_and_unknown_field_is_an_error(meta_engine):
    assert meta_engine.search("apple", k=5, filters=["year>=3000"]) == []
    with pytest.raises(BadInput, match="no document has a metadata field 'colur'"):
        meta_engine.search("apple", k=5, filters=["colur=red"])


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF8,Flat"])
def test_filtered_vector_search_equals_brute_force(factory, monkeypatch):
    import semsearch.index.vectors

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:10] + 0.05 * rng.normal(size=(10, 16)).astype("float32")
    builder = IndexBuilder(16, factory)
    builder.add(x, np.arange(3000) + 1000)
    index = builder.finish()
    for size in (7, 300):
        allowed = np.sort(rng.choice(3000, size, replace=False))
        n = min(10, size)
        expected = allowed[np.argsort(-(q @ x[allowed].T), axis=1)[:, :n]] + 1000
        scores, ids = index.search(q, 10, allowed + 1000)  # Flat, or few matches: exact
        np.testing.assert_array_equal(ids[:, :n], expected)
        assert (ids[:, n:] == -1).all()
        monkeypatch.setattr(semsearch.index.vectors, "EXACT_FILTER_LIMIT", 0)  # FAISS's selector path (+ exact fallback)
        scores, ids = index.search(q, 10, allowed + 1000)
        assert np.isin(ids[:, :n], allowed + 1000).all() and (ids[:, n:] == -1).all()
        assert (np.diff(scores[:, :n], axis=1) <= 1e-6).all()
        monkeypatch.undo()


# --- modes, manifest, tuning --------------------------------------------------------------------

DOCS = [Document(f"d{i}", t) for i, t in enumerate([
    "zebra stripes pattern", "quantum entanglement physics", "baking sourdough bread",
    "volcano eruption lava", "chess opening theory", "jazz piano chords"])]


def test_no_lexical_index_refuses_lexical_modes(tmp_path):
    engine = SearchEngine.build(DOCS, tmp_path / "idx", embedder=HashEmbedder(), lexical=False, progress=False)
    assert engine.default_mode == "dense" and not (tmp_path / "idx" / "lexical").exists()
    with pytest.raises(BadInput, match="built without one"):
        engine.search("lava", mode="hybrid")
    with pytest.raises(BadInput, match="valid: dense, lexical, hybrid"):
        engine.search("lava", mode="sparse")


def test_tune_fusion_stores_the_best_and_reopen_uses_it(tmp_path):
    engine = SearchEngine.build(DOCS, tmp_path / "idx", embedder=HashEmbedder(salt="x"), progress=False)
    # queries whose words appear in the right document only after stemming: lexical wins, dense (hash) misses
    queries = {"a": "erupting volcanoes", "b": "baked breads", "c": "zebras striped", "d": "pianos"}
    qrels = {"a": {"d3": 1}, "b": {"d2": 1}, "c": {"d0": 1}, "d": {"d5": 1}}
    fusion = engine.tune_fusion(queries, qrels, weights=[0.0, 0.5, 1.0])
    assert fusion.weight < 1.0 and fusion.tuned_on["queries"] == 4
    assert engine.evaluate(queries, qrels, mode="hybrid").ndcg_at_10 == pytest.approx(fusion.tuned_on["ndcg_at_10"],
                                                                                     abs=1e-4)
    again = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder(salt="x"))
    assert again.fusion == fusion
    with pytest.raises(BadInput, match="no fusion method"):
        engine.tune_fusion(queries, qrels, methods=[])
    # the stored fusion is the one hybrid search uses: all weight on one side gives that side's order
    for weight, side in [(0.0, "lexical"), (1.0, "dense")]:
        engine.set_fusion(Fusion("rrf", weight))
        expected = [h.id for h in engine.search("baked zebra lava", k=6, mode=side)]
        assert [h.id for h in engine.search("baked zebra lava", k=6, mode="hybrid")][:len(expected)] == expected


# --- bench --------------------------------------------------------------------------------------

def _tiny_beir(folder):
    (folder / "qrels").mkdir(parents=True)
    docs = [("d1", "Cats", "cats purr and chase mice"), ("d2", "Cars", "cars have engines and wheels"),
            ("d3", "Bread", "bread is baked from flour and yeast"), ("d4", "Chess", "chess players move kings"),
            ("d5", "Dogs", "dogs bark at the mail carrier"), ("d6", "Rain", "rain falls from grey clouds")]
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n"
                                                 for i, t, x in docs))
    queries = {"q1": "what do cats chase", "q2": "how is bread baked", "q3": "engines", "q4": "barking dogs",
               "q5": "clouds and rain"}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\nq5\td6\t1\n")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td2\t1\nq4\td5\t1\n")
    return folder


def test_bench_writes_report_results_and_plots(tmp_path, tiny_cross_encoder):
    from semsearch import Reranker

    data = _tiny_beir(tmp_path / "beir")
    report = run_bench(data, tmp_path / "rep", embedder=HashEmbedder(), reranker=Reranker(tiny_cross_encoder),
                       candidates=3, progress=False)
    names = [c["config"] for c in report["configs"]]
    assert names == ["dense", "lexical", "hybrid", "hybrid+rerank"]
    assert report["tune_split"] == "train" and report["tuned_fusion"]["tuned_on"]["queries"] == 2
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert saved["queries"] == 3 and saved["documents"] == 6
    lexical = next(c for c in saved["configs"] if c["config"] == "lexical")
    assert lexical["ndcg@10"] == 1.0  # every test query shares a stemmed word with its document only
    for c in saved["configs"]:
        assert c["latency_ms_p50"] > 0 and c["peak_rss_mib"] > 0 and c["index_bytes"] > 0
        assert 0 <= c["recall_at_k"]["1"] <= c["recall_at_k"]["100"] == c["recall@100"]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| hybrid+rerank |" in text and "nDCG@10" in text
    for png in ("quality_vs_latency.png", "recall_at_k.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(BadInput, match="not empty"):
        run_bench(data, tmp_path / "rep", embedder=HashEmbedder(), progress=False)


def test_bench_cli_and_bad_dataset(tmp_path, tiny_bert, monkeypatch):
    data = _tiny_beir(tmp_path / "beir")
    ok = CliRunner().invoke(cli, ["bench", "--data", str(data), "--output", str(tmp_path / "rep"),
                                  "--model", str(tiny_bert), "--tune-split", "none", "-q"])
    assert ok.exit_code == 0, ok.output
    assert "report written" in ok.stdout and (tmp_path / "rep" / "report.md").is_file()
    assert "plain reciprocal rank fusion" in (tmp_path / "rep" / "report.md").read_text()
    bad = CliRunner().invoke(cli, ["bench", "--data", str(tmp_path), "--output", str(tmp_path / "rep2")])
    assert bad.exit_code == 2 and "is not a BEIR dataset folder" in bad.stderr and "Traceback" not in bad.output
    typo = CliRunner().invoke(cli, ["bench", "--data", str(data), "--output", str(tmp_path / "rep3"),
                                    "--model", str(tiny_bert), "--tune-split", "trian"])
    assert typo.exit_code == 2 and "no qrels for the tuning split 'trian'" in typo.stderr
    from semsearch.encode import transformer

    monkeypatch.setattr(transformer, "TransformerEmbedder", lambda *a, **k: pytest.fail("a model loaded first"))
    again = CliRunner().invoke(cli, ["bench", "--data", str(data), "--output", str(tmp_path / "rep")])
    (tmp_path / "afile").write_text("x")
    onto_file = CliRunner().invoke(cli, ["bench", "--data", str(data), "--output", str(tmp_path / "afile")])
    assert again.exit_code == 2 and "exists and is not empty" in again.stderr
    assert onto_file.exit_code == 2 and "is a file" in onto_file.stderr


def test_cli_query_modes_filters_and_tune(tmp_path, tiny_bert):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text, "year": 2000 + i}) + "\n"
                              for i, d in enumerate(DOCS)))
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a])  # noqa: E731
    assert run("index", corpus, "--index", tmp_path / "idx", "--model", tiny_bert, "-q").exit_code == 0
    got = run("query", "lava volcano", "--index", tmp_path / "idx", "--mode", "lexical", "--json", "-k", "1")
    assert got.exit_code == 0 and json.loads(got.stdout)["id"] == "d3"
    got = run("query", "lava", "--index", tmp_path / "idx", "--filter", "year>=2004", "--json", "-k", "3")
    assert got.exit_code == 0 and {json.loads(line)["id"] for line in got.stdout.splitlines()} == {"d4", "d5"}
    for args, msg in [(("--filter", "year>=soon"), "needs a number"), (("--filter", "yr=1"), "no document has"),
                      (("--mode", "fuzzy"), "valid: dense, lexical, hybrid")]:
        bad = run("query", "lava", "--index", tmp_path / "idx", *args)
        assert bad.exit_code == 2 and msg in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    (tmp_path / "q.jsonl").write_text(json.dumps({"_id": "a", "text": "volcanoes erupting"}) + "\n")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\na\td3\t1\n")
    tuned = run("tune", "--index", tmp_path / "idx", "--queries", tmp_path / "q.jsonl",
                "--qrels", tmp_path / "qrels.tsv")
    assert tuned.exit_code == 0 and "stored in" in tuned.stdout
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["fusion"]["tuned_on"]["queries"] == 1


def test_tune_rerank_weight_fits_the_blend_for_this_first_stage(tmp_path, tiny_cross_encoder):
    import copy

    from semsearch import Reranker

    engine = SearchEngine.build(DOCS, tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    queries = {"a": "volcano eruption lava", "b": "baking bread", "c": "chess", "d": "jazz piano", "e": "zebra"}
    qrels = {"a": {"d3": 1}, "b": {"d2": 1}, "c": {"d4": 1}, "d": {"d5": 1}, "e": {"d0": 1}}
    reranker = Reranker(tiny_cross_encoder, first_stage_weight=0.0)  # an untrained head: noise
    grid = [0.0, 0.3, 0.6, 0.9]
    tuned = engine.tune_rerank_weight(queries, qrels, reranker, candidates=6, mode="hybrid", weights=grid)
    by_weight = {}
    for w in grid + [1.0]:  # the same thing through the public reranking path; 1 (first-stage order) is always tried
        r = copy.copy(reranker)
        r.first_stage_weight = w
        by_weight[w] = engine.evaluate(queries, qrels, mode="hybrid", reranker=r, candidates=6).ndcg_at_10
    check = tuned.check
    assert check.queries == 5 and check.source == "tuning queries"
    assert check.first_stage_ndcg10 == pytest.approx(by_weight[1.0])
    assert check.reranked_ndcg10 == pytest.approx(by_weight[0.0])
    best = max(by_weight.values())
    if check.useful:  # the largest of the best weights
        assert tuned.first_stage_weight == max(w for w in by_weight if by_weight[w] == pytest.approx(best))
    else:
        assert tuned.first_stage_weight == 1.0
    assert tuned.tuned_on["ndcg_at_10"] == pytest.approx(by_weight[tuned.first_stage_weight], abs=1e-4)
    assert reranker.first_stage_weight == 0.0  # the caller's object is left alone
    with pytest.raises(BadInput, match=r"\[0, 1\]"):
        engine.tune_rerank_weight(queries, qrels, reranker, weights=[0.5, 1.5], save=False)
    again = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())
    assert again.manifest.reranker["first_stage_weight"] == tuned.first_stage_weight
    assert again.manifest.reranker["first_stage_weight_tuned_on"]["queries"] == 5
    assert again.default_reranker().first_stage_weight == tuned.first_stage_weight
