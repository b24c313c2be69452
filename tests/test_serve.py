"""The HTTP API through FastAPI's test client: the read routes, every client error, server errors,
micro-batching and loading (served indexes built with the fake embedder). Writes: test_serve_writes.py;
keys, CORS and Host checks: test_serve_security.py."""

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
from serve_helpers import WORDS, assert_error, ready_client, serve_docs  # noqa: E402

from semsearch import Reranker, SearchEngine, ThresholdLabeler  # noqa: E402
from semsearch.serve.app import create_app  # noqa: E402
from semsearch.serve.schemas import MAX_K, MAX_QUERIES, MAX_QUERY_CHARS  # noqa: E402
from semsearch.serve.served import SearchJob, ServedIndex  # noqa: E402


@pytest.fixture(scope="module")
def client(hash_index, tiny_cross_encoder, tmp_path_factory):
    ranked = tmp_path_factory.mktemp("serve-rr") / "ranked"
    with SearchEngine.build(serve_docs(12), ranked, embedder=HashEmbedder(), progress=False) as engine:
        engine.set_default_reranker(Reranker(str(tiny_cross_encoder)))
    threshold = tmp_path_factory.mktemp("lab") / "threshold.json"
    ThresholdLabeler(score_kind="cosine", labels=("off", "on")).fit(
        [0.1, 0.2, 0.3, 0.6, 0.7, 0.8], [0, 0, 0, 1, 1, 1]).save(threshold)
    app = create_app({"docs": hash_index, "ranked": ranked}, labelers={"gate": threshold},
                     embedders={"docs": HashEmbedder(), "ranked": HashEmbedder()}, max_body=64 * 1024)
    c = ready_client(app)
    yield c
    c.__exit__(None, None, None)


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
def test_search_answers_what_the_library_answers(client, hash_index, mode):
    with SearchEngine.open(hash_index, embedder=HashEmbedder()) as engine:
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
    assert_error(client.post("/labelers/gate/predict", json={"texts": ["hello"]}), 400, "send scores")


def test_setfit_labeller_predicts_texts(tiny_bert, hash_index, tmp_path):
    from semsearch import SetFitLabeler

    a = ["the cat sat on the mat", "a dog barked at the cat", "the cat and the dog", "a cat on a mat"]
    b = ["rivers flow to the sea", "bright stars over the sea", "the sea under the stars", "rivers and stars"]
    lab = SetFitLabeler(tiny_bert, tuning="contrastive", num_iterations=5, seed=0).fit(a + b, ["animal"] * 4 + ["water"] * 4)
    lab.save(tmp_path / "lab")
    probe = ["the dog sat on the mat", "stars over rivers"]
    expected = lab.predict_proba(probe)
    client = ready_client(create_app({}, labelers={"topic": tmp_path / "lab"}))
    try:
        body = client.post("/labelers/topic/predict", json={"texts": probe}).json()
        assert [p["label"] for p in body["predictions"]] == lab.predict(probe)
        np.testing.assert_allclose([p["probability"] for p in body["predictions"]], expected.max(axis=1), atol=1e-6)
        assert_error(client.post("/labelers/topic/predict", json={"scores": [0.3]}), 400, "send texts")
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
    ({"query": "x" * (MAX_QUERY_CHARS + 1)}, 422, f"at most {MAX_QUERY_CHARS} characters"),
])
def test_search_bad_input(client, body, status, fragment):
    assert_error(client.post("/indexes/docs/search", json=body), status, fragment)


@pytest.mark.parametrize("raw", [rb'{"query": "bad \ud800 text", "mode": "dense"}',
                                 rb'{"query": "bad \ud800 text", "mode": "lexical"}',
                                 rb'{"query": "x", "filters": ["tag=\udfff"]}'])
def test_a_lone_surrogate_is_a_client_error(client, raw):  # valid JSON, not valid Unicode
    assert_error(client.post("/indexes/docs/search", content=raw, headers={"content-type": "application/json"}),
                 422, "not valid Unicode")


def test_candidates_below_k_and_mode_without_lexical(client, tmp_path):
    assert_error(client.post("/indexes/ranked/search",
                             json={"query": "x", "k": 10, "rerank": True, "candidates": 5}), 400, "candidates")
    dense_only = tmp_path / "dense"
    SearchEngine.build(serve_docs(8), dense_only, embedder=HashEmbedder(), lexical=False, progress=False).close()
    c = ready_client(create_app({"d": dense_only}, embedders={"d": HashEmbedder()}))
    try:
        assert_error(c.post("/indexes/d/search", json={"query": "x", "mode": "hybrid"}), 400, "lexical side")
        assert c.get("/indexes/d").json()["modes"] == ["dense"]
    finally:
        c.__exit__(None, None, None)


def test_malformed_json_unknown_names_and_routes(client):
    assert_error(client.post("/indexes/docs/search", content=b'{"query": "x",',
                             headers={"content-type": "application/json"}), 400, "malformed JSON")
    assert_error(client.post("/indexes/nope/search", json={"query": "x"}), 404, "no index named 'nope'", "docs")
    assert_error(client.post("/indexes/..%2F..%2Fdocs/search", json={"query": "x"}), 404)
    assert_error(client.get("/indexes/nope"), 404, "nope")
    assert_error(client.post("/labelers/nope/predict", json={"texts": ["x"]}), 404, "no labeller named 'nope'")
    assert_error(client.get("/no/such/route"), 404)
    assert_error(client.put("/indexes/docs/search", json={"query": "x"}), 405)


def test_body_over_the_limit_is_refused(client):
    big = {"query": "x" * (65 * 1024)}
    assert_error(client.post("/indexes/docs/search", json=big), 413, "limit")

    def chunks():  # no declared length: counted as it streams in
        for _ in range(100):
            yield b" " * 1024

    assert_error(client.post("/indexes/docs/search", content=chunks(), headers={"content-type": "application/json"}),
                 413, "limit")
    assert client.post("/indexes/docs/search", json={"query": "cat"}).status_code == 200


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
def test_queued_requests_are_encoded_together_and_each_gets_its_own_result(hash_index, micro_batch):
    embedder = SlowHash()
    served = ServedIndex("docs", hash_index, embedder=embedder, micro_batch=micro_batch, batch_wait=0.0)
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
    with SearchEngine.open(hash_index, embedder=HashEmbedder()) as engine:
        for job, got in zip(jobs, results):
            want = engine.search(job.queries[0], k=3, mode=job.mode)
            assert [h.id for h in got[0]] == [h.id for h in want]
            assert [h.score for h in got[0]] == pytest.approx([h.score for h in want], rel=1e-6)


def test_one_bad_request_in_a_batch_fails_alone(hash_index):
    embedder = SlowHash()
    served = ServedIndex("docs", hash_index, embedder=embedder, batch_wait=0.0)
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


def test_a_server_error_is_a_one_line_500_logged_and_the_server_goes_on(hash_index, caplog):
    c = ready_client(create_app({"docs": hash_index}, embedders={"docs": Exploding()}))
    try:
        with caplog.at_level(logging.ERROR, logger="semsearch"):
            message = assert_error(c.post("/indexes/docs/search", json={"query": "explode now", "mode": "dense"}),
                                   500, "the model fell over")
        assert message.startswith("internal error: RuntimeError")
        assert any("the model fell over" in r.getMessage() or (r.exc_info and "fell over" in str(r.exc_info[1]))
                   for r in caplog.records)
        assert c.post("/indexes/docs/search", json={"query": "cat", "mode": "dense"}).status_code == 200
    finally:
        c.__exit__(None, None, None)


class Gated(HashEmbedder):
    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def embed_batch(self, texts):
        assert self.gate.wait(20)
        return super().embed_batch(texts)


def test_health_is_ready_only_once_models_have_loaded(hash_index):
    embedder = Gated()
    with TestClient(create_app({"docs": hash_index}, embedders={"docs": embedder}),
                    raise_server_exceptions=False) as c:
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        assert_error(c.post("/indexes/docs/search", json={"query": "cat"}), 503, "loading")
        embedder.gate.set()
        for _ in range(200):
            if c.get("/health").status_code == 200:
                break
            time.sleep(0.02)
        assert c.post("/indexes/docs/search", json={"query": "cat"}).status_code == 200


def test_a_failed_load_is_reported(tmp_path, fresh_hash_index):
    from semsearch import IndexNotFound

    with pytest.raises(IndexNotFound):  # what needs no model is checked before the app starts
        create_app({"gone": tmp_path / "missing"})
    # the index's fake embedder is not given: loading its recorded one fails in the background
    with TestClient(create_app({"docs": fresh_hash_index}), raise_server_exceptions=False) as c:
        for _ in range(200):
            if c.get("/health").json()["status"] != "loading":
                break
            time.sleep(0.02)
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert "custom embedder" in health.json()["error"]
        assert_error(c.post("/indexes/docs/search", json={"query": "x"}), 503, "could not load")
