"""SearchEngine with the deterministic fake embedder: build, reopen, search, evaluate, refuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import HashEmbedder

from semsearch import (
    BadInput,
    Document,
    IndexExists,
    IndexNotFound,
    ManifestMismatch,
    SearchEngine,
)
from semsearch.metrics import evaluate_run

DOCS = [
    Document("cats", "cats purr and chase mice", "Cats", {"legs": 4}),
    Document("cars", "cars have engines and wheels", "Cars"),
    Document("bread", "bread is baked from flour and yeast", "Bread"),
    Document("chess", "chess players move kings and pawns", "Chess"),
]


def _build(path, docs=DOCS, **kw):
    return SearchEngine.build(docs, path, embedder=kw.pop("embedder", HashEmbedder()), progress=False, **kw)


def _leftovers(parent):
    """Temporary folders and files left beside an index (its writer lock file, ``.NAME.lock``, stays by design)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and p.suffix != ".lock")


def test_build_search_reopen_same_results(tmp_path):
    engine = _build(tmp_path / "idx")
    hits = engine.search("which animal chases mice", k=2)
    assert [h.rank for h in hits] == [1, 2]
    assert hits[0].id == "cats" and hits[0].metadata == {"legs": 4} and hits[0].title == "Cats"
    assert hits[0].score >= hits[1].score
    engine.close()
    again = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())
    assert again.search("which animal chases mice", k=2) == hits
    assert len(again) == 4


def test_index_folder_is_plain_files_with_manifest(tmp_path):
    _build(tmp_path / "idx", factory="HNSW32")
    assert {p.name for p in (tmp_path / "idx").iterdir()} == {"manifest.json", "vectors.faiss", "docs.sqlite",
                                                              "lexical"}
    assert not [p for p in (tmp_path / "idx" / "lexical").iterdir() if p.suffix not in (".npy", ".json")]
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["lexical"]["kind"] == "bm25s" and manifest["fusion"] is None
    assert manifest["factory"] == "HNSW32" and manifest["factory_requested"] == "HNSW32"
    assert manifest["documents"] == 4 and manifest["metric"] == "inner_product"
    assert manifest["embedder"]["kind"] == "fake" and manifest["format_version"] == 3
    assert _leftovers(tmp_path) == []


def test_several_queries_are_encoded_in_one_batch(tmp_path):
    engine = _build(tmp_path / "idx")
    engine.embedder.calls.clear()
    results = engine.search_many(["mice", "flour", "kings"], k=1)
    assert engine.embedder.calls == [3]
    assert [r[0].id for r in results] == ["cats", "bread", "chess"]


def test_k_larger_than_index_returns_every_document(tmp_path):
    assert len(_build(tmp_path / "idx").search("cars", k=50)) == 4


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_k(tmp_path, k):
    with pytest.raises(BadInput, match="k must be a positive integer"):
        _build(tmp_path / "idx").search("cars", k=k)


@pytest.mark.parametrize("query", ["", "   \n"])
def test_blank_query(tmp_path, query):
    with pytest.raises(BadInput, match="non-empty"):
        _build(tmp_path / "idx").search(query)


def test_duplicate_ids_leave_nothing_behind(tmp_path):
    with pytest.raises(BadInput, match="duplicate document id 'cats'"):
        _build(tmp_path / "idx", docs=DOCS + [Document("cats", "again")])
    assert not (tmp_path / "idx").exists() and _leftovers(tmp_path) == []


def test_empty_corpus_is_refused(tmp_path):
    with pytest.raises(BadInput, match="empty"):
        _build(tmp_path / "idx", docs=[])
    assert [p.name for p in tmp_path.iterdir()] == [".idx.lock"]  # only the writer lock file, by design


def test_a_factory_that_cannot_train_keeps_the_vectors_for_the_next_build(tmp_path):
    embedder = HashEmbedder()
    with pytest.raises(BadInput, match="cannot train FAISS index 'IVF16,Flat' on 4 vectors.*vectors embedded are kept"):
        _build(tmp_path / "idx", factory="IVF16,Flat", embedder=embedder)
    assert not (tmp_path / "idx").exists() and len(_leftovers(tmp_path)) == 1 and embedder.calls
    embedder.calls.clear()
    engine = _build(tmp_path / "idx", factory="Flat", embedder=embedder)
    assert embedder.calls == [] and len(engine) == 4  # every vector came from the failed build
    assert engine.search("which animal chases mice", k=1)[0].id == "cats"
    assert _leftovers(tmp_path) == []


def test_interrupted_build_leaves_nothing_and_keeps_the_old_index(tmp_path):
    _build(tmp_path / "idx")
    before = (tmp_path / "idx" / "manifest.json").read_text()

    class Interrupted(HashEmbedder):
        def embed_batch(self, texts):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path / "idx", embedder=Interrupted(), overwrite=True)
    assert (tmp_path / "idx" / "manifest.json").read_text() == before
    assert _leftovers(tmp_path) == []


def test_existing_index_needs_overwrite_and_other_folders_are_never_replaced(tmp_path):
    _build(tmp_path / "idx")
    with pytest.raises(IndexExists, match="already exists"):
        _build(tmp_path / "idx")
    _build(tmp_path / "idx", docs=DOCS[:2], overwrite=True)
    assert len(SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(IndexExists, match="not a semsearch index"):
        _build(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_open_refuses_another_embedder_and_missing_or_newer_indexes(tmp_path):
    _build(tmp_path / "idx")
    with pytest.raises(ManifestMismatch, match="built with model 'hash'"):
        SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder(salt="other"))
    with pytest.raises(ManifestMismatch, match="dim"):
        SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder(dim=32))
    with pytest.raises(ManifestMismatch, match="custom embedder of kind 'fake'"):
        SearchEngine.open(tmp_path / "idx")
    with pytest.raises(IndexNotFound):
        SearchEngine.open(tmp_path / "nowhere")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ManifestMismatch, match="newer"):
        SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())


def test_inconsistent_folder_is_refused(tmp_path):
    _build(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps({**manifest, "documents": 7}))
    with pytest.raises(ManifestMismatch, match="inconsistent"):
        SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())


def test_evaluate_matches_metrics_on_the_same_ranking(tmp_path):
    engine = _build(tmp_path / "idx")
    queries = {"q1": "mice", "q2": "engines wheels", "q3": "unrelated words"}
    qrels = {"q1": {"cats": 1}, "q2": {"cars": 1, "bread": 1}}
    result = engine.evaluate(queries, qrels)
    run = {q: [h.id for h in engine.search(queries[q], k=100)] for q in qrels}
    assert result == evaluate_run(run, qrels)
    assert result.queries == 2 and result.mrr_at_10 == 1.0
    with pytest.raises(BadInput, match="not in the queries file"):
        engine.evaluate({"q1": "mice"}, qrels)


def test_many_documents_stream_through_in_chunks(tmp_path):
    docs = [Document(f"d{i}", f"word{i} common text") for i in range(9000)]  # > 2 chunks of 4096
    engine = _build(tmp_path / "idx", docs=iter(docs))
    assert len(engine) == 9000 and len(engine.store) == 9000
    for doc in (docs[0], docs[4100], docs[8765]):  # each chunk maps its int ids to the right rows
        hit = engine.search(doc.text, k=1, mode="dense")[0]
        assert hit.score == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(engine.embedder.encode([hit.text]), engine.embedder.encode([doc.text]))
        assert engine.search(doc.text, k=1, mode="lexical")[0].id == doc.id  # "word123" is rare: BM25 finds it
