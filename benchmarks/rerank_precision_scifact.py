"""Does the reranker's precision change SciFact quality? All test queries, same candidates.

The dense top 20 of each SciFact test query (fp32 queries on an fp32 index) is reranked by the
cross-encoder at fp32, bf16, int8 (ONNX Runtime) and int8 (OpenVINO, static) and blended with the first stage as the reranker was tuned;
nDCG@10 per precision, and the paired difference to fp32 (mean ± standard error over queries).
This decides whether bf16 may be the reranker's default where the CPU has it.

    python benchmarks/rerank_precision_scifact.py [--data ../shared/datasets/beir/scifact] \
        [--index indexes/scifact] [--reranker models/scifact-reranker]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--index", type=Path, default=ROOT / "indexes" / "scifact",
                        help="an index of the SciFact corpus (semsearch index …/corpus.jsonl --precision fp32)")
    parser.add_argument("--reranker", type=Path, default=ROOT / "models" / "scifact-reranker")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "inference" /
                        "rerank_precision.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    logging.getLogger("semsearch.rerank").setLevel(logging.ERROR)  # most SciFact pairs are cut at 192 tokens
    from semsearch import Reranker, SearchEngine, read_qrels, read_queries
    from semsearch.metrics import ndcg_at_k
    from semsearch.rerank.blend import blend_order

    engine = SearchEngine.open(args.index, precision="fp32")
    queries, qrels = read_queries(args.data / "queries.jsonl"), read_qrels(args.data / "qrels" / "test.tsv")
    qids = [q for q in qrels if q in queries]
    hits = engine.search_many([queries[q] for q in qids], k=20, mode="dense")
    variants = {"fp32": ("fp32", "torch"), "bf16": ("bf16", "torch"), "int8": ("int8", "onnx"),
                "openvino-int8": ("int8", "openvino")}
    rerankers = {n: Reranker(args.reranker, precision=p, backend=b) for n, (p, b) in variants.items()}
    weight = rerankers["fp32"].first_stage_weight
    per_query = {}
    for precision, reranker in rerankers.items():
        per_query[precision] = []
        for q, hs in zip(tqdm(qids, desc=precision), hits):
            scores = reranker.score([(queries[q], h.embedding_text) for h in hs]).scores
            per_query[precision].append(ndcg_at_k(blend_order([h.id for h in hs], scores, weight)[:10], qrels[q], 10))
    from machine import machine

    out = {"machine": machine(), "queries": len(qids), "candidates": 20, "blend_weight": weight,
           **{p: float(np.mean(v)) for p, v in per_query.items()}}
    for p in list(variants)[1:]:
        diff = np.array(per_query[p]) - np.array(per_query["fp32"])
        out[f"{p}_minus_fp32"] = float(diff.mean())
        out[f"{p}_minus_fp32_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
        out[f"{p}_queries_changed"] = int((diff != 0).sum())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
