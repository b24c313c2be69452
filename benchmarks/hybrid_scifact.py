"""Dense vs BM25 vs hybrid (vs hybrid + trained reranker) on BEIR SciFact, through `semsearch bench`.

Runs the CLI command the README documents and prints its report. The hybrid fusion is
tuned on SciFact's train split (809 queries); every number is on the test split (300).
The reranker row needs a reranker trained on the train split (benchmarks/rerank_scifact.py
or `semsearch train-reranker`); without one it is left out.

    python benchmarks/hybrid_scifact.py [--data ../shared/datasets/beir/scifact]
        [--output benchmarks/results/bench-scifact] [--rerank models/scifact-reranker] [--candidates 20]
"""

from __future__ import annotations

import argparse
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


if __name__ == "__main__":
    main()
