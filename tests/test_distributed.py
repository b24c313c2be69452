"""The Ray engine (semsearch.scale.build): same vectors and results as a local build, merged IVF shards,
on-disk inverted lists, a crashed worker retried by Ray, and bad input.

Ray runs as a local 2-CPU cluster started once per test session (the ``ray_cluster`` fixture in
conftest.py); tests that need it skip, with the reason, where ray is not installed (pip install
'semsearch[ray]').
"""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest
from conftest import WORDS, one_line_error
from fakes import HashEmbedder

from semsearch import Document, SearchEngine, TransformerEmbedder, read_corpus
from semsearch.errors import BadInput
from semsearch.index.passages import document_ids
from semsearch.scale.build import build_with_ray
from semsearch.scale.shards import shard_slices


def _records(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"_id": f"d{i}", "title": str(rng.choice(WORDS)),
             "text": " ".join(rng.choice(WORDS, size=rng.integers(3, 40))), "year": int(rng.integers(1990, 2030))}
            for i in range(n)]


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _queries(n: int = 25) -> list[str]:
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(WORDS, size=4)) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_embedder(tiny_bert):
    return TransformerEmbedder(str(tiny_bert), precision="fp32", backend="torch")


def _docs(engine: SearchEngine) -> dict[str, Document]:
    return {d.id: d for d in engine.store.iter_documents()}


def _vectors_by_id(engine: SearchEngine) -> dict[str, np.ndarray]:
    ids, vectors = engine.store.all_vectors()  # passage ids: one passage per document in these corpora
    names = engine.store.string_ids(document_ids(ids, engine.store.id_bits))
    assert None not in names and len(set(names)) == len(names)
    return dict(zip(names, vectors))


def test_ray_build_gives_the_local_build_s_vectors_documents_and_top10(ray_cluster, tiny_embedder, tmp_path):
    corpus = _jsonl(tmp_path / "corpus.jsonl", _records(300))
    local = SearchEngine.build(read_corpus(corpus), tmp_path / "local", embedder=tiny_embedder, factory="Flat",
                               progress=False)
    # Smaller batches than the local build's (1,024 records, 32 texts) so that padding differs too.
    dist = build_with_ray(corpus, tmp_path / "ray", embedder=tiny_embedder, factory="Flat", shards=3,
                          rows_per_batch=50, batch_size=8, progress=False)
    assert dist.manifest.build["engine"] == "ray" and dist.manifest.build["shards"] == 3
    assert dist.manifest.documents == 300 and dist.manifest.embedder == local.manifest.embedder
    assert _docs(dist) == _docs(local)  # ids, titles, texts and metadata
    a, b = _vectors_by_id(local), _vectors_by_id(dist)
    assert a.keys() == b.keys()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-5
    reopened = SearchEngine.open(tmp_path / "ray")
    for query in _queries():
        for mode in ("dense", "lexical", "hybrid"):
            expected = [h.id for h in local.search(query, k=10, mode=mode)]
            assert [h.id for h in reopened.search(query, k=10, mode=mode)] == expected, (query, mode)


def _passages(engine: SearchEngine) -> dict[tuple[str, int], tuple]:
    """``{(document id, passage id): (start, end, vector)}`` of every passage."""
    found = engine.store.lookup([d.id for d in engine.store.iter_documents()])
    rows = engine.store.passages([r[0] for r in found.values()], with_vectors=True)
    return {(doc_id, r[0]): (r[1], r[2], r[4]) for doc_id, f in found.items() for r in rows[f[0]]}


def test_ray_build_makes_the_same_passages_with_the_same_ids(ray_cluster, tiny_embedder, tmp_path):
    rng = np.random.default_rng(5)
    records = [{"_id": f"d{i}", "title": str(rng.choice(WORDS)),
                "text": "\n\n".join(" ".join(rng.choice(WORDS, size=rng.integers(5, 30))) + "."
                                     for _ in range(rng.integers(1, 9)))} for i in range(120)]
    corpus = _jsonl(tmp_path / "corpus.jsonl", records)
    options = {"embedder": tiny_embedder, "factory": "Flat", "lexical_unit": "passage", "passage_tokens": 48,
               "passage_overlap": 8}
    local = SearchEngine.build(read_corpus(corpus), tmp_path / "local", progress=False, **options)
    dist = build_with_ray(corpus, tmp_path / "ray", rows_per_batch=25, batch_size=8, progress=False, **options)
    assert local.index.ntotal > 2 * len(records)  # most documents have several passages
    assert dist.manifest.passages == local.manifest.passages and dist.manifest.vectors == local.index.ntotal
    a, b = _passages(local), _passages(dist)
    assert a.keys() == b.keys()  # the same passage ids for the same documents
    assert all(a[k][:2] == b[k][:2] and np.abs(a[k][2] - b[k][2]).max() <= 1e-5 for k in a)
    assert sorted(dist.index.ids().tolist()) == sorted(local.index.ids().tolist())
    assert np.array_equal(np.sort(dist.lexical.ids), np.sort(local.lexical.ids))
    for query in _queries(10):
        for mode in ("dense", "lexical", "hybrid"):
            expected = [(h.id, h.start) for h in local.search(query, k=10, mode=mode)]
            assert [(h.id, h.start) for h in dist.search(query, k=10, mode=mode)] == expected, (query, mode)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8", "IVF16,PQ8"])
def test_merged_ivf_shards_match_a_single_process_build(ray_cluster, factory, tmp_path):
    embedder = HashEmbedder(dim=32)
    records = _records(2500, seed=2)
    corpus = _jsonl(tmp_path / "corpus.jsonl", records)
    local = SearchEngine.build(read_corpus(corpus), tmp_path / "local", embedder=embedder, factory=factory,
                               lexical=False, progress=False)
    dist = build_with_ray(corpus, tmp_path / "ray", embedder=embedder, factory=factory, shards=4, lexical=False,
                          progress=False)
    assert dist.index.ntotal == 2500 and dist.manifest.build["shards"] == 4
    recalls = []
    for query in _queries(50):
        expected = {h.id for h in local.search(query, k=10)}
        recalls.append(len(expected & {h.id for h in dist.search(query, k=10)}) / len(expected))
    assert np.mean(recalls) >= 0.99, np.mean(recalls)


def test_on_disk_inverted_lists_search_like_the_in_memory_merge_and_refuse_changes(ray_cluster, tmp_path, capfd):
    embedder = HashEmbedder(dim=32)
    corpus = _jsonl(tmp_path / "corpus.jsonl", _records(1200, seed=3))
    memory = build_with_ray(corpus, tmp_path / "memory", embedder=embedder, factory="IVF8,Flat", shards=2,
                            lexical=False, progress=False)
    build_with_ray(corpus, tmp_path / "disk", embedder=embedder, factory="IVF8,Flat", shards=2, lexical=False,
                   on_disk=True, progress=False)
    assert (tmp_path / "disk" / "vectors.ivfdata").is_file()
    (tmp_path / "disk").rename(tmp_path / "moved")  # the lists are found beside the vector file
    capfd.readouterr()
    disk = SearchEngine.open(tmp_path / "moved", embedder=embedder)
    assert capfd.readouterr().out == ""  # FAISS's notice about the moved file does not reach stdout
    assert disk.index.on_disk and disk.manifest.format_version == 3 and disk.manifest.build["on_disk"]
    for query in _queries(20):
        assert [h.id for h in disk.search(query, k=10)] == [h.id for h in memory.search(query, k=10)]
    with pytest.raises(BadInput, match="on disk"):
        disk.add([Document("new", "a new cat")])
    with pytest.raises(BadInput, match="on disk"):
        disk.delete(["d1"])
    assert len(SearchEngine.open(tmp_path / "moved", embedder=embedder)) == 1200


class CrashOnce(HashEmbedder):
    """Kills the process it runs in on its first batch (once per marker file): a worker dying mid-job."""

    def __init__(self, marker: str):
        super().__init__(dim=32)
        self.marker = marker

    def embed_batch(self, texts):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().embed_batch(texts)


def test_a_worker_that_dies_is_restarted_and_its_batch_rerun_by_ray(ray_cluster, tmp_path):
    records = _records(400, seed=4)
    corpus = _jsonl(tmp_path / "corpus.jsonl", records)
    marker = tmp_path / "crashed"
    engine = build_with_ray(corpus, tmp_path / "ray", embedder=CrashOnce(str(marker)), factory="Flat",
                            rows_per_batch=100, lexical=False, progress=False)
    assert marker.exists()  # the first batch did kill its worker
    assert len(engine) == 400 and set(_docs(engine)) == {r["_id"] for r in records}  # nothing lost
    vectors = _vectors_by_id(engine)
    texts = {r["_id"]: f"{r['title']} {r['text']}" for r in records}
    expected = HashEmbedder(dim=32).encode([texts[i] for i in vectors])
    assert np.abs(np.stack(list(vectors.values())) - expected).max() <= 1e-6


def test_csv_and_parquet_corpora_read_as_the_local_reader_reads_them(ray_cluster, tmp_path):
    records = [{"id": "007", "text": "a cat sat, quoted \"here\"\nover two lines", "title": "", "note": "12"},
               {"id": "8", "text": "a dog barked", "title": "Dog", "note": ""}]
    with open(tmp_path / "corpus.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "title", "text", "note"])
        writer.writeheader()
        writer.writerows(records)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), tmp_path / "corpus.parquet")
    # U+2028 / U+0085 inside a JSON string are not line breaks in JSONL (str.splitlines would split there)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False).replace("sat", "sat\u2028\x85")
                                                   + "\n" for r in records), encoding="utf-8")
    embedder = HashEmbedder(dim=16)
    for name in ("corpus.csv", "corpus.parquet", "corpus.jsonl"):
        local = {d.id: d for d in read_corpus(tmp_path / name)}
        assert set(local) == {"007", "8"} and local["007"].metadata == {"note": "12"}
        engine = build_with_ray(tmp_path / name, tmp_path / name.replace(".", "-"), embedder=embedder,
                                progress=False)
        assert _docs(engine) == local


def _cli(*args):
    from click.testing import CliRunner

    from semsearch.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_index_with_ray_then_query(ray_cluster, tiny_bert, tmp_path):
    corpus = _jsonl(tmp_path / "corpus.jsonl", _records(200, seed=5))
    result = _cli("index", corpus, "--index", tmp_path / "idx", "--model", tiny_bert, "--engine", "ray",
                  "--shards", "2", "--factory", "IVF4,Flat", "--precision", "fp32", "-q")
    assert result.exit_code == 0, result.output
    assert "indexed 200 documents" in result.stdout
    result = _cli("query", "the cat sat", "--index", tmp_path / "idx", "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.stdout.splitlines()]  # one JSON object per hit, nothing else
    assert len(hits) == 3 and all(h["id"].startswith("d") for h in hits)


def test_cli_bad_input_for_the_ray_engine(ray_cluster, tiny_bert, tmp_path):
    corpus = _jsonl(tmp_path / "corpus.jsonl", _records(20))
    common = ["--index", tmp_path / "idx", "--model", tiny_bert, "-q"]
    one_line_error(_cli("index", corpus, *common, "--engine", "spark"), "unknown engine 'spark'")
    one_line_error(_cli("index", corpus, *common, "--shards", "2"), "--shards: only with --engine ray")
    one_line_error(_cli("index", corpus, *common, "--engine", "ray", "--shards", "0"), "shards must be a positive")
    one_line_error(_cli("index", corpus, *common, "--engine", "ray", "--actors", "2"), "leave no CPU for Ray's read")
    one_line_error(_cli("index", corpus, *common, "--engine", "ray", "--on-disk"), "need an IVF factory")
    one_line_error(_cli("index", corpus, *common, "--engine", "ray", "--on-disk", "--factory", "IVF4,PQ4x4fs"),
                   "not fast-scan")
    one_line_error(_cli("index", corpus, *common, "--engine", "ray", "--cpus-per-actor", "0"), "must be a positive")
    (tmp_path / "c.txt").write_text("one doc\n")
    one_line_error(_cli("index", tmp_path / "c.txt", *common, "--engine", "ray"), "the Ray engine reads")
    dup = _jsonl(tmp_path / "dup.jsonl", [{"_id": "a", "text": "one"}, {"_id": "a", "text": "two"}])
    one_line_error(_cli("index", dup, *common, "--engine", "ray"), "duplicate document id 'a'")
    assert not (tmp_path / "idx").exists()  # nothing half-built was left behind
    assert not list(tmp_path.glob(".idx.tmp-*"))


def test_without_ray_installed_the_engine_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    corpus = _jsonl(tmp_path / "corpus.jsonl", _records(5))
    with pytest.raises(BadInput, match=r"pip install 'semsearch\[ray\]'"):
        build_with_ray(corpus, tmp_path / "idx", embedder=HashEmbedder(dim=8), progress=False)


@pytest.mark.parametrize("seed", range(20))
def test_shard_slices_cover_every_row_once_in_order(seed):
    rng = np.random.default_rng(seed)
    rows = [int(r) for r in rng.integers(0, 50, size=rng.integers(1, 8))]
    shards = int(rng.integers(1, 12))
    slices = shard_slices(rows, shards)
    covered = [(part, row) for _, pieces in slices for part, a, b in pieces for row in range(a, b)]
    assert covered == [(part, row) for part, n in enumerate(rows) for row in range(n)]
    firsts = [first for first, _ in slices]
    sizes = [sum(b - a for _, a, b in pieces) for _, pieces in slices]
    assert firsts == list(np.cumsum([0] + sizes[:-1]))  # int ids continue from slice to slice
    assert len(slices) <= shards and (not sizes or max(sizes) - min(sizes) <= 1)


def test_cli_bad_records_found_by_ray_workers_are_one_line(ray_cluster, tiny_bert, tmp_path):
    # Last of the Ray tests: right after a job fails inside a worker, Ray may keep a CPU of this 2-CPU
    # cluster for a while (seen under pytest only); a build waiting for it fails with a clear error.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "a", "text": "fine"}\n{"_id": "b", "text": \n', encoding="utf-8")
    (tmp_path / "utf8.jsonl").write_bytes(b'{"_id": "a", "text": "fine"}\n{"_id": "b", "text": "\xff"}\n')
    (tmp_path / "short.csv").write_text("id,text\n1,one\n2\n", encoding="utf-8")
    for corpus, message in (("utf8.jsonl", "utf8.jsonl:2: not valid UTF-8"),  # in a read task
                            ("short.csv", "short.csv:3: record '2' has no 'text' field"),  # as the local reader
                            ("bad.jsonl", "bad.jsonl:2: invalid JSON (Expecting value)")):  # in an actor
        result = _cli("index", tmp_path / corpus, "--index", tmp_path / "idx", "--model", tiny_bert, "-q",
                      "--engine", "ray")
        one_line_error(result, message)
    assert not (tmp_path / "idx").exists() and not list(tmp_path.glob(".idx.tmp-*"))
