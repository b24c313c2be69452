"""The few-shot labelling workflow end to end, as a user runs it, on SST-2.

1. Index a corpus: the 1,821 SST-2 test sentences (`semsearch index`).
2. Write a few labelled examples (8 per class, drawn with --seed from the train split) and two
   label descriptions.
3. Label every document of the index with each method (`semsearch label`), interrupt-safe.
4. Compare the labels with the gold labels the labeller never saw.

    python benchmarks/label_workflow.py [--data ../shared/datasets/classification] [--work /tmp/label-demo]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "classification"
NAMES = ["negative", "positive"]
DESCRIPTIONS = {"negative": "a negative, bad, boring movie review",
                "positive": "a positive, great, enjoyable movie review"}


def sh(*args: str) -> None:
    print("$ semsearch " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "semsearch", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "indexes" / "label-demo")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    test = [line.partition(" ") for line in (args.data / "sst2" / "stsa.binary.test").read_text().splitlines()]
    with open(work / "corpus.jsonl", "w") as fh:
        for i, (_, _, text) in enumerate(test):
            fh.write(json.dumps({"id": f"t{i}", "text": text}) + "\n")
    gold = {f"t{i}": NAMES[int(label)] for i, (label, _, _) in enumerate(test)}

    train = [line.partition(" ") for line in (args.data / "sst2" / "stsa.binary.train").read_text().splitlines()]
    rng = random.Random(args.seed)
    examples = []
    for k, name in enumerate(NAMES):
        pool = [text for label, _, text in train if int(label) == k]
        examples += [{"text": t, "label": name} for t in rng.sample(pool, args.shots)]
    (work / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    (work / "labels.json").write_text(json.dumps(DESCRIPTIONS, indent=2))

    sh("index", str(work / "corpus.jsonl"), "--index", str(work / "index"), "--overwrite", "-q")
    from machine import machine, machine_line

    print(f"machine: {machine_line(machine())}")
    for method in ("threshold", "setfit"):
        out = work / f"labels-{method}.jsonl"
        out.unlink(missing_ok=True)
        sh("label", "--index", str(work / "index"), "--examples", str(work / "examples.jsonl"),
           "--labels", str(work / "labels.json"), "--method", method, "--output", str(out), "-q")
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        correct = sum(r["label"] == gold[r["id"]] for r in rows)
        print(f"{method}: accuracy {correct / len(rows):.3f} on {len(rows)} sentences "
              f"({args.shots} examples per class, seed {args.seed}); labels {dict(Counter(r['label'] for r in rows))}\n")


if __name__ == "__main__":
    main()
