"""Retrieval quality and indexing speed of each pooling on BEIR SciFact.

For each pooling (mean, cls, pooler) on the same model: build an index of the
corpus with ``SearchEngine.build`` (timed: documents/s of the whole build,
store and FAISS included), then evaluate the test queries (nDCG@10, MRR@10,
Recall@100, MAP@100). One build per pooling, run one after another in this
process; the model load is outside the timing.

    python benchmarks/pooling_scifact.py [--data ../shared/datasets/beir/scifact] [--split test]

Reference (MTEB): all-MiniLM-L6-v2, mean pooling, SciFact nDCG@10 = 0.645.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from machine import machine, machine_line

from semsearch import (
    SearchEngine,
    TransformerEmbedder,
    read_corpus,
    read_qrels,
    read_queries,
)

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "beir" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR dataset folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    parser.add_argument("--poolings", default="mean,cls,pooler")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    corpus = list(read_corpus(args.data / "corpus.jsonl"))
    queries = read_queries(args.data / "queries.jsonl")
    qrels = read_qrels(args.data / "qrels" / f"{args.split}.tsv")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pooling in args.poolings.split(","):
            embedder = TransformerEmbedder(args.model, pooling=pooling)
            start = time.perf_counter()
            engine = SearchEngine.build(corpus, Path(tmp) / pooling, embedder=embedder, batch_size=args.batch_size)
            build_s = time.perf_counter() - start
            result = engine.evaluate(queries, qrels)
            rows.append({"pooling": pooling, **result.to_dict(), "build_s": build_s,
                         "docs_per_s": len(corpus) / build_s})
            print(json.dumps(rows[-1]), flush=True)
            engine.close()

    print(f"\nSciFact ({args.split}, {rows[0]['queries']} queries, {len(corpus)} docs), "
          f"model {embedder.name}, max_length {embedder.max_length}, batch {args.batch_size}, "
          f"1 build per pooling; {machine_line(machine())}\n")
    print("| pooling | nDCG@10 | MRR@10 | Recall@100 | MAP@100 | docs/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pooling']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} "
              f"| {r['map@100']:.4f} | {r['docs_per_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
