"""A real uvicorn server in a background thread, for tests (and scripts) that need a socket: a browser, a
second process. The app runs as ``semsearch serve`` runs it, on a loopback port the OS picks."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["running_server", "wait_ready"]


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
