"""Who may use the server: API keys for writes (and reads), CORS origins, and the Host names a loopback
server answers (DNS rebinding)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install -e '.[serve]'")
from fakes import HashEmbedder  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from serve_helpers import assert_error, ready_client  # noqa: E402

from semsearch.serve.app import create_app  # noqa: E402


def test_api_key_guards_writes_and_optionally_reads(fresh_hash_index):
    c = ready_client(create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()}, api_key="s3cret"))
    add = {"documents": [{"id": "k1", "text": "keyed text"}]}
    try:
        assert_error(c.post("/indexes/docs/documents", json=add), 401, "API key")
        assert_error(c.post("/indexes/docs/documents", json=add, headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(c.request("DELETE", "/indexes/docs/documents", json={"ids": ["d1"]}), 401)
        assert c.post("/indexes/docs/documents", json=add, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/indexes/docs/search", json={"query": "keyed"}).status_code == 200  # reads stay open
    finally:
        c.__exit__(None, None, None)
    c = ready_client(create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()}, api_key="s3cret",
                                api_key_reads=True))
    try:
        assert_error(c.post("/indexes/docs/search", json={"query": "keyed"}), 401)
        assert_error(c.get("/indexes"), 401)
        ok = c.post("/indexes/docs/search", json={"query": "keyed"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_cors_is_off_unless_an_origin_is_given(hash_index):
    origin = {"Origin": "http://app.example"}
    plain = ready_client(create_app({"docs": hash_index}, embedders={"docs": HashEmbedder()}))
    try:
        assert "access-control-allow-origin" not in plain.get("/indexes", headers=origin).headers
    finally:
        plain.__exit__(None, None, None)
    c = ready_client(create_app({"docs": hash_index}, embedders={"docs": HashEmbedder()},
                                cors_origins=("http://app.example",)))
    try:
        assert c.get("/indexes", headers=origin).headers["access-control-allow-origin"] == "http://app.example"
        other = c.get("/indexes", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        c.__exit__(None, None, None)


def test_a_loopback_server_answers_only_to_loopback_host_names(fresh_hash_index):
    app = create_app({"docs": fresh_hash_index}, embedders={"docs": HashEmbedder()},
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
            assert_error(answer, 400, "unknown Host")
        assert c.get("/indexes/docs").json()["documents"] == 40  # nothing was written


def test_serve_answers_loopback_names_and_those_allowed():
    from semsearch.cli.serve import _allowed_hosts

    assert _allowed_hosts("127.0.0.1", ()) == ("localhost", "127.0.0.1", "::1", "127.0.0.1")
    assert _allowed_hosts("127.0.0.1", ("search.example.org",))[-1] == "search.example.org"
    assert _allowed_hosts("127.0.0.1", ("*",)) is None and _allowed_hosts("0.0.0.0", ()) is None
