"""Helpers for the server's tests: a real uvicorn server in a background thread, for tests (and scripts) that
need a socket (a browser, a second process), run as ``semsearch serve`` runs it on a loopback port the OS picks;
and, for FastAPI's test client, the served documents, a client once the app is ready, the one-line JSON error
check, and polling for what a background refresh brings."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["running_server", "wait_ready", "serve_docs", "ready_client", "assert_error", "poll", "WORDS"]

WORDS = "cat dog river sea star moon bread oven chess piano volcano lava train road snow rain".split()


@contextmanager
def running_server(app, *, ready_timeout: float = 60.0) -> Iterator[str]:
    """Serve ``app`` on ``127.0.0.1`` (a free port) in a thread; yields its base URL once ``GET /health``
    answers 200, and stops it (lifespan shutdown included) on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, as serve
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_ready(base, ready_timeout, alive=thread.is_alive)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_ready(base: str, timeout: float = 60.0, *, alive=lambda: True) -> dict:
    """Poll ``GET /health`` until it answers 200 (returns its JSON); fail with the last answer after ``timeout``."""
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server at {base} stopped before it was ready ({last})")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')}"
            if exc.code == 503 and '"failed"' in last:
                raise RuntimeError(f"the server at {base} could not load: {last}") from None
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise RuntimeError(f"the server at {base} was not ready after {timeout:g} s ({last})")


def serve_docs(n: int = 40):
    """``n`` small documents with titles and metadata (year, lang), words drawn from :data:`WORDS`."""
    from semsearch import Document

    return [Document(f"d{i}", f"{WORDS[i % 16]} {WORDS[(i * 7) % 16]} {WORDS[(i * 3 + 1) % 16]} note {i}",
                     title=f"Doc {i}", metadata={"year": 2000 + i % 10, "lang": "en" if i % 2 else "de"})
            for i in range(n)]


def ready_client(app):
    """A started ``TestClient`` for ``app`` once ``GET /health`` answers 200 (close it with ``__exit__``)."""
    from fastapi.testclient import TestClient

    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    for _ in range(200):
        if client.get("/health").status_code == 200:
            return client
        time.sleep(0.02)
    raise AssertionError(f"server not ready: {client.get('/health').json()}")


def assert_error(response, status: int, *fragments: str) -> str:
    """Assert ``response`` is ``status`` with a one-line JSON ``error`` holding every fragment; return it."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    message = body["error"]
    assert isinstance(message, str) and "\n" not in message and message.strip() == message, body
    for fragment in fragments:
        assert fragment in message, message
    return message


def poll(send, done, tries: int = 300):
    """Call ``send()`` until ``done(answer)`` (every 20 ms, at most ``tries`` times); return the last answer."""
    for _ in range(tries):
        answer = send()
        if done(answer):
            return answer
        time.sleep(0.02)
    return answer
