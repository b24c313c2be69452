"""Long documents on BEIR SciFact: truncation (one vector per document) against passages (MaxP).

Two collections, both built by this script from ``--data`` (BEIR SciFact):

1. **SciFact as it is** (5,183 abstracts, ~300 tokens each): ``--passages off`` (the model reads the
   first 256 tokens) against passages of 256 and of 128 tokens. Builds are interleaved (off, 256, 128,
   off, 256, …; ``--build-rounds``) and their wall times compared as ratios.
2. **Long SciFact**: the corpus shuffled with ``--seed`` and cut into groups of 8 abstracts; each group is
   one document (the 8 abstracts' texts joined by blank lines; title: the first abstract's title). A
   query's relevant documents are the groups holding one of its relevant abstracts (grade: the best).

For every index: nDCG@10 and Recall@100 on the **test** split for dense, hybrid and hybrid + the trained
reranker (top ``--candidates``). The hybrid fusion is tuned on the **train** split for each index, and
for passage indexes with BM25 over documents and over passages; the lexical unit reranked is the one
with the better *train* nDCG@10 (the test split chooses nothing). Also: index size, passages, and
on long SciFact the reranker reading the best 2 passages.

    python benchmarks/long_docs.py [--data ../shared/datasets/beir/scifact] [--reranker models/scifact-reranker]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import sys
import time
from datetime import date
from pathlib import Path

from machine import machine

from semsearch import (
    Document,
    Reranker,
    SearchEngine,
    read_corpus,
    read_qrels,
    read_queries,
)
from semsearch.index.layout import folder_size
from semsearch.index.update import lexical_from_texts

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"
VARIANTS = {"truncation": {"passages": "off"}, "passages-256": {"passage_tokens": 256},
            "passages-128": {"passage_tokens": 128}}


def long_scifact(docs: list[Document], qrels: dict[str, dict[str, dict[str, int]]], group: int, seed: int):
    """The grouped corpus and each split's qrels mapped onto it (deterministic for a seed)."""
    order = list(docs)
    random.Random(seed).shuffle(order)
    grouped, owner = [], {}
    for g in range(0, len(order), group):
        members = order[g:g + group]
        gid = f"group-{g // group:04d}"
        grouped.append(Document(gid, "\n\n".join(d.text for d in members), members[0].title,
                                {"abstracts": [d.id for d in members]}))
        owner.update({d.id: gid for d in members})
    mapped = {}
    for split, judged in qrels.items():
        mapped[split] = {}
        for q, rel in judged.items():
            out: dict[str, int] = {}
            for doc, grade in rel.items():
                if grade > 0 and doc in owner:
                    out[owner[doc]] = max(out.get(owner[doc], 0), grade)
            if out:
                mapped[split][q] = out
    return grouped, mapped


def build(docs, path: Path, options: dict, reuse: bool = False) -> tuple[SearchEngine, float]:
    if reuse:
        return SearchEngine.open(path), None
    started = time.perf_counter()
    engine = SearchEngine.build(docs, path, overwrite=True, progress=False, **options)
    return engine, time.perf_counter() - started


def with_lexical_unit(engine: SearchEngine, unit: str) -> SearchEngine:
    """The engine with its BM25 side rebuilt in memory over ``unit`` (the files stay as built)."""
    if engine.lexical.unit == unit:
        return engine
    config = {**engine.lexical.config, "unit": unit}
    engine.lexical = lexical_from_texts(*engine.store.texts(unit), config, engine.generation)
    engine.manifest = dataclasses.replace(engine.manifest, lexical=config)
    return engine


def evaluate(engine: SearchEngine, queries, qrels_train, qrels_test, reranker, candidates: int,
             best2: bool) -> dict:
    """Dense, then per lexical unit: fusion tuned on train, hybrid on test; + rerank on the better unit."""
    out = {"dense": engine.evaluate(queries, qrels_test, mode="dense").to_dict()}
    units = ("document", "passage") if engine.store.id_bits and engine.manifest.vector_count > len(engine) else \
        ("document",)
    tuned = {}
    for unit in units:
        with_lexical_unit(engine, unit)
        fusion = engine.tune_fusion(queries, qrels_train, save=False)
        engine.manifest = dataclasses.replace(engine.manifest, fusion=fusion.to_dict())
        tuned[unit] = fusion.tuned_on["ndcg_at_10"]
        out[f"lexical[{unit}]"] = engine.evaluate(queries, qrels_test, mode="lexical").to_dict()
        out[f"hybrid[{unit}]"] = {**engine.evaluate(queries, qrels_test, mode="hybrid").to_dict(),
                                  "fusion": fusion.to_dict()}
    unit = max(tuned, key=tuned.get)
    out["lexical_unit_chosen_on_train"] = unit
    out["train_ndcg_by_unit"] = tuned
    with_lexical_unit(engine, unit)
    engine.manifest = dataclasses.replace(engine.manifest, fusion=out[f"hybrid[{unit}]"]["fusion"])
    if reranker is not None:
        for count in (1, 2) if best2 else (1,):
            reranker.passages = count
            t0 = time.perf_counter()
            result = engine.evaluate(queries, qrels_test, mode="hybrid", reranker=reranker, candidates=candidates)
            out[f"hybrid+rerank[best {count}]"] = {**result.to_dict(), "seconds": round(time.perf_counter() - t0, 1)}
        reranker.passages = 1
    return out


def table(name: str, results: dict) -> str:
    lines = [f"\n### {name}\n", "| index | passages | size MB | build s | dense | BM25 (doc / passage) | hybrid (doc / passage) "
             "| hybrid + rerank | R@100 dense / hybrid |", "|---|---|---|---|---|---|---|---|---|"]
    for variant, r in results.items():
        e = r["eval"]
        lex = " / ".join(f"{e[k]['ndcg@10']:.4f}" for k in ("lexical[document]", "lexical[passage]") if k in e)
        hyb = " / ".join(f"{e[k]['ndcg@10']:.4f}" for k in ("hybrid[document]", "hybrid[passage]") if k in e)
        rr = " / ".join(f"{e[k]['ndcg@10']:.4f}" for k in e if k.startswith("hybrid+rerank"))
        unit = e["lexical_unit_chosen_on_train"]
        built = "-" if r["build_seconds_median"] is None else f"{r['build_seconds_median']:.0f}"
        lines.append(f"| {variant} | {r['passages']} | {r['size_bytes'] / 1e6:.1f} | {built} "
                     f"| {e['dense']['ndcg@10']:.4f} | {lex} | {hyb} | {rr} ({unit}) | "
                     f"{e['dense']['recall@100']:.4f} / {e[f'hybrid[{unit}]']['recall@100']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "indexes" / "long-docs-bench",
                        help="indexes are built here (removed at the end unless --keep)")
    parser.add_argument("--reranker", type=Path, default=ROOT / "models" / "scifact-reranker",
                        help="a reranker trained by benchmarks/rerank_scifact.py; 'none' skips reranking")
    parser.add_argument("--rerank-precision", default="auto")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--build-rounds", type=int, default=2, help="builds of each plain-SciFact variant")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="plain,long")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="open the indexes already in --work (kept by --keep) instead of building them: "
                             "quality only, no build times")
    parser.add_argument("--best2", default="long", choices=("none", "long", "all"),
                        help="where the reranker also reads the best 2 passages of each hit")
    parser.add_argument("--rerank-max-length", type=int, default=None, help="default: the reranker's own")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    docs = list(read_corpus(args.data / "corpus.jsonl"))
    queries = read_queries(args.data / "queries.jsonl")
    qrels = {s: read_qrels(args.data / "qrels" / f"{s}.tsv") for s in ("train", "test")}
    reranker = None if str(args.reranker) == "none" else Reranker(args.reranker, precision=args.rerank_precision,
                                                                  max_length=args.rerank_max_length)
    report = {"machine": machine(), "date": date.today().isoformat(), "candidates": args.candidates,
              "reranker": reranker.config() if reranker else None, "seed": args.seed, "group": args.group}
    args.work.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    if "plain" in parts:
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        engines = {}
        for round_ in range(args.build_rounds):  # interleaved: drift hits every variant alike
            for variant, options in VARIANTS.items():
                if round_ and (variant == "passages-128" or args.reuse):
                    continue  # no build-time goal for 128; one build is enough for its quality
                engine, seconds = build(docs, args.work / f"plain-{variant}", options, args.reuse)
                times[variant].append(seconds)
                print(f"plain {variant} round {round_}: {seconds or 0:.1f} s, {engine.manifest.vector_count} passages",
                      file=sys.stderr, flush=True)
                engines[variant] = engine
        report["plain"] = {}
        for variant, engine in engines.items():
            report["plain"][variant] = {
                "passages": engine.manifest.vector_count, "documents": len(engine),
                "build_seconds": [None if t is None else round(t, 1) for t in times[variant]],
                "build_seconds_median": None if args.reuse else sorted(times[variant])[len(times[variant]) // 2],
                "size_bytes": folder_size(engine.path),
                "eval": evaluate(engine, queries, qrels["train"], qrels["test"], reranker, args.candidates,
                                 args.best2 == "all" and variant != "truncation")}
            print(json.dumps({variant: report["plain"][variant]["eval"]}), file=sys.stderr, flush=True)
        base = report["plain"]["truncation"]["build_seconds"]
        report["plain_build_ratio_vs_truncation"] = {} if args.reuse else {
            v: round(sum(r["build_seconds"]) / len(r["build_seconds"]) / (sum(base) / len(base)), 3)
            for v, r in report["plain"].items()}
    if "long" in parts:
        grouped, mapped = long_scifact(docs, qrels, args.group, args.seed)
        report["long"] = {"documents": len(grouped), "judged_test_queries": len(mapped["test"])}
        for variant, options in VARIANTS.items():
            engine, seconds = build(grouped, args.work / f"long-{variant}", options, args.reuse)
            print(f"long {variant}: {seconds or 0:.1f} s, {engine.manifest.vector_count} passages", file=sys.stderr,
                  flush=True)
            report["long"][variant] = {
                "passages": engine.manifest.vector_count, "documents": len(engine),
                "build_seconds": [None if seconds is None else round(seconds, 1)],
                "build_seconds_median": seconds, "size_bytes": folder_size(engine.path),
                "eval": evaluate(engine, queries, mapped["train"], mapped["test"], reranker, args.candidates,
                                 args.best2 != "none" and variant != "truncation")}
            print(json.dumps({variant: report["long"][variant]["eval"]}), file=sys.stderr, flush=True)
    if "plain" in report:
        print(table("SciFact (test, 300 queries)", report["plain"]))
        print("build time / truncation:", report["plain_build_ratio_vs_truncation"])
    if "long" in report:
        print(table(f"Long SciFact ({report['long']['documents']} documents of {args.group} abstracts)",
                    {k: v for k, v in report["long"].items() if isinstance(v, dict)}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
