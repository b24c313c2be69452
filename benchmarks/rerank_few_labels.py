"""Rerankers from few labels on BEIR SciFact: test nDCG@10 against the number of judged training queries.

For each size (``--sizes``; 0 is the first stage alone) and seed, a subset of that many **train**-split
queries is drawn (``TrainingData.subset``, seeded), a reranker is trained on it with each recipe
(``--recipes``, see ``RECIPES``), with its usefulness check (cross-fitted below 300 queries, a held-out
slice above) deciding its blend weight, and the **test** split is reranked: the hybrid first stage's top
``--candidates`` (fusion tuned on the train split), blended at the weight the check chose (the shipped
default), and in the cross-encoder's own order. The test split chooses nothing: the recipe per size is
the one with the best mean *check* score (held-out train queries of the subset itself).

Results are appended to ``--results`` (one JSON line per trained model) and runs already there are not
repeated, so the benchmark can be run in parts. The table and plot are made from all lines.

    python benchmarks/rerank_few_labels.py [--data ../shared/datasets/beir/scifact] [--sizes 25,50,100,200,728]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from machine import machine, machine_line

from semsearch import Reranker, SearchEngine, read_corpus, read_qrels, read_queries
from semsearch.metrics import ndcg_at_k
from semsearch.rerank.blend import BLEND_WEIGHTS, blend_order, check_blend
from semsearch.rerank.train import train_reranker
from semsearch.rerank.training_data import inverse_cloze, read_beir

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"
#: Training recipes compared (options of ``train_reranker``); "ict-start" starts from the reranker trained
#: on inverse-cloze pseudo-queries of the corpus (no judgements), made first if missing.
RECIPES = {
    "default": {},
    "long": {"min_steps": 150},
    "ict-start": {},
}
#: The no-label reranker: inverse-cloze pseudo-queries from this many documents, one epoch.
ICT_QUERIES = 1000


def first_stage(args) -> SearchEngine:
    """The default index (passages auto, hybrid) over the corpus, its fusion tuned on the train split."""
    if not (args.index / "manifest.json").is_file():
        SearchEngine.build(read_corpus(args.data / "corpus.jsonl"), args.index)
    engine = SearchEngine.open(args.index)
    if engine.manifest.fusion is None:
        engine.tune_fusion(read_queries(args.data / "queries.jsonl"), read_qrels(args.data / "qrels" / "train.tsv"))
        engine = SearchEngine.open(args.index)
    return engine


def done_keys(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["size"], r["seed"], r["recipe"], r["max_length"]) for r in rows}


def pretrained(args, engine) -> tuple[Path, float]:
    """The reranker trained on inverse-cloze pseudo-queries of the corpus alone (made here if missing),
    and the seconds that took (0 if it was there)."""
    folder = args.pretrained
    if (folder / "semsearch_reranker.json").is_file():
        return folder, 0.0
    started = time.perf_counter()
    data = inverse_cloze(read_corpus(args.data / "corpus.jsonl"), count=ICT_QUERIES, seed=0)
    train_reranker(data, folder, first_stage=engine, seed=0, epochs=1, max_length=args.max_length, overwrite=True)
    return folder, time.perf_counter() - started


def run_one(args, engine, train, test, size: int, seed: int, recipe: str) -> dict:
    """Train one reranker on ``size`` train queries (0: the no-label one) and rerank the test split with it."""
    qids, texts, hits, qrels = test
    options, pretrain_seconds = dict(RECIPES.get(recipe, {})), 0.0
    if recipe == "ict-start":
        base, pretrain_seconds = pretrained(args, engine)
        options["base"] = str(base)
    started = time.perf_counter()
    if size == 0:
        folder, seconds = pretrained(args, engine)
        reranker = Reranker(folder)
        report = None
    else:
        data = train if size >= len(train.usable_queries()) else train.subset(size, seed)
        folder = Path(tempfile.mkdtemp(prefix="few-labels-")) / "r"
        report = train_reranker(data, folder, first_stage=engine, seed=seed, max_length=args.max_length,
                                candidates=args.candidates, **options)
        seconds = time.perf_counter() - started
        reranker = Reranker(folder)
    started = time.perf_counter()
    scored = [s for s, _ in reranker.score_hits(texts, hits)]
    pairs_per_s = sum(len(h) for h in hits) / (time.perf_counter() - started)

    def ndcg(weight: float) -> float:
        return float(np.mean([ndcg_at_k(blend_order([h.id for h in hs], sc, weight), qrels[q], 10)
                              for q, hs, sc in zip(qids, hits, scored)]))

    row = {"size": size, "seed": seed, "recipe": recipe, "max_length": args.max_length, "train_queries": size,
           "steps": report.steps if report else None, "epochs": report.epochs if report else None,
           "train_seconds": round(seconds, 1), "pretrain_seconds_here": round(pretrain_seconds, 1),
           "check": report.check if report else None,
           "check_method": report.check_method if report else "none", "weight": reranker.first_stage_weight,
           "test_first_stage": ndcg(1.0), "test_shipped": ndcg(reranker.first_stage_weight),
           "test_cross_encoder": ndcg(0.0), "test_by_weight": {f"{w:.2f}": ndcg(w) for w in BLEND_WEIGHTS},
           "test_pairs_per_s": round(pairs_per_s, 1)}
    if size == 0:  # its blend weight, chosen on judged *train* queries (the test split chooses nothing)
        row["train_check"] = train_check(args, engine, reranker, train)
        row["weight"] = row["train_check"]["weight"]
        row["test_shipped"] = ndcg(row["weight"])
        return row
    if args.keep and size == max(args.sizes):
        shutil.rmtree(args.keep, ignore_errors=True)
        shutil.copytree(folder, args.keep)
    shutil.rmtree(folder.parent, ignore_errors=True)
    return row


def train_check(args, engine, reranker, train, count: int = 200) -> dict:
    """The no-label reranker's check on ``count`` judged train queries (drawn with seed 0): its blend weight."""
    qids = sorted(random.Random(0).sample(train.usable_queries(), count))
    hits = engine.first_stage([train.queries[q] for q in qids], args.candidates, None)
    scores = [s for s, _ in reranker.score_hits([train.queries[q] for q in qids], hits)]
    return check_blend([[h.id for h in hs] for hs in hits], scores, [train.qrels[q] for q in qids],
                       source="judged train queries").to_dict()


def summarize(rows: list[dict], first: float) -> tuple[list[dict], dict]:
    """Per (size, recipe): means and spreads over seeds; and per size the recipe the checks choose."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["size"], r["recipe"], r["max_length"]), []).append(r)
    table = []
    for (size, recipe, max_length), rs in sorted(groups.items()):
        shipped = np.array([r["test_shipped"] for r in rs])
        checks = [r["check"] or r.get("train_check") for r in rs]  # size 0: checked on judged train queries
        check = np.array([c["first_stage_ndcg10"] + c["gain"] if c else np.nan for c in checks])
        table.append({"size": size, "recipe": recipe, "max_length": max_length, "seeds": len(rs),
                      "shipped_mean": float(shipped.mean()), "shipped_sd": float(shipped.std(ddof=1)) if len(rs) > 1 else 0.0,
                      "shipped_min": float(shipped.min()), "gain_mean": float(shipped.mean() - first),
                      "gain_min": float(shipped.min() - first),
                      "cross_encoder_mean": float(np.mean([r["test_cross_encoder"] for r in rs])),
                      "kept": sum(r["weight"] < 1 for r in rs),
                      "weights": [r["weight"] for r in rs],
                      "check_score_mean": float(np.nanmean(check)) if np.isfinite(check).any() else float("nan"),
                      "check_gain_mean": float(np.mean([c["gain"] for c in checks if c] or [np.nan])),
                      "train_minutes_mean": float(np.mean([r["train_seconds"] for r in rs]) / 60),
                      "steps_mean": float(np.mean([r["steps"] or 0 for r in rs]))})
    chosen = {}
    for row in table:
        best = chosen.get(row["size"])
        if best is None or row["check_score_mean"] > best["check_score_mean"]:
            chosen[row["size"]] = row
    return table, {size: row["recipe"] for size, row in chosen.items()}


def plot(table: list[dict], chosen: dict, first: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.axhline(first, color="grey", linestyle="--", label=f"hybrid first stage ({first:.3f})")
    ax.axhline(first + 0.01, color="grey", linestyle=":", linewidth=0.8, label="first stage + 0.01")
    for recipe in sorted({r["recipe"] for r in table}):
        rows = [r for r in table if r["recipe"] == recipe]
        xs = [r["size"] for r in rows]
        ax.errorbar(xs, [r["shipped_mean"] for r in rows], yerr=[r["shipped_sd"] for r in rows], marker="o",
                    capsize=3, label=f"+ rerank, shipped blend ({recipe})")
        ax.plot(xs, [r["cross_encoder_mean"] for r in rows], marker="x", linestyle=":", alpha=0.6,
                label=f"cross-encoder order alone ({recipe})")
    ax.set_xscale("symlog", linthresh=20)
    ax.set_xticks(sorted({r["size"] for r in table}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("judged training queries (SciFact train split; 0: pseudo-queries from the corpus alone)")
    ax.set_ylabel("nDCG@10, SciFact test (300 queries)")
    ax.set_title("Reranking the hybrid top 20: mean ± sd over seeds")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--index", type=Path, default=ROOT / "indexes" / "scifact-auto", help="built here if missing")
    parser.add_argument("--sizes", default="25,50,100,200,728")
    parser.add_argument("--seeds", default="0,1,2", help="seeds per size (the full set: the first seed only)")
    parser.add_argument("--recipes", default="default", help=f"comma-separated, of: {', '.join(RECIPES)}")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "rerank_few_labels.jsonl")
    parser.add_argument("--keep", type=Path, default=None, help="copy the model trained on the largest size here")
    parser.add_argument("--pretrained", type=Path, default=ROOT / "models" / "scifact-ict",
                        help="the no-label (inverse cloze) reranker: size 0 and the ict-start recipe; made if missing")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "benchmarks" / "rerank-few-labels.png")
    parser.add_argument("--json", type=Path, default=None, help="write the summary (and every row) here")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    import torch

    torch.set_num_threads(2)
    engine = first_stage(args)
    train = read_beir(args.data, "train")
    queries, qrels = read_queries(args.data / "queries.jsonl"), read_qrels(args.data / "qrels" / "test.tsv")
    qids = sorted(qrels)
    texts = [queries[q] for q in qids]
    hits = engine.first_stage(texts, args.candidates, None)
    first = float(np.mean([ndcg_at_k([h.id for h in hs], qrels[q], 10) for q, hs in zip(qids, hits)]))
    print(f"hybrid first stage ({engine.manifest.fusion['method']} fusion tuned on train), top {args.candidates}: "
          f"test nDCG@10 {first:.4f}", file=sys.stderr)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(args.results)
    full = len(train.usable_queries())
    for size in args.sizes:
        seeds = [int(s) for s in args.seeds.split(",")]
        for seed in seeds[:1] if size >= full or size == 0 else seeds:
            for recipe in ["ict"] if size == 0 else args.recipes.split(","):
                if (size, seed, recipe, args.max_length) in done:
                    continue
                row = run_one(args, engine, train, (qids, texts, hits, qrels), size, seed, recipe)
                row["machine"] = machine_line(machine())
                row["date"] = date.today().isoformat()
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps({k: v for k, v in row.items() if k not in ("check", "machine")}), file=sys.stderr)

    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    table, chosen = summarize(rows, first)
    print(f"\nSciFact test, 300 queries; hybrid first stage alone: nDCG@10 {first:.4f}\n")
    print("| judged train queries | recipe | seeds | test nDCG@10, shipped blend (mean ± sd) | min | vs first stage "
          "(mean / worst) | cross-encoder order | kept (weight < 1) | check gain (train) | steps | train min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| 0 | - | - | {first:.4f} | | | | | | | |")
    for r in table:
        mark = " (chosen)" if chosen[r["size"]] == r["recipe"] else ""
        print(f"| {r['size']} | {r['recipe']}{mark} | {r['seeds']} | {r['shipped_mean']:.4f} ± {r['shipped_sd']:.4f} | "
              f"{r['shipped_min']:.4f} | {r['gain_mean']:+.4f} / {r['gain_min']:+.4f} | {r['cross_encoder_mean']:.4f} | "
              f"{r['kept']} of {r['seeds']} ({', '.join(f'{w:.2f}' for w in r['weights'])}) | "
              f"{r['check_gain_mean']:+.4f} | {r['steps_mean']:.0f} | {r['train_minutes_mean']:.1f} |")
    plot(table, chosen, first, args.plot)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "first_stage": first, "table": table, "chosen": chosen,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
