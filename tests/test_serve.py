"""The HTTP API through FastAPI's test client: every route, every client error, server errors, auth, CORS,
micro-batching and writes alongside reads (served indexes built with the fake embedder)."""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install -e '.[serve]'")
from fakes import HashEmbedder  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from semsearch import Document, Reranker, SearchEngine, ThresholdLabeler  # noqa: E402
from semsearch.serve.app import create_app  # noqa: E402
from semsearch.serve.schemas import MAX_DOCUMENTS, MAX_K, MAX_QUERIES  # noqa: E402
from semsearch.serve.served import SearchJob, ServedIndex  # noqa: E402

WORDS = "cat dog river sea star moon bread oven chess piano volcano lava train road snow rain".split()


def _docs(n: int = 40) -> list[Document]:
    return [Document(f"d{i}", f"{WORDS[i % 16]} {WORDS[(i * 7) % 16]} {WORDS[(i * 3 + 1) % 16]} note {i}",
                     title=f"Doc {i}", metadata={"year": 2000 + i % 10, "lang": "en" if i % 2 else "de"})
            for i in range(n)]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "docs"
    SearchEngine.build(_docs(), path, embedder=HashEmbedder(), progress=False).close()
    return path


@pytest.fixture()
def fresh_index(tmp_path):
    path = tmp_path / "docs"
    SearchEngine.build(_docs(), path, embedder=HashEmbedder(), progress=False).close()
    return path


def _client(app) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    for _ in range(200):
        if client.get("/health").status_code == 200:
            return client
        time.sleep(0.02)
    raise AssertionError(f"server not ready: {client.get('/health').json()}")


@pytest.fixture(scope="module")
def client(index_dir, tiny_cross_encoder, tmp_path_factory):
    ranked = tmp_path_factory.mktemp("serve-rr") / "ranked"
    with SearchEngine.build(_docs(12), ranked, embedder=HashEmbedder(), progress=False) as engine:
        engine.set_default_reranker(Reranker(str(tiny_cross_encoder)))
    threshold = tmp_path_factory.mktemp("lab") / "threshold.json"
    ThresholdLabeler(score_kind="cosine", labels=("off", "on")).fit(
        [0.1, 0.2, 0.3, 0.6, 0.7, 0.8], [0, 0, 0, 1, 1, 1]).save(threshold)
    app = create_app({"docs": index_dir, "ranked": ranked}, labelers={"gate": threshold},
                     embedders={"docs": HashEmbedder(), "ranked": HashEmbedder()}, max_body=64 * 1024)
    c = _client(app)
    yield c
    c.__exit__(None, None, None)


def _error(response, status: int, *fragments: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    message = body["error"]
    assert isinstance(message, str) and "\n" not in message and message.strip() == message, body
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- reading ------------------------------------------------------------------------------------


def test_health_indexes_and_index_info(client):
    health = client.get("/health").json()
    assert health["status"] == "ready" and health["indexes"] == ["docs", "ranked"] and health["labelers"] == ["gate"]
    listed = {i["name"]: i for i in client.get("/indexes").json()["indexes"]}
    assert set(listed) == {"docs", "ranked"}
    info = client.get("/indexes/docs").json()
    assert info["documents"] == 40 and info["passages"] == 40 and info["default_mode"] == "hybrid"
    assert info["modes"] == ["dense", "lexical", "hybrid"] and info["reranker"] is None and info["dim"] == 64
    assert client.get("/indexes/ranked").json()["reranker"]["model"]
    assert "path" not in json.dumps(info) or str(info).find("/tmp") < 0  # served by name, never by path


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_search_answers_what_the_library_answers(client, index_dir, mode):
    with SearchEngine.open(index_dir, embedder=HashEmbedder()) as engine:
        expected = [h.to_dict() for h in engine.search("river sea", k=5, mode=mode, filters=["year>=2003"])]
    body = client.post("/indexes/docs/search", json={"query": "river sea", "k": 5, "mode": mode,
                                                     "filters": ["year>=2003"]}).json()
    assert body["query"] == "river sea" and body["mode"] == mode and body["reranked"] is False
    assert body["took_ms"] > 0
    assert [h["id"] for h in body["hits"]] == [h["id"] for h in expected]
    for got, want in zip(body["hits"], expected):
        assert got.keys() == want.keys() and got["passage"] == want["passage"]
        assert got["score"] == pytest.approx(want["score"], rel=1e-6)
        assert got["metadata"]["year"] >= 2003


def test_several_queries_get_one_result_each(client):
    body = client.post("/indexes/docs/search", json={"queries": ["cat dog", "piano chess", "snow rain"],
                                                     "k": 3, "mode": "dense"}).json()
    assert [r["query"] for r in body["results"]] == ["cat dog", "piano chess", "snow rain"]
    for result in body["results"]:
        single = client.post("/indexes/docs/search", json={"query": result["query"], "k": 3, "mode": "dense"}).json()
        assert [h["id"] for h in result["hits"]] == [h["id"] for h in single["hits"]]


def test_rerank_uses_the_index_default_reranker(client):
    body = client.post("/indexes/ranked/search", json={"query": "cat river", "k": 3, "rerank": True,
                                                       "candidates": 8}).json()
    assert body["reranked"] is True and len(body["hits"]) == 3
    assert all("rerank_score" in h for h in body["hits"])
    plain = client.post("/indexes/ranked/search", json={"query": "cat river", "k": 3}).json()
    assert all("rerank_score" not in h for h in plain["hits"])


def test_labeller_predicts_from_scores(client):
    body = client.post("/labelers/gate/predict", json={"scores": [0.05, 0.9]}).json()
    assert [p["label"] for p in body["predictions"]] == ["off", "on"]
    assert all(0.5 <= p["probability"] <= 1 for p in body["predictions"])
    assert client.get("/labelers").json()["labelers"][0]["input"] == "scores"
    _error(client.post("/labelers/gate/predict", json={"texts": ["hello"]}), 400, "send scores")


def test_setfit_labeller_predicts_texts(tiny_bert, index_dir, tmp_path):
    from semsearch import SetFitLabeler

    a = ["the cat sat on the mat", "a dog barked at the cat", "the cat and the dog", "a cat on a mat"]
    b = ["rivers flow to the sea", "bright stars over the sea", "the sea under the stars", "rivers and stars"]
    lab = SetFitLabeler(tiny_bert, tuning="contrastive", num_iterations=5, seed=0).fit(a + b, ["animal"] * 4 + ["water"] * 4)
    lab.save(tmp_path / "lab")
    probe = ["the dog sat on the mat", "stars over rivers"]
    expected = lab.predict_proba(probe)
    client = _client(create_app({}, labelers={"topic": tmp_path / "lab"}))
    try:
        body = client.post("/labelers/topic/predict", json={"texts": probe}).json()
        assert [p["label"] for p in body["predictions"]] == lab.predict(probe)
        np.testing.assert_allclose([p["probability"] for p in body["predictions"]], expected.max(axis=1), atol=1e-6)
        _error(client.post("/labelers/topic/predict", json={"scores": [0.3]}), 400, "send texts")
    finally:
        client.__exit__(None, None, None)


def test_openapi_schema_and_docs_page_need_no_cdn(client):
    schema = client.get("/openapi.json").json()
    assert {"/indexes/{name}/search", "/indexes/{name}/documents", "/labelers/{name}/predict"} <= set(schema["paths"])
    assert "SearchRequest" in schema["components"]["schemas"]
    page = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    home = client.get("/")
    assert home.status_code == 200 and "text/html" in home.headers["content-type"]
    assert "http://" not in home.text.replace("http://www.w3.org", "") and "https://" not in home.text


# --- client errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body, status, fragment", [
    ({"query": "x", "k": 0}, 422, "k:"),
    ({"query": "x", "k": MAX_K + 1}, 422, "k:"),
    ({"query": "x", "k": "5"}, 422, "k:"),
    ({"query": "x", "rerank": "yes"}, 422, "rerank:"),
    ({"query": 5}, 422, "query:"),
    ({"query": "x", "colour": "red"}, 422, "colour: unknown field"),
    ({"query": "   "}, 422, "non-empty"),
    ({"queries": ["a", ""]}, 422, "non-empty"),
    ({"queries": []}, 422, "empty"),
    ({"queries": ["q"] * (MAX_QUERIES + 1)}, 422, "queries:"),
    ({}, 422, "exactly one of query or queries"),
    ({"query": "x", "queries": ["y"]}, 422, "exactly one"),
    ({"query": "x", "mode": "fuzzy"}, 422, "mode:"),
    ({"query": "x", "filters": ["year>>2"]}, 400, "filter"),
    ({"query": "x", "filters": "year>2"}, 422, "filters:"),
    ({"query": "x", "rerank": True}, 400, "no default reranker"),
    ({"query": "x", "candidates": 20}, 400, "only with rerank"),
])
def test_search_bad_input(client, body, status, fragment):
    _error(client.post("/indexes/docs/search", json=body), status, fragment)


def test_candidates_below_k_and_mode_without_lexical(client, tmp_path):
    _error(client.post("/indexes/ranked/search", json={"query": "x", "k": 10, "rerank": True, "candidates": 5}),
           400, "candidates")
    dense_only = tmp_path / "dense"
    SearchEngine.build(_docs(8), dense_only, embedder=HashEmbedder(), lexical=False, progress=False).close()
    c = _client(create_app({"d": dense_only}, embedders={"d": HashEmbedder()}))
    try:
        _error(c.post("/indexes/d/search", json={"query": "x", "mode": "hybrid"}), 400, "lexical side")
        assert c.get("/indexes/d").json()["modes"] == ["dense"]
    finally:
        c.__exit__(None, None, None)


def test_malformed_json_unknown_names_and_routes(client):
    _error(client.post("/indexes/docs/search", content=b'{"query": "x",', headers={"content-type": "application/json"}),
           400, "malformed JSON")
    _error(client.post("/indexes/nope/search", json={"query": "x"}), 404, "no index named 'nope'", "docs")
    _error(client.post("/indexes/..%2F..%2Fdocs/search", json={"query": "x"}), 404)
    _error(client.get("/indexes/nope"), 404, "nope")
    _error(client.post("/labelers/nope/predict", json={"texts": ["x"]}), 404, "no labeller named 'nope'")
    _error(client.get("/no/such/route"), 404)
    _error(client.put("/indexes/docs/search", json={"query": "x"}), 405)


def test_body_over_the_limit_is_refused(client):
    big = {"query": "x" * (65 * 1024)}
    _error(client.post("/indexes/docs/search", json=big), 413, "limit")

    def chunks():  # no declared length: counted as it streams in
        for _ in range(100):
            yield b" " * 1024

    _error(client.post("/indexes/docs/search", content=chunks(), headers={"content-type": "application/json"}),
           413, "limit")
    assert client.post("/indexes/docs/search", json={"query": "cat"}).status_code == 200


@pytest.mark.parametrize("body, fragment", [
    ({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, "duplicate ids"),
    ({"documents": [{"id": "a", "text": "  "}]}, "non-empty"),
    ({"documents": [{"id": "", "text": "x"}]}, "id"),
    ({"documents": [{"id": 7, "text": "x"}]}, "id"),
    ({"documents": [{"id": "a", "text": "x", "tags": ["t"]}]}, "unknown field"),
    ({"documents": []}, "documents"),
    ({"documents": [{"id": f"n{i}", "text": "x"} for i in range(MAX_DOCUMENTS + 1)]}, "documents"),
])
def test_add_bad_input_writes_nothing(fresh_index, body, fragment):
    c = _client(create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()}))
    try:
        _error(c.post("/indexes/docs/documents", json=body), 422, fragment)
        assert c.get("/indexes/docs").json()["documents"] == 40
    finally:
        c.__exit__(None, None, None)


# --- writing ----------------------------------------------------------------------------------------


def test_add_update_delete_are_searchable_once_acknowledged(fresh_index):
    c = _client(create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()}))
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
        _error(c.request("DELETE", "/indexes/docs/documents", json={"ids": ["zeb", "ghost"]}), 400, "ghost",
               "nothing was deleted", "index 'docs'")
        deleted = c.request("DELETE", "/indexes/docs/documents", json={"ids": ["zeb"]}).json()
        assert deleted["deleted"] == 1
        hits = c.post("/indexes/docs/search", json={"query": "zebra stripes quagga", "k": 5, "mode": "hybrid"}).json()
        assert "zeb" not in [h["id"] for h in hits["hits"]]
        assert c.get("/indexes/docs").json()["documents"] == 40
        _error(c.request("DELETE", "/indexes/docs/documents", json={"ids": ["d2", "d2"]}), 422, "duplicate")
    finally:
        c.__exit__(None, None, None)
    with SearchEngine.open(fresh_index, embedder=HashEmbedder()) as engine:  # on disk, for the next process
        assert len(engine) == 40 and engine.store.lookup(["zeb"]) == {}


def test_readers_keep_answering_while_a_write_is_stored(fresh_index, monkeypatch):
    from semsearch.index import store as store_module

    held, release = threading.Event(), threading.Event()
    upsert = store_module.DocStore.upsert

    def slow_upsert(self, *args, **kwargs):
        held.set()
        assert release.wait(20)
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(store_module.DocStore, "upsert", slow_upsert)
    served = ServedIndex("docs", fresh_index, embedder=HashEmbedder())
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


def test_outside_writes_are_picked_up(fresh_index):
    served = ServedIndex("docs", fresh_index, embedder=HashEmbedder())
    served.start()
    try:
        with SearchEngine.open(fresh_index, embedder=HashEmbedder()) as other:  # e.g. semsearch add
            other.add([Document("outside", "okapi giraffe")], progress=False)
        for _ in range(200):
            hits = served.search(SearchJob(["okapi giraffe"], k=1, mode="lexical")).result(timeout=10)
            if hits[0] and hits[0][0].id == "outside":
                break
            time.sleep(0.02)
        assert hits[0][0].id == "outside"
    finally:
        served.stop()


# --- micro-batching -----------------------------------------------------------------------------------


class SlowHash(HashEmbedder):
    """Each model call takes 0.1 s, so requests queue behind it; ``busy`` is set when a call starts."""

    def __init__(self):
        super().__init__()
        self.busy = threading.Event()

    def embed_batch(self, texts):
        self.busy.set()
        time.sleep(0.1)
        return super().embed_batch(texts)


@pytest.mark.parametrize("micro_batch", [True, False])
def test_queued_requests_are_encoded_together_and_each_gets_its_own_result(index_dir, micro_batch):
    embedder = SlowHash()
    served = ServedIndex("docs", index_dir, embedder=embedder, micro_batch=micro_batch, batch_wait=0.0)
    served.start()
    try:
        queries = [f"{WORDS[i]} {WORDS[(i + 5) % 16]}" for i in range(9)]
        jobs = [SearchJob([q], k=3, mode=("dense", "hybrid")[i % 2]) for i, q in enumerate(queries)]
        embedder.calls.clear()
        embedder.busy.clear()
        futures = [served.search(jobs[0])]
        assert embedder.busy.wait(10)  # the encoder is busy with the first request; the others queue
        futures += [served.search(job) for job in jobs[1:]]
        results = [f.result(timeout=30) for f in futures]
    finally:
        served.stop()
    if micro_batch:  # the first call took one query; the eight queued behind it went in one call
        assert embedder.calls == [1, 8] and served.stats.largest == 8
    else:
        assert embedder.calls == [1] * 9 and served.stats.largest == 1
    with SearchEngine.open(index_dir, embedder=HashEmbedder()) as engine:
        for job, got in zip(jobs, results):
            want = engine.search(job.queries[0], k=3, mode=job.mode)
            assert [h.id for h in got[0]] == [h.id for h in want]
            assert [h.score for h in got[0]] == pytest.approx([h.score for h in want], rel=1e-6)


def test_one_bad_request_in_a_batch_fails_alone(index_dir):
    embedder = SlowHash()
    served = ServedIndex("docs", index_dir, embedder=embedder, batch_wait=0.0)
    served.start()
    try:
        first = served.search(SearchJob(["cat"], k=2))
        bad = served.search(SearchJob(["dog"], k=2, filters=("year>=abc",)))
        good = served.search(SearchJob(["dog"], k=2, filters=("year>=2005",)))
        assert len(first.result(10)[0]) == 2 and all(h.metadata["year"] >= 2005 for h in good.result(10)[0])
        with pytest.raises(Exception, match="year"):
            bad.result(10)
    finally:
        served.stop()


# --- server errors, auth, CORS, loading ---------------------------------------------------------------


class Exploding(HashEmbedder):
    def embed_batch(self, texts):
        if any("explode" in t for t in texts):
            raise RuntimeError("the model fell over")
        return super().embed_batch(texts)


def test_a_server_error_is_a_one_line_500_logged_and_the_server_goes_on(index_dir, caplog):
    c = _client(create_app({"docs": index_dir}, embedders={"docs": Exploding()}))
    try:
        with caplog.at_level(logging.ERROR, logger="semsearch"):
            message = _error(c.post("/indexes/docs/search", json={"query": "explode now", "mode": "dense"}), 500,
                             "the model fell over")
        assert message.startswith("internal error: RuntimeError")
        assert any("the model fell over" in r.getMessage() or (r.exc_info and "fell over" in str(r.exc_info[1]))
                   for r in caplog.records)
        assert c.post("/indexes/docs/search", json={"query": "cat", "mode": "dense"}).status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_api_key_guards_writes_and_optionally_reads(fresh_index):
    c = _client(create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()}, api_key="s3cret"))
    add = {"documents": [{"id": "k1", "text": "keyed text"}]}
    try:
        _error(c.post("/indexes/docs/documents", json=add), 401, "API key")
        _error(c.post("/indexes/docs/documents", json=add, headers={"Authorization": "Bearer wrong"}), 401)
        _error(c.request("DELETE", "/indexes/docs/documents", json={"ids": ["d1"]}), 401)
        assert c.post("/indexes/docs/documents", json=add, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/indexes/docs/search", json={"query": "keyed"}).status_code == 200  # reads stay open
    finally:
        c.__exit__(None, None, None)
    c = _client(create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()}, api_key="s3cret",
                           api_key_reads=True))
    try:
        _error(c.post("/indexes/docs/search", json={"query": "keyed"}), 401)
        _error(c.get("/indexes"), 401)
        ok = c.post("/indexes/docs/search", json={"query": "keyed"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_cors_is_off_unless_an_origin_is_given(index_dir, client):
    origin = {"Origin": "http://app.example"}
    assert "access-control-allow-origin" not in client.get("/indexes", headers=origin).headers
    c = _client(create_app({"docs": index_dir}, embedders={"docs": HashEmbedder()},
                           cors_origins=("http://app.example",)))
    try:
        assert c.get("/indexes", headers=origin).headers["access-control-allow-origin"] == "http://app.example"
        other = c.get("/indexes", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        c.__exit__(None, None, None)


class Gated(HashEmbedder):
    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def embed_batch(self, texts):
        assert self.gate.wait(20)
        return super().embed_batch(texts)


def test_health_is_ready_only_once_models_have_loaded(index_dir):
    embedder = Gated()
    with TestClient(create_app({"docs": index_dir}, embedders={"docs": embedder}),
                    raise_server_exceptions=False) as c:
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        _error(c.post("/indexes/docs/search", json={"query": "cat"}), 503, "loading")
        embedder.gate.set()
        for _ in range(200):
            if c.get("/health").status_code == 200:
                break
            time.sleep(0.02)
        assert c.post("/indexes/docs/search", json={"query": "cat"}).status_code == 200


def test_a_failed_load_is_reported(tmp_path, fresh_index):
    from semsearch import IndexNotFound

    with pytest.raises(IndexNotFound):  # what needs no model is checked before the app starts
        create_app({"gone": tmp_path / "missing"})
    # the index's fake embedder is not given: loading its recorded one fails in the background
    with TestClient(create_app({"docs": fresh_index}), raise_server_exceptions=False) as c:
        for _ in range(200):
            if c.get("/health").json()["status"] != "loading":
                break
            time.sleep(0.02)
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert "custom embedder" in health.json()["error"]
        _error(c.post("/indexes/docs/search", json={"query": "x"}), 503, "could not load")


def test_models_that_run_their_own_code_are_refused_before_the_app_starts_unless_allowed(fresh_index,
                                                                                         tiny_cross_encoder):
    from semsearch import ModelError

    with SearchEngine.open(fresh_index, embedder=HashEmbedder()) as engine:
        engine.set_default_reranker(Reranker(str(tiny_cross_encoder)))
    manifest = json.loads((fresh_index / "manifest.json").read_text())
    manifest["reranker"]["trust_remote_code"] = True  # as if set by someone who trusts this model's code
    (fresh_index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="the index's reranker"):
        create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()})
    c = _client(create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()}, trust_remote_code=True))
    try:
        assert c.post("/indexes/docs/search", json={"query": "cat", "rerank": True}).status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_a_fusion_or_default_reranker_set_by_another_process_is_picked_up(fresh_index, tiny_cross_encoder):
    from semsearch.index.fusion import Fusion

    c = _client(create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()}))
    try:
        assert c.get("/indexes/docs").json()["fusion"]["weight"] == 0.5
        _error(c.post("/indexes/docs/search", json={"query": "cat", "rerank": True}), 400, "no default reranker")
        with SearchEngine.open(fresh_index, embedder=HashEmbedder()) as outside:  # as `semsearch tune` would
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


def test_a_loopback_server_answers_only_to_loopback_host_names(fresh_index):
    app = create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()},
                     allowed_hosts=("localhost", "127.0.0.1", "::1"))
    with TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
        for _ in range(200):
            if c.get("/health").status_code == 200:
                break
            time.sleep(0.02)
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "LOCALHOST:1"):
            assert c.get("/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example:8000", "evil.example", "127.0.0.1.evil.example", ""):
            answer = c.post("/indexes/docs/documents", headers={"host": host},
                            json={"documents": [{"id": "x", "text": "planted"}]})
            _error(answer, 400, "unknown Host")
        assert c.get("/indexes/docs").json()["documents"] == 40  # nothing was written


def _poll(send, done, tries=300):
    for _ in range(tries):
        answer = send()
        if done(answer):
            return answer
        time.sleep(0.02)
    return answer


def test_a_new_reranker_that_fails_to_load_keeps_the_old_one_and_writes_still_succeed(fresh_index,
                                                                                       tiny_cross_encoder):
    with SearchEngine.open(fresh_index, embedder=HashEmbedder()) as engine:
        engine.set_default_reranker(Reranker(str(tiny_cross_encoder)))
    c = _client(create_app({"docs": fresh_index}, embedders={"docs": HashEmbedder()}))
    try:
        manifest = json.loads((fresh_index / "manifest.json").read_text())
        manifest["reranker"]["trust_remote_code"] = True  # this server was not started with --trust-remote-code
        (fresh_index / "manifest.json").write_text(json.dumps(manifest))
        added = c.post("/indexes/docs/documents", json={"documents": [{"id": "new", "text": "zebra stripes"}]})
        assert added.status_code == 200, added.text
        found = _poll(lambda: c.post("/indexes/docs/search", json={"query": "zebra", "mode": "lexical", "k": 1}),
                      lambda a: a.status_code == 200 and a.json()["hits"] and a.json()["hits"][0]["id"] == "new")
        assert found.json()["hits"][0]["id"] == "new"
        reranked = c.post("/indexes/docs/search", json={"query": "zebra", "rerank": True})
        assert reranked.status_code == 200 and reranked.json()["reranked"] is True  # the reranker loaded at start
        # cleared by another process: a rerank request is refused, never answered unreranked
        with SearchEngine.open(fresh_index, embedder=HashEmbedder()) as outside:
            outside.set_default_reranker(None)
        refused = _poll(lambda: c.post("/indexes/docs/search", json={"query": "zebra", "rerank": True}),
                        lambda a: a.status_code != 200)
        _error(refused, 400, "no default reranker")
    finally:
        c.__exit__(None, None, None)


def test_serve_answers_loopback_names_and_those_allowed():
    from semsearch.cli.serve import _allowed_hosts

    assert _allowed_hosts("127.0.0.1", ()) == ("localhost", "127.0.0.1", "::1", "127.0.0.1")
    assert _allowed_hosts("127.0.0.1", ("search.example.org",))[-1] == "search.example.org"
    assert _allowed_hosts("127.0.0.1", ("*",)) is None and _allowed_hosts("0.0.0.0", ()) is None
