"""The Ray engine against a local build: same vectors, same results, what it costs; and the sharded IVF build.

Three parts, on 2 cores:

1. SciFact corpus (5,183 documents), default model at fp32: ``semsearch index`` with ``--engine local`` and
   with ``--engine ray`` (Flat, 4 shards). The local Ray cluster is declared with 3 logical CPUs so that two
   1-thread embedding actors plus Ray's read tasks fit on the 2 cores (the local build uses 2 torch
   threads). Reported: wall time, documents/s and per core, max |difference| of the stored vectors, how
   many of the 300 test queries get the same top-10 (dense), and nDCG@10 of both. The two builds alternate
   for ``--rounds`` rounds; the comparison uses the last round's indexes.
2. The same 5,183 vectors (from the Ray build's store) as Parquet parts, indexed by the FAISS recipe for large
   indexes the Ray engine uses (train on a random sample, add 4 shards in parallel Ray tasks, merge; and
   merge_ondisk) against a single-process build of the same factory: recall@10 of the merged index against
   the single-process one and against exact search, on the 300 test queries.
3. Synthetic: ``--synthetic`` clustered, normalised 384-d vectors (default 300k) as Parquet parts;
   IVF1024,SQ8 and IVF1024,PQ48 trained on 100k, filled single-process vs in 2 parallel shards + merge
   (trained on the same sample, so the two should agree); bytes per vector,
   search latency (nprobe 16, one query at a time) and recall@10 against exact search on 200 queries. These
   are the per-core rates docs/scaling.md extrapolates from.

    python benchmarks/ray_scifact.py [--data ../shared/datasets/beir/scifact] [--work /tmp/semsearch-ray]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"
SCIFACT_FACTORIES = ("IVF64,Flat", "IVF64,SQ8", "IVF64,PQ32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/semsearch-ray"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--synthetic", type=int, default=300_000)
    parser.add_argument("--part1-only", action="store_true", help="Only the local vs Ray build comparison.")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "ray.json")
    args = parser.parse_args()
    import ray
    import torch

    torch.set_num_threads(2)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    from semsearch import read_qrels, read_queries

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    ray.init(num_cpus=3, include_dashboard=False, logging_level=logging.WARNING)
    queries = read_queries(args.data / "queries.jsonl")
    qrels = read_qrels(args.data / "qrels" / "test.tsv")
    from machine import machine

    results = {"machine": machine(), "part1": part1(args, queries, qrels)}
    if not args.part1_only:
        results["part2"] = part2(args, queries, qrels)
        results["part3"] = part3(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def part1(args, queries, qrels) -> dict:
    from semsearch import SearchEngine, TransformerEmbedder, read_corpus
    from semsearch.scale.build import build_with_ray

    corpus = args.data / "corpus.jsonl"
    count = len(read_corpus(corpus))
    embedder = TransformerEmbedder(precision="fp32", backend="torch")
    times: dict[str, list[float]] = {"local": [], "ray": []}
    builds = {}
    for round_ in range(args.rounds):
        for engine in ("local", "ray"):
            path = args.work / f"{engine}-{round_}"
            t = time.perf_counter()
            if engine == "local":
                index = SearchEngine.build(read_corpus(corpus), path, embedder=embedder, factory="Flat")
            else:
                index = build_with_ray(corpus, path, embedder=embedder, factory="Flat", shards=4, actors=2)
            times[engine].append(time.perf_counter() - t)
            builds[engine] = index
            print(f"round {round_} {engine}: {times[engine][-1]:.1f} s", file=sys.stderr, flush=True)
    local, dist = builds["local"], builds["ray"]
    ids_l, vec_l = local.store.all_vectors()
    ids_r, vec_r = dist.store.all_vectors()
    by_id_l = dict(zip(local.store.string_ids(ids_l), vec_l))
    by_id_r = dict(zip(dist.store.string_ids(ids_r), vec_r))
    diff = max(float(np.abs(by_id_l[k] - by_id_r[k]).max()) for k in by_id_l)
    test = [q for q in queries if q in qrels]
    hits_l = local.search_many([queries[q] for q in test], k=10, mode="dense")
    hits_r = dist.search_many([queries[q] for q in test], k=10, mode="dense")
    same = sum([h.id for h in a] == [h.id for h in b] for a, b in zip(hits_l, hits_r))
    overlap = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(hits_l, hits_r)])
    result = {
        "documents": count,
        "seconds": {k: [round(x, 1) for x in v] for k, v in times.items()},
        "docs_per_s": {k: round(count / np.median(v), 2) for k, v in times.items()},
        "ray_over_local_time": round(float(np.median(times["ray"]) / np.median(times["local"])), 3),
        "ray_build": dist.manifest.build,
        "local_build": local.manifest.build,
        "same_int_ids": bool((ids_l == ids_r).all() and local.store.string_ids(ids_l) == dist.store.string_ids(ids_r)),
        "max_abs_vector_diff": diff,
        "queries": len(test),
        "identical_top10": same,
        "top10_overlap": round(float(overlap), 4),
        "ndcg@10": {"local": round(local.evaluate(queries, qrels, mode="dense").ndcg_at_10, 4),
                    "ray": round(dist.evaluate(queries, qrels, mode="dense").ndcg_at_10, 4)},
    }
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def _parts(folder: Path, vectors: np.ndarray, rows_per_part: int) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, start in enumerate(range(0, len(vectors), rows_per_part)):
        chunk = vectors[start : start + rows_per_part]
        column = pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1), pa.float32()), vectors.shape[1])
        parts.append(folder / f"part-{i:05d}.parquet")
        pq.write_table(pa.table({"vector": column}), parts[-1])
    return parts


def _recall(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x[x >= 0]) & set(y[y >= 0])) / max(1, len(set(y[y >= 0]))) for x, y in zip(a, b)]))


def part2(args, queries, qrels) -> dict:
    import ray

    from semsearch import SearchEngine
    from semsearch.index.vectors import IndexBuilder, VectorIndex
    from semsearch.scale.shards import build_sharded

    engine = SearchEngine.open(args.work / f"ray-{args.rounds - 1}")
    ids, vectors = engine.store.all_vectors()
    order = np.argsort(ids)
    ids, vectors = ids[order], vectors[order]
    test = [q for q in queries if q in qrels]
    q = engine.embedder.encode([queries[t] for t in test])
    exact = VectorIndex.create(vectors.shape[1], "Flat")
    exact.add(vectors, ids)
    _, truth = exact.search(q, 10)
    parts = _parts(args.work / "p2", vectors, 1024)
    rows = [min(1024, len(vectors) - s) for s in range(0, len(vectors), 1024)]
    out = {}
    for factory in SCIFACT_FACTORIES:
        t = time.perf_counter()
        builder = IndexBuilder(vectors.shape[1], factory)
        builder.add(vectors, ids)
        single = builder.finish()
        single_s = time.perf_counter() - t
        _, single_ids = single.search(q, 10)
        row = {"single_seconds": round(single_s, 2), "recall@10_single_vs_exact": round(_recall(single_ids, truth), 4)}
        for on_disk in ((False, True) if factory == "IVF64,Flat" else (False,)):
            tmp = args.work / f"p2-{factory.replace(',', '_')}-{on_disk}"
            tmp.mkdir()
            sample = vectors[np.sort(np.random.default_rng(0).choice(len(vectors), len(vectors), replace=False))]
            t = time.perf_counter()
            merged, shards = build_sharded(ray, parts, rows, factory, vectors.shape[1], sample, 4, tmp, on_disk,
                                           progress=False)
            seconds = time.perf_counter() - t
            if on_disk:
                merged = VectorIndex.load(tmp / "vectors.faiss", factory)
            _, merged_ids = merged.search(q, 10)
            key = "ondisk" if on_disk else "merged"
            row[f"{key}_seconds"] = round(seconds, 2)
            row[f"recall@10_{key}_vs_single"] = round(_recall(merged_ids, single_ids), 4)
            row[f"recall@10_{key}_vs_exact"] = round(_recall(merged_ids, truth), 4)
        out[factory] = row
        print(factory, json.dumps(row), file=sys.stderr, flush=True)
    return out


def part3(args) -> dict:
    import faiss
    import ray

    from semsearch.index.vectors import VectorIndex
    from semsearch.scale.shards import build_sharded

    n, dim = args.synthetic, 384
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((2000, dim)).astype(np.float32)
    vectors = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(n, 200, replace=False)] + 0.05 * rng.standard_normal((200, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)
    flat = VectorIndex.create(dim, "Flat")
    flat.add(vectors, ids)
    _, truth = flat.search(queries, 10)
    out = {"vectors": n, "dim": dim, "flat": {"bytes_per_vector": dim * 4 + 8,
                                              "search_ms_p50": round(_latency(flat, queries), 2)}}
    parts = _parts(args.work / "p3", vectors, 50_000)
    rows = [min(50_000, n - s) for s in range(0, n, 50_000)]
    sample = vectors[np.sort(rng.choice(n, 100_000, replace=False))]
    for factory in ("IVF1024,SQ8", "IVF1024,PQ48"):
        t = time.perf_counter()
        single = VectorIndex.create(dim, factory)
        single.train(sample)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        single.add(vectors, ids)  # one process, FAISS's own threads (2)
        fill_single = time.perf_counter() - t
        tmp = args.work / f"p3-{factory.replace(',', '_')}"
        tmp.mkdir()
        t = time.perf_counter()  # trains on the same sample again, then 2 shards in parallel and the merge
        merged, _ = build_sharded(ray, parts, rows, factory, dim, sample, 2, tmp, False, progress=False)
        ray_s = time.perf_counter() - t
        _, single_ids = single.search(queries, 10)
        _, merged_ids = merged.search(queries, 10)
        out[factory] = {
            "train_sample": len(sample), "train_seconds": round(train_s, 1),
            "fill_seconds_single_process": round(fill_single, 1),
            "ray_2_shards_seconds_incl_training": round(ray_s, 1),
            "bytes_per_vector": round(len(faiss.serialize_index(merged.faiss_index)) / n, 1),
            "search_ms_p50": round(_latency(merged, queries), 2),
            "recall@10_vs_exact": {"single": round(_recall(single_ids, truth), 4),
                                   "merged": round(_recall(merged_ids, truth), 4)},
            "recall@10_merged_vs_single": round(_recall(merged_ids, single_ids), 4),
        }
        print(factory, json.dumps(out[factory]), file=sys.stderr, flush=True)
    return out


def _latency(index, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], 10)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


if __name__ == "__main__":
    main()
