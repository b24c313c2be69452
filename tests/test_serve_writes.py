"""Writes through the server (add, update, delete) and changes made by other processes: outside writes,
a fusion or default reranker set meanwhile, models that run their own code."""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install -e '.[serve]'")
from fakes import HashEmbedder  # noqa: E402
from serve_helpers import assert_error, poll, ready_client, serve_docs  # noqa: E402

from semsearch import Document, Reranker, SearchEngine  # noqa: E402
from semsearch.serve.app import create_app  # noqa: E402
from semsearch.serve.schemas import MAX_DOCUMENTS  # noqa: E402
from semsearch.serve.served import SearchJob, ServedIndex  # noqa: E402


@pytest.mark.parametrize("body, fragment", [
    ({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, "duplicate ids"),
    ({"documents": [{"id": "a", "text": "  "}]}, "non-empty"),
    ({"documents": [{"id": "", "text": "x"}]}, "id"),
    ({"documents": [{"id": 7, "text": "x"}]}, "id"),
    ({"documents": [{"id": "a", "text": "x", "tags": ["t"]}]}, "unknown field"),
    ({"documents": []}, "documents"),
    ({"documents": [{"id": f"n{i}", "text": "x"} for i in range(MAX_DOCUMENTS + 1)]}, "documents"),
])
def test_add_bad_input_writes_nothing(fresh_hash_index, body, fragment):
    c = ready_client(create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()}))
    try:
        assert_error(c.post("/indexes/docs/documents", json=body), 422, fragment)
        assert c.get("/indexes/docs").json()["documents"] == 40
    finally:
        c.__exit__(None, None, None)


# --- writing ----------------------------------------------------------------------------------------


def test_add_update_delete_are_searchable_once_acknowledged(fresh_hash_index):
    c = ready_client(create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()}))
    try:
        added = c.post("/indexes/docs/documents", json={"documents": [
            {"id": "zeb", "text": "zebra stripes quagga", "title": "Zebra", "metadata": {"year": 1999}},
            {"id": "d1", "text": "an updated text about a quagga"}]}).json()
        assert (added["added"], added["updated"], added["embedded"]) == (1, 1, 2) and added["ids"] == ["zeb", "d1"]
        hits = c.post("/indexes/docs/search", json={"query": "zebra stripes quagga", "k": 2, "mode": "dense"}).json()
        assert hits["hits"][0]["id"] == "zeb" and hits["hits"][0]["metadata"] == {"year": 1999}
        hits = c.post("/indexes/docs/search", json={"query": "updated quagga", "k": 1, "mode": "lexical"}).json()
        assert hits["hits"][0]["id"] == "d1" and hits["hits"][0]["text"] == "an updated text about a quagga"
        again = c.post("/indexes/docs/documents", json={"documents": [{"id": "zeb", "text": "zebra stripes quagga",
                                                                        "title": "Zebra", "metadata": {"year": 1999}}]})
        assert again.json()["unchanged"] == 1
        assert_error(c.request("DELETE", "/indexes/docs/documents", json={"ids": ["zeb", "ghost"]}), 400, "ghost",
                     "nothing was deleted", "index 'docs'")
        deleted = c.request("DELETE", "/indexes/docs/documents", json={"ids": ["zeb"]}).json()
        assert deleted["deleted"] == 1
        hits = c.post("/indexes/docs/search", json={"query": "zebra stripes quagga", "k": 5, "mode": "hybrid"}).json()
        assert "zeb" not in [h["id"] for h in hits["hits"]]
        assert c.get("/indexes/docs").json()["documents"] == 40
        assert_error(c.request("DELETE", "/indexes/docs/documents", json={"ids": ["d2", "d2"]}), 422, "duplicate")
    finally:
        c.__exit__(None, None, None)
    with SearchEngine.open(fresh_hash_index, embedder=HashEmbedder()) as engine:  # on disk, for the next process
        assert len(engine) == 40 and engine.store.lookup(["zeb"]) == {}


def test_readers_keep_answering_while_a_write_is_stored(fresh_hash_index, monkeypatch):
    from semsearch.index import store as store_module

    held, release = threading.Event(), threading.Event()
    upsert = store_module.DocStore.upsert

    def slow_upsert(self, *args, **kwargs):
        held.set()
        assert release.wait(20)
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(store_module.DocStore, "upsert", slow_upsert)
    served = ServedIndex("docs", fresh_hash_index, embedder=HashEmbedder())
    served.start()
    try:
        writer = threading.Thread(target=served.add, args=([Document("new", "quagga zebra")],))
        writer.start()
        assert held.wait(10)
        for mode in ("dense", "lexical", "hybrid"):  # the write is mid-transaction; searches still answer
            hits = served.search(SearchJob(["quagga zebra"], k=3, mode=mode)).result(timeout=10)
            assert "new" not in [h.id for h in hits[0]]
        release.set()
        writer.join(20)
        hits = served.search(SearchJob(["quagga zebra"], k=1, mode="dense")).result(timeout=10)
        assert hits[0][0].id == "new"  # acknowledged (add returned), so the next search sees it
    finally:
        release.set()
        served.stop()


def test_outside_writes_are_picked_up(fresh_hash_index):
    served = ServedIndex("docs", fresh_hash_index, embedder=HashEmbedder())
    served.start()
    try:
        with SearchEngine.open(fresh_hash_index, embedder=HashEmbedder()) as other:  # e.g. semsearch add
            other.add([Document("outside", "okapi giraffe")], progress=False)
        for _ in range(200):
            hits = served.search(SearchJob(["okapi giraffe"], k=1, mode="lexical")).result(timeout=10)
            if hits[0] and hits[0][0].id == "outside":
                break
            time.sleep(0.02)
        assert hits[0][0].id == "outside"
    finally:
        served.stop()


def test_models_that_run_their_own_code_are_refused_before_the_app_starts_unless_allowed(fresh_hash_index,
                                                                                         tiny_cross_encoder):
    from semsearch import ModelError

    with SearchEngine.open(fresh_hash_index, embedder=HashEmbedder()) as engine:
        engine.set_default_reranker(Reranker(str(tiny_cross_encoder)))
    manifest = json.loads((fresh_hash_index / "manifest.json").read_text())
    manifest["reranker"]["trust_remote_code"] = True  # as if set by someone who trusts this model's code
    (fresh_hash_index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="the index's reranker"):
        create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()})
    c = ready_client(create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()}, trust_remote_code=True))
    try:
        assert c.post("/indexes/docs/search", json={"query": "cat", "rerank": True}).status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_a_fusion_or_default_reranker_set_by_another_process_is_picked_up(fresh_hash_index, tiny_cross_encoder):
    from semsearch.index.fusion import Fusion

    c = ready_client(create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()}))
    try:
        assert c.get("/indexes/docs").json()["fusion"]["weight"] == 0.5
        assert_error(c.post("/indexes/docs/search", json={"query": "cat", "rerank": True}), 400, "no default reranker")
        with SearchEngine.open(fresh_hash_index, embedder=HashEmbedder()) as outside:  # as `semsearch tune` would
            outside.set_fusion(Fusion("score", 0.8))
            outside.set_default_reranker(Reranker(str(tiny_cross_encoder)))
        for _ in range(300):  # a search notices the new manifest; a reader is reopened in the background
            answer = c.post("/indexes/docs/search", json={"query": "cat", "rerank": True})
            if answer.status_code == 200:
                break
            time.sleep(0.02)
        assert answer.status_code == 200 and answer.json()["reranked"] is True
        assert c.get("/indexes/docs").json()["fusion"]["weight"] == 0.8
    finally:
        c.__exit__(None, None, None)


def test_a_new_reranker_that_fails_to_load_keeps_the_old_one_and_writes_still_succeed(fresh_hash_index,
                                                                                       tiny_cross_encoder):
    with SearchEngine.open(fresh_hash_index, embedder=HashEmbedder()) as engine:
        engine.set_default_reranker(Reranker(str(tiny_cross_encoder)))
    c = ready_client(create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()}))
    try:
        manifest = json.loads((fresh_hash_index / "manifest.json").read_text())
        manifest["reranker"]["trust_remote_code"] = True  # this server was not started with --trust-remote-code
        (fresh_hash_index / "manifest.json").write_text(json.dumps(manifest))
        added = c.post("/indexes/docs/documents", json={"documents": [{"id": "new", "text": "zebra stripes"}]})
        assert added.status_code == 200, added.text
        found = poll(lambda: c.post("/indexes/docs/search", json={"query": "zebra", "mode": "lexical", "k": 1}),
                      lambda a: a.status_code == 200 and a.json()["hits"] and a.json()["hits"][0]["id"] == "new")
        assert found.json()["hits"][0]["id"] == "new"
        reranked = c.post("/indexes/docs/search", json={"query": "zebra", "rerank": True})
        assert reranked.status_code == 200 and reranked.json()["reranked"] is True  # the reranker loaded at start
        # cleared by another process: a rerank request is refused, never answered unreranked
        with SearchEngine.open(fresh_hash_index, embedder=HashEmbedder()) as outside:
            outside.set_default_reranker(None)
        refused = poll(lambda: c.post("/indexes/docs/search", json={"query": "zebra", "rerank": True}),
                        lambda a: a.status_code != 200)
        assert_error(refused, 400, "no default reranker")
    finally:
        c.__exit__(None, None, None)


def test_a_rerank_job_whose_reranker_was_cleared_after_its_check_fails_as_a_client_error(hash_index,
                                                                                       tiny_cross_encoder):
    from semsearch import BadInput

    ranked = hash_index.parent / "ranked-cleared"
    with SearchEngine.build(serve_docs(8), ranked, embedder=HashEmbedder(), progress=False) as engine:
        engine.set_default_reranker(Reranker(str(tiny_cross_encoder)))
    served = ServedIndex("ranked", ranked, embedder=HashEmbedder())
    served.start()
    try:
        job = SearchJob(["cat"], k=2, rerank=True)
        served.check(job)  # passes: a reranker is loaded
        served.reranker = None  # cleared by a refresh before the worker runs the job
        with pytest.raises(BadInput, match="no default reranker"):
            served.search(job).result(10)
    finally:
        served.stop()


@pytest.mark.parametrize("raw", [rb'{"documents": [{"id": "a", "text": "bad \ud800"}]}',
                                 rb'{"documents": [{"id": "a", "text": "x", "metadata": {"k": "\udc00"}}]}'])
def test_a_document_with_a_lone_surrogate_is_refused_and_nothing_is_written(fresh_hash_index, raw):
    c = ready_client(create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()}))
    try:
        assert_error(c.post("/indexes/docs/documents", content=raw, headers={"content-type": "application/json"}),
                     422, "not valid Unicode")
        assert c.get("/indexes/docs").json()["documents"] == 40
    finally:
        c.__exit__(None, None, None)

