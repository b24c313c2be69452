"""Dense vs BM25 vs hybrid (vs hybrid + trained reranker) on BEIR SciFact, through `semsearch bench`.

Runs the CLI command the README documents and prints its report. The hybrid fusion is
tuned on SciFact's train split (809 queries); every number is on the test split (300).
The reranker row needs a reranker trained on the train split (benchmarks/rerank_scifact.py
or `semsearch train-reranker`); without one it is left out. When the reranker lists the training
queries it held out (validation_queries.json), its blend weight with the first stage is then refitted
for the hybrid first stage on those queries (`semsearch tune --rerank`) and the test split is
evaluated once more with it (`semsearch eval --rerank`).

    python benchmarks/hybrid_scifact.py [--data ../shared/datasets/beir/scifact]
        [--output benchmarks/results/bench-scifact] [--rerank models/scifact-reranker] [--candidates 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "beir" / "scifact")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "bench-scifact")
    parser.add_argument("--rerank", type=Path, default=ROOT / "models" / "scifact-reranker")
    parser.add_argument("--candidates", type=int, default=20)
    args = parser.parse_args()
    command = [sys.executable, "-m", "semsearch", "bench", "--data", str(args.data), "--output", str(args.output),
               "--candidates", str(args.candidates), "--overwrite"]
    if args.rerank.is_dir():
        command += ["--rerank", str(args.rerank)]
    else:
        print(f"no reranker at {args.rerank}: the hybrid+rerank row is left out", file=sys.stderr)
    subprocess.run(command, check=True)
    print((args.output / "report.md").read_text(encoding="utf-8"))
    held_out = args.rerank / "validation_queries.json"
    if held_out.is_file():
        tune_blend_weight(args, json.loads(held_out.read_text()))


def tune_blend_weight(args, validation_qids: list[str]) -> None:
    """Refit the reranker's blend weight for the hybrid first stage on the training queries its training
    held out (never on test), then evaluate the index's new default reranker on the test split."""
    qrels = args.output / "validation_qrels.tsv"
    wanted = set(validation_qids)
    lines = (args.data / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()
    qrels.write_text("\n".join([lines[0]] + [x for x in lines[1:] if x.split("\t")[0] in wanted]) + "\n")
    semsearch = [sys.executable, "-m", "semsearch"]
    index, queries = str(args.output / "index"), str(args.data / "queries.jsonl")
    subprocess.run(semsearch + ["tune", "--index", index, "--queries", queries, "--qrels", str(qrels),
                                "--rerank", str(args.rerank), "--candidates", str(args.candidates)], check=True)
    result = subprocess.run(semsearch + ["eval", "--index", index, "--queries", queries, "--qrels",
                                         str(args.data / "qrels" / "test.tsv"), "--mode", "hybrid", "--rerank",
                                         "--candidates", str(args.candidates), "--json"],
                            check=True, capture_output=True, text=True)
    print(f"hybrid + reranker with the blend weight refitted for the hybrid first stage "
          f"({len(wanted)} held-out train queries), test: {result.stdout.strip()}")


if __name__ == "__main__":
    main()
