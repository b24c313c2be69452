"""Index lifecycle: add (upsert), delete, compact on Flat / HNSW / IVF, the embedding cache, the writer lock,
and recovery from a write that stopped between the store and the derived files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fakes import HashEmbedder

from semsearch import Document, SearchEngine
from semsearch.errors import BadInput, IndexLocked
from semsearch.index.layout import writer_lock

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega apple pear plum fig kiwi lime").split()


def _docs(n: int, start: int = 0, salt: str = "") -> list[Document]:
    rng = np.random.default_rng(start + 1000 * len(salt))
    return [Document(f"d{i}", " ".join(rng.choice(WORDS, 6)) + f" {salt}", title=f"T{i}", metadata={"n": i})
            for i in range(start, start + n)]


def _brute_force(engine: SearchEngine, docs: dict[str, Document], query: str, k: int) -> list[str]:
    """Exact top k over the documents that should be there, embedded afresh."""
    ids = sorted(docs)
    vectors = engine.embedder.encode([docs[i].embedding_text for i in ids])
    q = engine.embedder.encode([query])[0]
    order = np.argsort(-(vectors @ q), kind="stable")
    return [ids[i] for i in order[:k]]


def _check(engine: SearchEngine, expected: dict[str, Document]) -> None:
    assert len(engine) == len(expected) == engine.manifest.documents == len(engine.store)
    for query in ("alpha beta", "plum fig kiwi", "sigma tau omega"):
        for mode in ("dense", "hybrid", "lexical"):
            hits = engine.search(query, k=len(expected) + 5, mode=mode)
            assert {h.id for h in hits} <= set(expected), mode  # deleted documents never come back
            for h in hits:
                assert h.text == expected[h.id].text and h.metadata == expected[h.id].metadata
        if engine.manifest.factory == "Flat":  # exact: the same scores as brute force on what should be there
            got = [h.id for h in engine.search(query, k=5, mode="dense")]
            want = _brute_force(engine, expected, query, 5)
            scores = {h.id: h.score for h in engine.search(query, k=len(expected), mode="dense")}
            assert [round(scores[i], 5) for i in got] == [round(scores[i], 5) for i in want]


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF4,Flat", "PCA16,HNSW8"])
def test_add_update_delete_compact(tmp_path, factory):
    path = tmp_path / "idx"
    docs = {d.id: d for d in _docs(60)}
    engine = SearchEngine.build(list(docs.values()), path, embedder=HashEmbedder(), factory=factory, progress=False)
    _check(engine, docs)

    new = _docs(10, start=60)
    changed = [Document("d3", "completely different words omega psi", title="T3"), Document("d4", docs["d4"].text,
               title="T4", metadata={"n": 4, "tag": "x"})]
    report = engine.add(new + changed + [docs["d5"]], progress=False)
    assert (report.added, report.updated, report.unchanged) == (10, 2, 1)
    assert report.embedded == 11  # d4 changed only its metadata: its vector comes from the cache
    docs.update({d.id: d for d in new + changed})
    _check(engine, docs)
    _check(SearchEngine.open(path, embedder=HashEmbedder()), docs)  # and on disk

    engine.delete(["d0", "d3", "d65"])
    for gone in ("d0", "d3", "d65"):
        del docs[gone]
    _check(engine, docs)
    reopened = SearchEngine.open(path, embedder=HashEmbedder())
    _check(reopened, docs)
    assert reopened.manifest.factory == factory

    report = reopened.compact()
    assert report.vectors_dropped >= 3  # the deleted and replaced texts' vectors
    _check(SearchEngine.open(path, embedder=HashEmbedder()), docs)


def test_re_adding_unchanged_text_costs_no_model_call(tmp_path):
    path = tmp_path / "idx"
    docs = _docs(20)
    SearchEngine.build(docs, path, embedder=HashEmbedder(), progress=False)
    embedder = HashEmbedder()
    engine = SearchEngine.open(path, embedder=embedder)
    report = engine.add(docs, progress=False)
    assert (report.unchanged, report.embedded, embedder.calls) == (20, 0, [])
    # new ids with texts already stored: the cache answers, the model is not called either
    renamed = [Document(f"copy-{d.id}", d.text, title=d.title) for d in docs[:5]]
    report = engine.add(renamed, progress=False)
    assert (report.added, report.embedded, report.from_cache, embedder.calls) == (5, 0, 5, [])
    # a different embedder (another salt) has other keys: nothing is taken from the first one's cache
    assert HashEmbedder(salt="x").cache_keys(["a"]) != embedder.cache_keys(["a"])


def test_bad_changes_are_refused_and_nothing_is_lost(tmp_path):
    path = tmp_path / "idx"
    docs = _docs(10)
    engine = SearchEngine.build(docs, path, embedder=HashEmbedder(), progress=False)
    with pytest.raises(BadInput, match="no document with id 'nope'.*nothing was deleted"):
        engine.delete(["d1", "nope"])
    with pytest.raises(BadInput, match="'d1' appears twice"):
        engine.add([Document("d1", "x y"), Document("d1", "z")], progress=False)
    with pytest.raises(BadInput, match="no document ids"):
        engine.delete([])
    engine = SearchEngine.open(path, embedder=HashEmbedder())
    assert len(engine) == 10 and engine.store.lookup(["d1"])["d1"][2] == docs[1].text


def test_relative_and_absolute_paths_take_the_same_lock(tmp_path, monkeypatch):
    path = tmp_path / "idx"
    SearchEngine.build(_docs(3), path, embedder=HashEmbedder(), progress=False)
    monkeypatch.chdir(path)
    with writer_lock(type(path)(".")):
        with pytest.raises(IndexLocked):
            with writer_lock(path):
                pass


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "idx"
    engine = SearchEngine.build(_docs(5), path, embedder=HashEmbedder(), progress=False)
    with writer_lock(path):  # as if another process were writing
        with pytest.raises(IndexLocked, match=f"being written by another process \\(pid {os.getpid()}\\)"):
            engine.add(_docs(2, start=5), progress=False)
        assert engine.search("alpha", k=3)  # readers keep working
    engine.add(_docs(2, start=5), progress=False)  # released
    assert len(engine) == 7


def test_a_write_interrupted_before_the_derived_files_is_recovered_by_readers(tmp_path, monkeypatch):
    from semsearch.index import update

    path = tmp_path / "idx"
    docs = {d.id: d for d in _docs(30)}
    SearchEngine.build(list(docs.values()), path, embedder=HashEmbedder(), progress=False)
    engine = SearchEngine.open(path, embedder=HashEmbedder())

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # stands in for kill -9 after the store committed, before any derived file

    monkeypatch.setattr(update, "_sync", die)
    with pytest.raises(KeyboardInterrupt):
        engine.add(_docs(5, start=30), progress=False)
    with pytest.raises(KeyboardInterrupt):
        engine.delete(["d1", "d2"])
    monkeypatch.undo()
    docs.update({d.id: d for d in _docs(5, start=30)})
    del docs["d1"], docs["d2"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["documents"] == 30  # the files still describe the old state
    reader = SearchEngine.open(path, embedder=HashEmbedder())  # the store is ahead: caught up in memory
    _check(reader, docs)
    SearchEngine.open(path, embedder=HashEmbedder()).add([], progress=False)  # the next write persists it
    assert json.loads((path / "manifest.json").read_text())["documents"] == 33
    _check(SearchEngine.open(path, embedder=HashEmbedder()), docs)


def test_a_lost_lexical_folder_is_rebuilt_when_the_store_is_ahead(tmp_path, monkeypatch):
    import shutil

    from semsearch.index import update

    path = tmp_path / "idx"
    docs = {d.id: d for d in _docs(12)}
    engine = SearchEngine.build(list(docs.values()), path, embedder=HashEmbedder(), progress=False)
    monkeypatch.setattr(update, "_sync", lambda *a, **k: shutil.rmtree(path / "lexical"))  # died mid-swap
    engine.add(_docs(3, start=12), progress=False)
    monkeypatch.undo()
    docs.update({d.id: d for d in _docs(3, start=12)})
    _check(SearchEngine.open(path, embedder=HashEmbedder()), docs)


def test_indexes_without_stored_vectors_are_refused_clearly(tmp_path):
    import sqlite3

    path = tmp_path / "idx"
    engine = SearchEngine.build(_docs(4), path, embedder=HashEmbedder(), progress=False)
    engine.close()
    with sqlite3.connect(path / "docs.sqlite") as conn:  # what an index from before stored vectors looks like
        conn.execute("UPDATE docs SET vector_key = NULL")
        conn.execute("UPDATE passages SET vector_key = NULL")
    with pytest.raises(BadInput, match="older semsearch and stores no vectors; rebuild it"):
        SearchEngine.open(path, embedder=HashEmbedder()).add(_docs(1, start=4), progress=False)


# --- the CLI ------------------------------------------------------------------------------------


def _cli(*args):
    from click.testing import CliRunner

    from semsearch.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def _error(result, pattern):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and pattern in lines[0] and "Traceback" not in result.output, result.stderr


def test_cli_add_delete_compact(tiny_bert, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"the cat sat {w}"}) + "\n"
                              for i, w in enumerate(["on the mat", "at the moon", "in tall trees"])))
    assert _cli("index", corpus, "--index", tmp_path / "idx", "--model", tiny_bert, "--precision", "fp32",
                "-q").exit_code == 0
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"_id": "d1", "text": "a dog barked"}) + "\n"
                    + json.dumps({"_id": "d9", "text": "birds sang"}) + "\n")
    result = _cli("add", more, "--index", tmp_path / "idx", "-q")
    assert result.exit_code == 0, result.output
    assert "1 added, 1 updated, 0 unchanged; 2 passages embedded, 0 from the cache; 4 documents in all" in result.stdout
    again = _cli("add", more, "--index", tmp_path / "idx", "-q")
    assert "0 added, 0 updated, 2 unchanged; 0 passages embedded" in again.stdout
    ids = tmp_path / "ids.txt"
    ids.write_text("d0\n\nd9\n")
    result = _cli("delete", "d2", "--ids-file", ids, "--index", tmp_path / "idx")
    assert result.exit_code == 0 and "3 deleted; 1 documents left" in result.stdout, result.output
    hits = _cli("query", "cat", "--index", tmp_path / "idx", "--json", "-k", "5")
    assert [json.loads(line)["id"] for line in hits.stdout.splitlines()] == ["d1"]
    result = _cli("compact", "--index", tmp_path / "idx")
    assert result.exit_code == 0 and "unused vectors dropped" in result.stdout, result.output

    _error(_cli("delete", "nope", "--index", tmp_path / "idx"), "no document with id 'nope'")
    _error(_cli("delete", "--index", tmp_path / "idx"), "give ids to delete")
    _error(_cli("add", tmp_path / "missing.jsonl", "--index", tmp_path / "idx"), "does not exist")
    _error(_cli("add", more, "--index", tmp_path / "nowhere"), "no index at")
    with writer_lock(tmp_path / "idx"):
        _error(_cli("add", more, "--index", tmp_path / "idx"), "being written by another process")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_index_folder(tmp_path):
    path = tmp_path / "idx"
    engine = SearchEngine.build(_docs(3), path, embedder=HashEmbedder(), progress=False)
    path.chmod(0o555)
    try:
        with pytest.raises(BadInput, match="read-only"):
            engine.add(_docs(1, start=3), progress=False)
        assert len(SearchEngine.open(path, embedder=HashEmbedder())) == 3  # still readable
    finally:
        path.chmod(0o755)


def test_unwritable_index_folder_is_a_clear_error(tmp_path, monkeypatch):
    """The same refusal without relying on file permissions (tests may run as root, which ignores them)."""
    from semsearch.index import update

    path = tmp_path / "idx"
    engine = SearchEngine.build(_docs(3), path, embedder=HashEmbedder(), progress=False)

    def read_only_open(file, flags, *args):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(update.os, "open", read_only_open)
    with pytest.raises(BadInput, match=f"index folder {path} is read-only"):
        engine.add(_docs(1, start=3), progress=False)
    monkeypatch.undo()
    assert len(SearchEngine.open(path, embedder=HashEmbedder())) == 3


def test_a_lost_lexical_folder_at_the_same_generation_is_rebuilt(tmp_path):
    """A compact killed between the two renames of the BM25 swap leaves no lexical/ while the manifest and
    the store agree; the index must still open (and accept writes)."""
    import shutil

    path = tmp_path / "idx"
    docs = {d.id: d for d in _docs(12)}
    SearchEngine.build(list(docs.values()), path, embedder=HashEmbedder(), progress=False)
    shutil.rmtree(path / "lexical")
    engine = SearchEngine.open(path, embedder=HashEmbedder())
    _check(engine, docs)
    engine.add(_docs(2, start=12), progress=False)
    assert (path / "lexical" / "lexical.json").is_file()


def test_deleting_every_document_is_refused(tmp_path):
    engine = SearchEngine.build(_docs(3), tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    with pytest.raises(BadInput, match="would leave an empty index"):
        engine.delete(["d0", "d1", "d2"])
    assert len(SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())) == 3


@pytest.mark.parametrize("factory", ["HNSW16", "IVF4,Flat", "Flat"])
def test_a_stale_reader_filters_without_deleted_or_unknown_documents(tmp_path, factory):
    path = tmp_path / "idx"
    docs = _docs(40)
    SearchEngine.build(docs, path, embedder=HashEmbedder(), factory=factory, progress=False)
    reader = SearchEngine.open(path, embedder=HashEmbedder())
    writer = SearchEngine.open(path, embedder=HashEmbedder())
    writer.delete(["d1", "d2", "d3"])
    writer.add(_docs(5, start=40), progress=False)  # ids the reader's vector index does not have
    for mode in ("dense", "hybrid", "lexical"):
        hits = reader.search("alpha beta gamma", k=10, mode=mode, filters=["n>=0"])
        assert hits and not {h.id for h in hits} & {"d1", "d2", "d3"}


def test_int_ids_are_never_reused_even_after_compact(tmp_path):
    engine = SearchEngine.build(_docs(5), tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    engine.delete(["d4"])
    engine.compact()
    engine.add(_docs(1, start=5), progress=False)
    assert engine.store.lookup(["d5"])["d5"][0] == 5  # not 4, which the deleted d4 had
