"""A real ``semsearch serve`` process on a free loopback port (the embedded MiniLM): search, add, delete,
SIGTERM with a write in flight, and SIGKILL while a client streams adds (no acknowledged document lost)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install -e '.[serve]'")
httpx = pytest.importorskip("httpx", reason="the server tests need httpx: pip install -e '.[dev]'")

from semsearch import Document, SearchEngine  # noqa: E402
from semsearch.index.layout import LOCK_FILE, writer_lock  # noqa: E402

TOPICS = ["cats purr and chase mice", "volcanoes erupt lava and ash", "bread is baked in a hot oven",
          "chess is a board game with kings", "the piano is played by pressing keys", "trains run on rails"]


class Server:
    """``semsearch serve`` in a child process; ``url`` once it has printed its port."""

    def __init__(self, *args: str):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "semsearch", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                if re.search(r"http://127\.0\.0\.1:\d+", line):
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60):
            self.proc.kill()
            raise AssertionError("server printed no address: " + "".join(self.lines))
        self.url = re.search(r"http://127\.0\.0\.1:\d+", "".join(self.lines)).group()
        self.client = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError("server exited: " + "".join(self.lines))
            time.sleep(0.1)
        raise AssertionError("server never became ready: " + "".join(self.lines))

    def search(self, query: str, **options) -> list[str]:
        response = self.client.post("/indexes/docs/search", json={"query": query, **options})
        assert response.status_code == 200, response.text
        return [h["id"] for h in response.json()["hits"]]

    def stop(self, sig=signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        finally:
            self.client.close()


@pytest.fixture()
def index_dir(tmp_path, minilm):
    path = tmp_path / "docs"
    docs = [Document(f"t{i}", text, title=text.split()[0]) for i, text in enumerate(TOPICS)]
    SearchEngine.build(docs, path, embedder=minilm, progress=False).close()
    return path


def test_serve_search_add_delete_and_sigterm_finishes_the_write_in_flight(index_dir):
    server = Server("--index", str(index_dir))
    try:
        assert server.search("which animal purrs?", mode="dense", k=1) == ["t0"]
        info = server.client.get("/indexes/docs").json()
        assert info["documents"] == 6 and info["model"]
        added = server.client.post("/indexes/docs/documents", json={"documents": [
            {"id": "whale", "text": "The blue whale is the largest animal in the ocean."}]})
        assert added.status_code == 200 and added.json()["added"] == 1
        assert server.search("biggest creature in the sea", mode="dense", k=1) == ["whale"]
        gone = server.client.request("DELETE", "/indexes/docs/documents", json={"ids": ["t5"]})
        assert gone.json()["deleted"] == 1 and "t5" not in server.search("railway trains", k=6)

        # a large add in flight when SIGTERM arrives: it is finished and acknowledged, then the server exits 0
        batch = [{"id": f"late{i}", "text": f"late document {i} about {TOPICS[i % 6]} " * 8} for i in range(400)]
        result = {}
        writer = threading.Thread(target=lambda: result.setdefault(
            "r", server.client.post("/indexes/docs/documents", json={"documents": batch})))
        writer.start()
        deadline = time.monotonic() + 30
        while not _locked(index_dir):  # the server holds the writer lock: the add is under way
            assert writer.is_alive() and time.monotonic() < deadline, "the add finished before SIGTERM"
            time.sleep(0.005)
        code = server.stop(signal.SIGTERM)
        writer.join(60)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert code == 0, "".join(server.lines)
    assert result["r"].status_code == 200 and result["r"].json()["added"] == 400
    with writer_lock(index_dir):  # released: a writer can take it at once
        pass
    with SearchEngine.open(index_dir) as engine:
        assert len(engine) == 6 + 1 - 1 + 400


def _locked(index: Path) -> bool:
    """Whether a process holds the index's writer lock, read from /proc/locks (taking the lock to find out
    would make the server's own write fail with IndexLocked)."""
    lock = index.parent / LOCK_FILE.format(name=index.name)
    if not lock.exists():
        return False
    inode = f":{lock.stat().st_ino} "
    with open("/proc/locks", encoding="utf-8") as fh:
        return any("FLOCK" in line and inode in line for line in fh)


def test_sigkill_while_a_client_streams_adds_loses_no_acknowledged_document(index_dir):
    server = Server("--index", str(index_dir))
    acknowledged: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def stream():
        client = httpx.Client(base_url=server.url, timeout=30)
        n = 0
        while not stop.is_set():
            doc_id = f"s{n}"
            try:
                r = client.post("/indexes/docs/documents", json={"documents": [
                    {"id": doc_id, "text": f"streamed note {n} zq{n}x about {TOPICS[n % 6]}"}]})
            except httpx.TransportError:
                return  # the server died mid-request: that add was never acknowledged
            if r.status_code == 200:
                acknowledged.append(doc_id)
            else:
                errors.append(r.text)
            n += 1

    streamer = threading.Thread(target=stream)
    streamer.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    stop.set()
    streamer.join(30)
    assert len(acknowledged) >= 8 and not errors, errors

    again = Server("--index", str(index_dir))
    try:
        for doc_id in acknowledged:
            n = doc_id[1:]
            assert doc_id in again.search(f"zq{n}x", mode="lexical", k=3), doc_id
        assert again.client.get("/indexes/docs").json()["documents"] >= 6 + len(acknowledged)
    finally:
        assert again.stop() == 0


def test_serve_refuses_bad_setups(index_dir, tmp_path):
    def run(*args, env=None):
        return subprocess.run([sys.executable, "-m", "semsearch", "serve", *args], capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, **(env or {})))

    for args, fragment in [
        (("--index", str(index_dir), "--host", "0.0.0.0"), "without --api-key"),
        (("--index", str(tmp_path / "nothing")), "no semsearch index"),
        ((), "nothing to serve"),
        (("--index", str(index_dir), "--index", f"docs={index_dir}"), "given twice"),
        (("--index", str(index_dir), "--api-key-reads"), "needs --api-key"),
        (("--labeler", "nameonly"), "NAME=PATH"),
        (("--index", str(index_dir), "--batch-wait-ms", "500"), "between 0 and 100 ms"),
        (("--index", str(index_dir), "--max-batch", "0"), "max batch must be at least 1"),
        (("--labeler", f"x={tmp_path / 'missing'}"), "no file or folder at"),
        (("--labeler", f"x={tmp_path}"), "not a saved SetFit labeller"),
    ]:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("semsearch: error:") and fragment in lines[0], proc.stderr
    taken = __import__("socket").socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        proc = run("--index", str(index_dir), "--port", str(taken.getsockname()[1]))
        assert proc.returncode == 2 and "cannot listen" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        taken.close()
    assert Path(index_dir, "manifest.json").is_file()


def test_accepted_connections_have_tcp_nodelay():
    """The listening socket says it is TCP, so asyncio sets TCP_NODELAY on every connection it accepts
    (without it a keep-alive client waited ~40 ms for each answer: Nagle against delayed ACK)."""
    import asyncio
    import socket

    from semsearch.cli.serve import _bind

    sock = _bind("127.0.0.1", 0)
    seen = []

    async def main():
        async def handle(reader, writer):
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(main())
    assert seen and seen[0] != 0
