"""Where one query's time goes in a semsearch index: encoding, ranking, and fetching the hits.

One query at a time in a warm process, the variants interleaved query by query (the order rotating), each
timed with ``time.perf_counter``:

- ``encode``: the query's vector alone (``engine.embedder.encode([q])``);
- ``dense k=10`` / ``dense k=100``: a dense search returning 10 or 100 hits (each hit's document and best
  passages are read from the SQLite store, so the difference between the two is mostly fetching);
- ``hybrid k=100``: the same with the BM25 side and fusion;
- ``lexical k=100``: BM25 alone (no model run).

Made to explain the gap between semsearch and the peers that return bare ids (``benchmarks/peers.py``
asks every system for 100 hits per query): run it on an index that ``peers.py`` built.

    python benchmarks/query_cost.py INDEX_FOLDER [--data ../shared/datasets/beir/scifact] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import machine, machine_line

from semsearch import SearchEngine, read_qrels, read_queries

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"


def variants(engine: SearchEngine) -> dict:
    return {
        "encode": lambda q: engine.embedder.encode([q]),
        "dense k=10": lambda q: engine.search(q, 10, mode="dense"),
        "dense k=100": lambda q: engine.search(q, 100, mode="dense"),
        "hybrid k=100": lambda q: engine.search(q, 100, mode="hybrid"),
        "lexical k=100": lambda q: engine.search(q, 100, mode="lexical"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    qrels = read_qrels(args.data / "qrels" / "test.tsv")
    queries = read_queries(args.data / "queries.jsonl")
    texts = [queries[q] for q in sorted(qrels)][:args.queries]
    engine = SearchEngine.open(args.index)
    run = variants(engine)
    names = list(run)
    for q in texts[:5]:  # warm-up
        for name in names:
            run[name](q)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i, q in enumerate(texts):
        for name in names[i % len(names):] + names[:i % len(names)]:
            started = time.perf_counter()
            run[name](q)
            times[name].append((time.perf_counter() - started) * 1000)
    engine.close()
    summary = {n: {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95))}
               for n, t in times.items()}
    print(f"{machine_line(machine())}\n{args.index}: {len(texts)} queries, one at a time\n")
    print("| step | p50 ms | p95 ms |\n|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "index": str(args.index), "queries": len(texts),
                                         "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
