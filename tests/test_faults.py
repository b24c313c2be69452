"""Fault tests: a writer really killed with SIGKILL at random moments, and readers running beside a writer."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import HashEmbedder

from semsearch import Document, SearchEngine, read_corpus
from semsearch.errors import IndexNotFound
from semsearch.index.passages import Span, document_ids, passage_text

TESTS = Path(__file__).resolve().parent
WRITER = """
import sys
sys.path.insert(0, {tests!r})
from fakes import HashEmbedder
from semsearch import Document, SearchEngine, read_corpus
from semsearch.errors import IndexNotFound
engine = SearchEngine.open({index!r}, embedder=HashEmbedder())
engine.add(read_corpus({corpus!r}), progress=False, commit_every={every},
           on_commit=lambda ids: print("ACK", *ids, flush=True))
print("DONE", flush=True)
"""
WORDS = "red green blue cyan magenta yellow black white grey pink brown olive navy teal".split()


def _corpus(path: Path, n: int, version: int, seed: int) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    texts = {f"doc{i}": f"v{version} " + " ".join(rng.choice(WORDS, 8)) for i in range(n)}
    path.write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in texts.items()), encoding="utf-8")
    return texts


def _writer(index: Path, corpus: Path, every: int) -> subprocess.Popen:
    script = WRITER.format(tests=str(TESTS), index=str(index), corpus=str(corpus), every=every)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(TESTS.parent)})


def _assert_consistent(index: Path, acknowledged: dict[str, str], later: dict[str, str] | None = None
                       ) -> SearchEngine:
    """Every acknowledged document is there, as acknowledged or as a later version the writer was given
    (a batch can be committed and the writer killed before it printed the acknowledgement)."""
    engine = SearchEngine.open(index, embedder=HashEmbedder())  # opens: never unreadable
    faiss_ids = engine.index.ids()
    assert len(faiss_ids) == len(set(faiss_ids.tolist())) == len(engine.store)  # no duplicates, nothing missing
    found = engine.store.lookup(list(acknowledged))
    later = later or {}
    for doc_id, text in acknowledged.items():
        assert doc_id in found and found[doc_id][2] in (text, later.get(doc_id)), doc_id
    in_index = set(document_ids(faiss_ids, engine.store.id_bits).tolist())
    assert {row[0] for row in found.values()} <= in_index  # and searchable by its vector
    return engine


def _passages_match_documents(engine: SearchEngine) -> None:
    """Every document is wholly one version: its passages (ids in the vector index, offsets, vectors) are
    those of its current text, and the vector index holds exactly the stored passages."""
    embedder, expected_ids = HashEmbedder(), []
    docs = {d.id: d for d in engine.store.iter_documents()}
    found = engine.store.lookup(list(docs))
    rows = engine.store.passages([r[0] for r in found.values()], with_vectors=True)
    splitter = engine.splitter
    for doc_id, doc in docs.items():
        stored = rows[found[doc_id][0]]
        assert [(r[1], r[2]) for r in stored] == [(s.start, s.end) for s in splitter.split(doc)], doc_id
        texts = [passage_text(doc.title, doc.text, Span(r[1], r[2])) for r in stored]
        assert np.allclose(np.stack([r[4] for r in stored]), embedder.encode(texts), atol=1e-6), doc_id
        expected_ids += [r[0] for r in stored]
    assert sorted(engine.index.ids().tolist()) == sorted(expected_ids)


def test_sigkill_at_random_moments_loses_no_acknowledged_document(tmp_path):
    rng = random.Random(20261121)
    trials, n = 20, 120
    durations = []
    for trial in range(trials):
        index = tmp_path / f"idx{trial}"
        first = _corpus(tmp_path / "first.jsonl", n // 2, 0, trial)
        SearchEngine.build(read_corpus(tmp_path / "first.jsonl"), index, embedder=HashEmbedder(), progress=False)
        texts = _corpus(tmp_path / f"c{trial}.jsonl", n, 1, trial)  # updates the first half, adds a second
        acknowledged = dict(first)
        every = rng.choice([3, 7, 16])
        proc = _writer(index, tmp_path / f"c{trial}.jsonl", every=every)
        # Kill after a random number of acknowledged batches (0: during start-up), a random moment later:
        # between commits, inside one, or while the derived files are written after the last.
        target = rng.randint(0, -(-n // every))
        if target == 0:
            time.sleep(rng.uniform(0.0, 1.0))
        for _ in range(target):
            line = proc.stdout.readline()
            if line.startswith("ACK "):
                acknowledged.update({i: texts[i] for i in line.split()[1:]})
        time.sleep(rng.uniform(0.0, 0.02))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in out.splitlines():
            if line.startswith("ACK "):
                acknowledged.update({i: texts[i] for i in line.split()[1:]})
        durations.append(len(acknowledged))
        _assert_consistent(index, acknowledged, later=texts)
        # the same command again resumes and finishes without duplicates
        rerun = _writer(index, tmp_path / f"c{trial}.jsonl", every=16)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0 and "DONE" in out, err
        engine = _assert_consistent(index, texts)
        assert len(engine) == n
    assert len(set(durations)) > 3  # the kills landed at different points of the write


def test_readers_see_the_old_or_the_new_state_while_a_writer_runs(tmp_path):
    index = tmp_path / "idx"
    _corpus(tmp_path / "base.jsonl", 40, 0, 1)
    SearchEngine.build(read_corpus(tmp_path / "base.jsonl"), index, embedder=HashEmbedder(), progress=False)
    more = {f"new{i}": f"extra {w} words" for i, w in enumerate(WORDS * 10)}
    (tmp_path / "more.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in more.items()))
    proc = _writer(index, tmp_path / "more.jsonl", every=5)
    sizes, opened = [], 0
    while proc.poll() is None or opened == 0:
        engine = SearchEngine.open(index, embedder=HashEmbedder())
        opened += 1
        size = len(engine)
        # one state: the vector index, the BM25 side and the store's rows as of the open all agree
        with engine.store.snapshot():
            rows = {int(r[0]) for r in engine.store._conn.execute("SELECT int_id FROM passages")}
        assert set(engine.index.ids().tolist()) <= rows and len(engine.index.ids()) == size
        docs_in_index = set(document_ids(engine.index.ids(), engine.store.id_bits).tolist())
        assert set(engine.lexical.ids.tolist()) == docs_in_index
        sizes.append(size)
        for mode in ("dense", "lexical", "hybrid"):
            hits = engine.search("extra red words", k=10, mode=mode)
            assert len({h.id for h in hits}) == len(hits) == min(10, size) or mode == "lexical"
        engine.close()
    assert proc.wait() == 0, proc.stderr.read()
    assert sizes == sorted(sizes) and sizes[-1] <= 40 + len(more)
    assert len(SearchEngine.open(index, embedder=HashEmbedder())) == 40 + len(more)
    assert opened >= 2


BUILDER = """
import sys, time
sys.path.insert(0, {tests!r})
import semsearch.index.build
from fakes import HashEmbedder
from semsearch import Document, SearchEngine, read_corpus
from semsearch.errors import IndexNotFound
semsearch.index.build._CHUNK = 16  # commit often, so a kill lands between commits


class Slow(HashEmbedder):
    def embed_batch(self, texts):
        time.sleep(0.05)
        return super().embed_batch(texts)


SearchEngine.build(read_corpus({corpus!r}), {index!r}, embedder=Slow(), batch_size=8, progress=False,
                   overwrite=True)
print("DONE", flush=True)
"""


def _stored(folder: Path) -> int:
    """Documents committed so far by the build running in ``folder``'s temporary index folder."""
    import sqlite3

    for db in folder.glob(".idx.tmp-*/docs.sqlite"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])
        except sqlite3.Error:
            return 0
    return 0


def test_a_killed_build_leaves_the_old_index_and_a_rerun_reuses_its_vectors(tmp_path):
    index = tmp_path / "idx"
    _corpus(tmp_path / "old.jsonl", 10, 0, 0)
    SearchEngine.build(read_corpus(tmp_path / "old.jsonl"), index, embedder=HashEmbedder(), progress=False)
    texts = _corpus(tmp_path / "new.jsonl", 400, 1, 0)
    script = BUILDER.format(tests=str(TESTS), corpus=str(tmp_path / "new.jsonl"), index=str(index))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    deadline = time.time() + 120
    while time.time() < deadline and _stored(tmp_path) < 32:  # kill once two commits of 16 are in (of 25)
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert len(SearchEngine.open(index, embedder=HashEmbedder())) == 10  # as before
    embedder = HashEmbedder()
    engine = SearchEngine.build(read_corpus(tmp_path / "new.jsonl"), index, embedder=embedder, overwrite=True,
                                progress=False)
    assert len(engine) == 400 and {d.id: d.text for d in engine.store.iter_documents()} == texts
    assert 0 < sum(embedder.calls) < 400  # the killed build's vectors were reused
    assert not list(tmp_path.glob(".idx.tmp-*"))  # and its folder is gone


HOOKED = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from fakes import HashEmbedder
from semsearch import Document, SearchEngine
from semsearch.index import update
from semsearch.index.manifest import Manifest


def die():
    os.kill(os.getpid(), signal.SIGKILL)


point = {point!r}
if point == "after_commit":  # the store has the change, no derived file does
    update._sync = lambda *a, **k: die()
elif point == "after_vectors":  # vectors.faiss replaced, BM25 and manifest not
    original = update._write_vectors
    update._write_vectors = lambda *a, **k: (original(*a, **k), die())
elif point == "mid_lexical_swap":  # the old BM25 folder moved aside, the new one not yet in place
    def swap(write, target):
        tmp = target.with_name(".lexical.x.tmp")
        write(tmp)
        target.rename(target.with_name(".lexical.x.old"))
        die()
    update._swap_folder = swap
elif point == "before_manifest":  # every derived file written, the manifest not
    Manifest.save = lambda self, folder: die()
engine = SearchEngine.open({index!r}, embedder=HashEmbedder())
op = {op!r}
if op == "add":
    engine.add([Document("new", {new!r}), Document("d0", {changed!r})], progress=False)
elif op == "delete":
    engine.delete(["d1", "d2"])
else:
    engine.compact()
"""


def _long_text(seed: int, paragraphs: int = 6) -> str:
    rng = np.random.default_rng(seed)
    return "\n\n".join(" ".join(rng.choice(WORDS, 12)) + "." for _ in range(paragraphs))


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF4,Flat"])
@pytest.mark.parametrize("op", ["add", "delete", "compact"])
@pytest.mark.parametrize("long", [False, True], ids=["short", "many-passages"])
def test_a_writer_killed_at_each_step_of_a_write(tmp_path, factory, op, long):
    """SIGKILL at each named point of a write (not at random): the index opens, shows exactly the committed
    state (the change is in the store before any derived file is touched), and takes the next write. With
    documents of many passages, each document is wholly old or wholly new: all its passages, or none."""
    import shutil

    pristine = tmp_path / "pristine"
    if long:  # passages of at most 16 words: every document has 6 or more
        docs = {f"d{i}": _long_text(i) for i in range(24)}
        new, changed = _long_text(100, 7), _long_text(101, 8)
    else:
        docs = {f"d{i}": f"v0 {' '.join(WORDS[(i + j) % len(WORDS)] for j in range(5))}" for i in range(24)}
        new, changed = "red green new words", "changed text for d0"
    SearchEngine.build([Document(k, v) for k, v in docs.items()], pristine, embedder=HashEmbedder(),
                       factory=factory, progress=False, passage_tokens=16, passage_overlap=0)
    if long:
        assert SearchEngine.open(pristine, embedder=HashEmbedder()).index.ntotal >= 6 * len(docs)
    expected = dict(docs)
    if op == "add":
        expected.update({"new": new, "d0": changed})
    elif op == "delete":
        del expected["d1"], expected["d2"]
    for point in ("after_commit", "after_vectors", "mid_lexical_swap", "before_manifest"):
        index = tmp_path / point
        shutil.copytree(pristine, index)
        script = HOOKED.format(tests=str(TESTS), point=point, index=str(index), op=op, new=new, changed=changed)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(TESTS.parent)}, timeout=120)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        engine = SearchEngine.open(index, embedder=HashEmbedder())
        assert {d.id: d.text for d in engine.store.iter_documents()} == expected, point
        _passages_match_documents(engine)
        for mode in ("dense", "lexical", "hybrid"):
            assert {h.id for h in engine.search("red green words", k=30, mode=mode)} <= set(expected), (point, mode)
        engine.add([Document("last", "one more")], progress=False)  # the next write goes through
        assert len(SearchEngine.open(index, embedder=HashEmbedder())) == len(expected) + 1
        assert not [p.name for p in index.iterdir() if p.name.startswith(".")]  # the killed one's leftovers gone
        engine.close()


def test_an_overwrite_killed_between_its_renames_points_to_the_previous_index(tmp_path):
    index = tmp_path / "idx"
    SearchEngine.build([Document("a", "words")], index, embedder=HashEmbedder(), progress=False)
    index.rename(tmp_path / ".idx.old-1234abcd")  # what atomic_folder's first rename leaves if killed right after
    with pytest.raises(IndexNotFound, match=r"interrupted and left the previous index at .*\.idx\.old-1234abcd "
                                            r"\(rename it back to idx\)"):
        SearchEngine.open(index, embedder=HashEmbedder())


def test_a_new_folder_is_flushed_to_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    from semsearch import files

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    events = []
    real_fsync, real_rename = os.fsync, Path.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(self, target):
        events.append(("rename", str(target)))
        return real_rename(self, target)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(Path, "rename", rename)
    with files.atomic_folder(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "vectors.bin").write_bytes(b"\0" * 10)
        (tmp / "manifest.json").write_text("{}")
    first_rename = next(i for i, e in enumerate(events) if e[0] == "rename")
    flushed = {Path(path).name for kind, path in events[:first_rename] if kind == "fsync"}
    assert {"vectors.bin", "manifest.json", "sub"} <= flushed
    assert events[-1] == ("fsync", str(tmp_path))  # the renames themselves, before the old folder is deleted
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "sub"]


def test_a_file_written_whole_keeps_its_mode_and_a_new_one_gets_the_umask(tmp_path):
    from semsearch.files import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644
        (tmp_path / "shared.json").write_text("old")
        os.chmod(tmp_path / "shared.json", 0o664)
        atomic_write_text(tmp_path / "shared.json", "new")
        assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o664
        assert (tmp_path / "shared.json").read_text() == "new"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "shared.json"]
    finally:
        os.umask(old)
