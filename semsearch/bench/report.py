"""``semsearch bench``: one retrieval report — quality, speed, memory, size and plots — for a BEIR dataset.

:func:`run_bench` builds an index of the dataset's corpus (dense + BM25), tunes the
hybrid fusion on another split when it has one (``train`` by default; never on the
split it reports), then runs every judged query of the reported split through each
configuration — ``dense``, ``lexical``, ``hybrid`` and, given a reranker,
``hybrid+rerank`` — one query at a time, timing each. The three first-stage
configurations are interleaved query by query (the machine's speed drifts); the
reranked one runs after them. Quality comes from those same runs.

Writes to the report folder: ``report.md`` (the table), ``results.json`` (everything,
including per-k recall), ``quality_vs_latency.png``, ``recall_at_k.png`` and the
index itself (``index/``).

>>> report = run_bench("../shared/datasets/beir/scifact", "reports/scifact")   # doctest: +SKIP
>>> report["configs"][0]["ndcg@10"]                                           # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..corpus.readers import read_corpus, read_qrels, read_queries
from ..encode.cpu import cpu_flags, cpu_model
from ..encode.embedder import Embedder
from ..errors import BadInput
from ..index.engine import SearchEngine
from ..index.layout import DOCS_FILE, LEXICAL_DIR, VECTORS_FILE
from ..metrics import evaluate_run, recall_at_k
from ..rerank.reranker import Reranker
from ..version import __version__

__all__ = ["run_bench", "PeakMemory"]

log = logging.getLogger(__name__)

FIRST_STAGE = ("dense", "lexical", "hybrid")
RECALL_KS = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100)


class PeakMemory:
    """Peak resident memory (MiB) of this process while the ``with`` block runs, sampled every 10 ms
    from ``/proc/self/statm`` (elsewhere: the process's lifetime peak from ``getrusage``)."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.peak_mib = interval, 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss_mib(self) -> float:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page / 2**20
        except OSError:  # not Linux: the lifetime peak (ru_maxrss is KiB on Linux, bytes on macOS)
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return peak / 2**20 if sys.platform == "darwin" else peak / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self._rss_mib())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self.peak_mib = self._rss_mib()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self._rss_mib())


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_dataset(data: str | os.PathLike, split: str = "test", output: str | os.PathLike | None = None,
                  overwrite: bool = False) -> None:
    """:class:`BadInput` unless ``data`` is a BEIR folder with qrels for ``split`` and ``output`` a folder the
    report may be written to (checked before models load)."""
    _beir_files(Path(data), split)
    if output is not None:
        _check_output(Path(output), overwrite)


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise BadInput(f"{output} is a file; the report is a folder")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise BadInput(f"{output} exists and is not empty; pass overwrite=True (CLI: --overwrite) to replace it")


def _beir_files(data: Path, split: str) -> tuple[Path, Path, Path]:
    corpus, queries, qrels = data / "corpus.jsonl", data / "queries.jsonl", data / "qrels" / f"{split}.tsv"
    for f in (corpus, queries, qrels):
        if not f.is_file():
            raise BadInput(f"{data} is not a BEIR dataset folder with split {split!r}: {f} is missing")
    return corpus, queries, qrels


def run_bench(
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    split: str = "test",
    reranker: Reranker | None = None,
    candidates: int = 20,
    tune_split: str | None = "auto",
    embedder: Embedder | None = None,
    factory: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark and write the report folder; returns what ``results.json`` holds.

    ``tune_split``: the qrels split the hybrid fusion is tuned on; ``"auto"``: ``train`` when the
    dataset has it and it is not ``split``; ``None``: no tuning (plain RRF).
    """
    from tqdm.auto import tqdm

    data, output = Path(data), Path(output)
    corpus_file, queries_file, qrels_file = _beir_files(data, split)
    if candidates < 1:
        raise BadInput(f"candidates must be a positive integer, got {candidates}")
    if tune_split == "auto":
        tune_split = "train" if split != "train" and (data / "qrels" / "train.tsv").is_file() else None
    if tune_split is not None:
        if tune_split == split:
            raise BadInput(f"tuning the fusion on the split it reports ({split}) would overstate it")
        if not (data / "qrels" / f"{tune_split}.tsv").is_file():
            raise BadInput(f"{data} has no qrels for the tuning split {tune_split!r}")
    _check_output(output, overwrite)
    output.mkdir(parents=True, exist_ok=True)
    queries, qrels = read_queries(queries_file), read_qrels(qrels_file)
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise BadInput(f"{len(missing)} judged queries are not in {queries_file} (first: {missing[0]!r})")
    qids = [q for q, grades in qrels.items() if any(g >= 1 for g in grades.values())]
    if not qids:
        raise BadInput(f"{qrels_file} judges no document relevant")

    with PeakMemory() as build_mem:
        built = SearchEngine.build(read_corpus(corpus_file), output / "index", embedder=embedder, factory=factory,
                                   overwrite=True, progress=progress)
    built.close()
    engine = SearchEngine.open(output / "index", embedder=built.embedder)  # searched as a user would open it
    build = engine.manifest.build
    tuned = None
    if tune_split is not None:
        engine.tune_fusion(queries, read_qrels(data / "qrels" / f"{tune_split}.tsv"))
        tuned = engine.fusion.to_dict()

    texts = [queries[q] for q in qids]
    engine.search_many(texts[:1], k=10, mode="hybrid")  # warm-up: first model call, caches
    runs: dict[str, dict[str, list[str]]] = {c: {} for c in FIRST_STAGE}
    latencies: dict[str, list[float]] = {c: [] for c in FIRST_STAGE}
    first_hits: dict[str, list] = {}
    with PeakMemory() as search_mem:
        for n, (qid, text) in enumerate(tqdm(list(zip(qids, texts)), desc="searching", unit="query",
                                             file=sys.stderr, disable=not progress, dynamic_ncols=True)):
            order = FIRST_STAGE[n % 3:] + FIRST_STAGE[: n % 3]  # rotate who goes first
            for config in order:
                t0 = time.perf_counter()
                hits = engine.first_stage([text], 100, config)[0]
                latencies[config].append(time.perf_counter() - t0)
                runs[config][qid] = [h.id for h in hits]
                if config == "hybrid":
                    first_hits[qid] = hits
    memory = {c: search_mem.peak_mib for c in FIRST_STAGE}
    configs = list(FIRST_STAGE)
    if reranker is not None:
        name = "hybrid+rerank"
        configs.append(name)
        runs[name], latencies[name] = {}, []
        reranker.rerank(texts[:1], [first_hits[qids[0]][:candidates]], candidates)  # warm-up
        with PeakMemory() as rerank_mem:
            for qid, text in tqdm(list(zip(qids, texts)), desc="reranking", unit="query", file=sys.stderr,
                                  disable=not progress, dynamic_ncols=True):
                t0 = time.perf_counter()
                hits = engine.first_stage([text], 100, "hybrid")[0]
                top = reranker.rerank([text], [hits[:candidates]], candidates)[0]
                latencies[name].append(time.perf_counter() - t0)
                runs[name][qid] = [h.id for h in top] + [h.id for h in hits[candidates:]]
        memory[name] = rerank_mem.peak_mib

    index = output / "index"
    sizes = {"dense": _size(index / VECTORS_FILE), "lexical": _size(index / LEXICAL_DIR),
             "store": _size(index / DOCS_FILE)}
    documents = engine.manifest.documents
    build_s = {"dense": build["dense_seconds"], "lexical": build["lexical_seconds"],
               "hybrid": build["dense_seconds"] + build["lexical_seconds"]}
    build_s["hybrid+rerank"] = build_s["hybrid"]
    rows = []
    for config in configs:
        result = evaluate_run(runs[config], qrels)
        ms = [1000 * t for t in latencies[config]]
        parts = {"dense": ("dense",), "lexical": ("lexical",)}.get(config, ("dense", "lexical"))
        rows.append({
            "config": config,
            **result.to_dict(),
            "recall_at_k": {str(k): statistics.mean(recall_at_k(runs[config][q], qrels[q], k) for q in qids)
                            for k in RECALL_KS},
            "latency_ms_p50": float(np.percentile(ms, 50)),
            "latency_ms_p95": float(np.percentile(ms, 95)),
            "build_s": build_s[config],
            "docs_per_s": documents / build_s[config] if build_s[config] > 0 else None,
            "peak_rss_mib": memory[config],
            "index_bytes": sizes["store"] + sum(sizes[p] for p in parts),
        })
    report = {
        "dataset": str(data), "split": split, "documents": documents, "queries": len(qids),
        "tuned_fusion": tuned, "tune_split": tune_split,
        "reranker": reranker.config() if reranker is not None else None, "candidates": candidates,
        "embedder": engine.manifest.embedder, "factory": engine.manifest.factory,
        "build": {**build, "peak_rss_mib": build_mem.peak_mib},
        "machine": {"cpu": cpu_model(), "cpu_flags": sorted(cpu_flags()), "cpus": os.cpu_count(),
                    "torch_threads": _torch_threads(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "semsearch_version": __version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "configs": rows,
    }
    engine.close()
    (output / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (output / "report.md").write_text(_markdown(report), encoding="utf-8")
    _plots(report, output)
    return report


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _markdown(r: dict[str, Any]) -> str:
    fusion = r["tuned_fusion"]
    fusion_line = (f"hybrid fusion tuned on the `{r['tune_split']}` split: {fusion['method']}, dense weight "
                   f"{fusion['weight']:.2f}" if fusion else "hybrid fusion: plain reciprocal rank fusion (k = 60)")
    lines = [
        f"# semsearch bench: {Path(r['dataset']).name} ({r['split']} split)",
        "",
        f"{r['documents']} documents, {r['queries']} judged queries; model {r['embedder'].get('model')} "
        f"({r['embedder'].get('pooling')} pooling), FAISS {r['factory']}; {fusion_line}."
        + (f" Reranker {r['reranker']['model']} on the top {r['candidates']}." if r["reranker"] else ""),
        f"Machine: {r['machine'].get('cpu', '?')}, {r['machine']['cpus']} CPUs, {r['machine']['platform']}; "
        f"semsearch {r['semsearch_version']}, "
        f"{r['date']}. One run; each query searched alone and timed.",
        "",
        "| configuration | nDCG@10 | MRR@10 | Recall@100 | MAP@100 | build s | docs/s | latency p50 ms "
        "| latency p95 ms | peak RSS MiB | index on disk MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["configs"]:
        lines.append(
            f"| {c['config']} | {c['ndcg@10']:.4f} | {c['mrr@10']:.4f} | {c['recall@100']:.4f} | {c['map@100']:.4f} "
            f"| {c['build_s']:.1f} | {_num(c['docs_per_s'])} | {c['latency_ms_p50']:.1f} | {c['latency_ms_p95']:.1f} "
            f"| {c['peak_rss_mib']:.0f} | {c['index_bytes'] / 2**20:.1f} |")
    lines += [
        "",
        "- build s / docs/s: the time the index build spent on that configuration's side(s) "
        "(dense: embedding + FAISS; lexical: tokenising + BM25); the whole build took "
        f"{r['build']['seconds']:.1f} s (peak RSS {r['build']['peak_rss_mib']:.0f} MiB).",
        "- peak RSS: of the bench process while the configuration's queries ran. The index is opened once with "
        "both sides, so dense, lexical and hybrid share that baseline; the rerank row adds the cross-encoder.",
        "- index on disk: the files the configuration reads (document store included).",
        "- Recall@100 of the reranked row: the reranked top candidates followed by the rest of the first "
        "stage's top 100.",
        "",
        "![quality vs latency](quality_vs_latency.png)",
        "![recall@k](recall_at_k.png)",
        "",
    ]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _plots(r: dict[str, Any], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in r["configs"]:
        ax.scatter(c["latency_ms_p50"], c["ndcg@10"], s=40)
        ax.annotate(c["config"], (c["latency_ms_p50"], c["ndcg@10"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.12)  # room for the labels
    ax.set_xlabel("query latency p50 (ms, log scale)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"{Path(r['dataset']).name} {r['split']}: quality vs latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output / "quality_vs_latency.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in r["configs"]:
        ks = [int(k) for k in c["recall_at_k"]]
        ax.plot(ks, list(c["recall_at_k"].values()), marker="o", markersize=3, label=c["config"])
    ax.set_xscale("log")
    ax.set_xlabel("k (log scale)")
    ax.set_ylabel("Recall@k")
    ax.set_title(f"{Path(r['dataset']).name} {r['split']}: recall@k")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output / "recall_at_k.png", dpi=120)
    plt.close(fig)
