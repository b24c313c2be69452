"""Two-stage retrieval on BEIR SciFact: dense all-MiniLM-L6-v2, then the project's own reranker.

Trains a reranker on the **train** split (unless --reranker names one already trained),
then evaluates on the **test** split: dense alone, and dense + reranker at several
candidate depths, both in pure cross-encoder order and blended with the first-stage rank
(weight fitted on held-out *training* queries, stored with the reranker). Every test pair
of the deepest candidate list is scored once; shallower depths reuse those scores (a
pair's score does not depend on the other candidates). Latency: reranking the top 20 of
single queries, p50/p95, torch on 2 threads.

    python benchmarks/rerank_scifact.py [--data ../shared/datasets/beir/scifact] [--reranker models/scifact-reranker]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
from machine import machine

from semsearch import SearchEngine, read_corpus, read_qrels, read_queries
from semsearch.metrics import evaluate_run
from semsearch.rerank.blend import blend_order
from semsearch.rerank.reranker import RERANKER_CONFIG, Reranker
from semsearch.rerank.train import train_reranker
from semsearch.rerank.training_data import read_beir

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--index", type=Path, default=ROOT / "indexes" / "scifact", help="built here if missing")
    parser.add_argument("--reranker", type=Path, default=ROOT / "models" / "scifact-reranker",
                        help="trained here (train split) if missing")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", default="20,50,100")
    parser.add_argument("--latency-queries", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    if not (args.index / "manifest.json").is_file():
        SearchEngine.build(read_corpus(args.data / "corpus.jsonl"), args.index)
    engine = SearchEngine.open(args.index)
    if not (args.reranker / RERANKER_CONFIG).is_file():
        train_reranker(read_beir(args.data, "train"), args.reranker, epochs=args.epochs, seed=args.seed,
                       first_stage=engine)
    trained = json.loads((args.reranker / RERANKER_CONFIG).read_text())["training"]
    reranker = Reranker(args.reranker)

    queries = read_queries(args.data / "queries.jsonl")
    qrels = read_qrels(args.data / "qrels" / "test.tsv")
    qids = list(qrels)
    depths = [int(c) for c in args.candidates.split(",")]
    deepest = max(depths + [100])
    first = engine.search_many([queries[q] for q in qids], k=deepest)
    rows = [{"system": "dense (all-MiniLM-L6-v2)", "candidates": "-",
             **evaluate_run({q: [h.id for h in hs[:100]] for q, hs in zip(qids, first)}, qrels).to_dict()}]

    from tqdm.auto import tqdm

    pairs = [(queries[q], h.embedding_text) for q, hs in zip(qids, first) for h in hs[: max(depths)]]
    start = time.perf_counter()
    with tqdm(total=len(pairs), desc="reranking test pairs", unit="pair", file=sys.stderr) as bar:
        result = reranker.score(pairs, on_batch=bar.update)
    pairs_per_s = len(pairs) / (time.perf_counter() - start)
    per_query, at = [], 0
    for hs in first:
        n = min(len(hs), max(depths))
        per_query.append(result.scores[at : at + n])
        at += n
    for depth in depths:
        for label, weight in (("dense + reranker", 0.0), ("dense + reranker, blended", reranker.first_stage_weight)):
            run = {}
            for q, hs, scores in zip(qids, first, per_query):
                top = blend_order([h.id for h in hs[:depth]], scores[:depth], weight)
                run[q] = (top + [h.id for h in hs[depth:]])[:100]
            rows.append({"system": f"{label} (w={weight})" if weight else label, "candidates": depth,
                         **evaluate_run(run, qrels).to_dict()})

    rng = random.Random(args.seed)
    sample = rng.sample(qids, min(args.latency_queries, len(qids)))
    rerank_ms, e2e_ms = [], []
    for q in sample:  # interleaved: rerank alone, then the whole two-stage query
        hits = engine.search(queries[q], k=20)
        t = time.perf_counter()
        reranker.score([(queries[q], h.embedding_text) for h in hits])
        rerank_ms.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        engine.search(queries[q], k=10, reranker=reranker, candidates=20)
        e2e_ms.append(1000 * (time.perf_counter() - t))

    print(f"\nSciFact test ({len(qids)} queries); reranker {args.reranker} trained on train: {trained['steps']} steps, "
          f"{trained['seconds'] / 60:.1f} min, max length {reranker.max_length}, first-stage weight "
          f"{reranker.first_stage_weight} (fitted on {trained['validation_queries']} held-out train queries)\n")
    print("| system | candidates | nDCG@10 | MRR@10 | Recall@100 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['candidates']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} |")
    print(f"\nrerank throughput {pairs_per_s:.1f} pairs/s ({len(pairs)} pairs, batch 32, sorted by length); "
          f"top-20 rerank of one query: p50 {np.percentile(rerank_ms, 50):.0f} ms, p95 {np.percentile(rerank_ms, 95):.0f} ms; "
          f"query + rerank top-20 end to end: p50 {np.percentile(e2e_ms, 50):.0f} ms ({len(sample)} queries, 2 threads)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "pairs_per_s": pairs_per_s, "rerank_ms": rerank_ms,
                                         "e2e_ms": e2e_ms, "training": trained}, indent=2))


if __name__ == "__main__":
    main()
