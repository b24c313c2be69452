"""The tables and plot of ``benchmarks/peers.py``, made from its results file (one JSON line per measurement).

Per system and mode: quality from the first round; every timing is the median over rounds of that round's
figure (p50 / p95 of its queries, the build's wall time, the cold process's wall time), with the range
over rounds beside the build and cold medians; ratios are to the do-it-yourself baseline (``diy``, dense).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

LABELS = {"diy": "sentence-transformers + faiss", "txtai": "txtai", "chroma": "Chroma", "bm25s": "bm25s",
          "fastembed": "fastembed + faiss", "semsearch": "semsearch (defaults)",
          "semsearch-int8": "semsearch (int8)"}


#: Names on the plot, where space is short.
SHORT = {"diy": "ST + faiss", "fastembed": "fastembed", "semsearch": "semsearch defaults",
         "semsearch-int8": "semsearch int8"}


def label(system: str, summary_systems: dict) -> str:
    """The system's name, with the precision and backend a semsearch build ran (int8's backend is chosen per
    CPU; rows from before it was recorded ran int8 on OpenVINO)."""
    variant = (summary_systems.get(system) or {}).get("variant")
    if system == "semsearch-int8" and not variant:
        variant = "int8 on openvino"
    return f"semsearch ({'defaults, ' if system == 'semsearch' else ''}{variant})" if variant else LABELS[system]


def _median(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def summarize(rows: list[dict]) -> dict:
    """{corpus: {"systems": {system: {...}}, "modes": [(system, mode, {...}), ...]}}"""
    out: dict = {}
    for corpus in sorted({r["corpus"] for r in rows}):
        mine = [r for r in rows if r["corpus"] == corpus]
        systems, modes = {}, []
        for system in LABELS:
            rs = [r for r in mine if r["system"] == system]
            if not rs:
                continue
            builds = [r for r in rs if r["task"] == "build"]
            colds = [r for r in rs if r["task"] == "cold"]
            queries = [r for r in rs if r["task"] == "query"]
            crash = next((r for r in rs if r["task"] == "crash"), None)
            systems[system] = {
                "rounds": len(builds), "build_s": _median([r["seconds"] for r in builds]),
                "build_range": [min(r["seconds"] for r in builds), max(r["seconds"] for r in builds)] if builds else None,
                "docs_per_s": _median([r["docs_per_s"] for r in builds]),
                "build_rss_mb": max((r["rss_mb"] for r in builds), default=float("nan")),
                "query_rss_mb": max((r["rss_mb"] for r in queries), default=float("nan")),
                "disk_mb": _median([r["disk_mb"] for r in builds]),
                "cold_s": _median([r["wall_s"] for r in colds]),
                "cold_range": [min(r["wall_s"] for r in colds), max(r["wall_s"] for r in colds)] if colds else None,
                "crash": crash, "variant": next((r["variant"] for r in builds if r.get("variant")), None)}
            quality = next((r.get("quality") for r in queries if r.get("quality")), {}) or {}
            for mode in (queries[0]["latency_ms"] if queries else {}):
                p50 = _median([np.percentile(r["latency_ms"][mode], 50) for r in queries if r["latency_ms"][mode]])
                p95 = _median([np.percentile(r["latency_ms"][mode], 95) for r in queries if r["latency_ms"][mode]])
                modes.append((system, mode, {"p50_ms": p50, "p95_ms": p95, **quality.get(mode, {}),
                                             "timed_queries": sum(len(r["latency_ms"][mode]) for r in queries)}))
        out[corpus] = {"systems": systems, "modes": modes}
    return out


def _crash_words(crash: dict | None, system: str) -> str:
    if crash is None:
        return "n/a (encoder only)" if system == "fastembed" else "not run yet"
    if crash.get("finished"):
        return "not killed (the add finished first)"
    if not crash.get("reopened"):
        return f"does not reopen ({crash.get('error', '')[:80]})"
    if not crash.get("searchable"):
        return f"reopens, search fails ({crash.get('error', '')[:80]})"
    return f"reopens; {crash['found']} / {crash['acknowledged']} acknowledged found"


def _with_range(median: float, span: list | None, digits: int) -> str:
    """``median (low-high)``; a dash where the measurement has not run yet (a run in progress)."""
    if span is None:
        return "-"
    return f"{median:.{digits}f} ({span[0]:.{digits}f}-{span[1]:.{digits}f})"


def tables(summary: dict) -> str:
    lines = []
    for corpus, s in summary.items():
        base = s["systems"].get("diy")
        base_p50 = next((m["p50_ms"] for sy, mo, m in s["modes"] if sy == "diy"), float("nan"))
        judged = any("ndcg10" in m for _, _, m in s["modes"])
        lines += [f"\n### {corpus}\n", "| system | mode | " + ("nDCG@10 | Recall@100 | " if judged else "")
                  + "query p50 ms | p95 ms | p50 vs baseline |", "|---|---|" + ("---|---|" if judged else "")
                  + "---|---|---|"]
        for system, mode, m in s["modes"]:
            quality = f"{m['ndcg10']:.4f} | {m['recall100']:.4f} | " if judged else ""
            lines.append(f"| {label(system, s['systems'])} | {mode} | {quality}{m['p50_ms']:.1f} | {m['p95_ms']:.1f} | "
                         f"{m['p50_ms'] / base_p50:.2f}x |")
        lines += ["", "| system | build s (range) | docs/s | build speed vs baseline | cold query s (range) | "
                  "peak RSS build / query MB | disk MB | kill -9 during an add |", "|---|---|---|---|---|---|---|---|"]
        for system, v in s["systems"].items():
            speed = base["build_s"] / v["build_s"] if base else float("nan")
            lines.append(f"| {label(system, s['systems'])} | {_with_range(v['build_s'], v['build_range'], 1)} | "
                         f"{v['docs_per_s']:.0f} | {speed:.2f}x | {_with_range(v['cold_s'], v['cold_range'], 2)} | "
                         f"{v['build_rss_mb']:.0f} / "
                         f"{v['query_rss_mb']:.0f} | {v['disk_mb']:.1f} | {_crash_words(v['crash'], system)} |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [(sy, mo, m) for sy, mo, m in summary.get("scifact", {}).get("modes", []) if "ndcg10" in m]
    if not modes:
        return
    fig, ax = plt.subplots(figsize=(9.5, 5))
    marks = {"dense": "o", "hybrid": "D", "rerank": "*", "lexical": "s"}
    peers = iter(plt.get_cmap("tab10")([0, 2, 4, 6, 7, 8, 9]))
    ours = iter(plt.get_cmap("autumn")([0.0, 0.45]))
    colors: dict[str, object] = {}
    for system, mode, m in modes:  # a colour per system, a marker per mode, named in the legend
        if system not in colors:
            colors[system] = next(ours if system.startswith("semsearch") else peers)
        ax.scatter(m["p50_ms"], m["ndcg10"], color=colors[system], marker=marks.get(mode, "o"),
                   s=90 if mode == "rerank" else 45, label=f"{SHORT.get(system, system)}, {mode}",
                   edgecolors="black", linewidths=0.4)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xscale("log")
    ax.set_xlabel("query latency p50, ms (one query at a time, warm process; log scale)")
    ax.set_ylabel("nDCG@10, SciFact test (300 queries)")
    ax.set_title("Quality against query latency, same model and machine (red / orange: semsearch)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def report(args, versions: dict) -> None:
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    summary = summarize(rows)
    print(tables(summary))
    print("\nversions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), file=sys.stderr)
    plot(summary, args.plot)
    if args.json:
        args.json.write_text(json.dumps({"versions": versions, "machine": rows[-1]["machine"] if rows else None,
                                         "summary": summary, "rows": rows}, indent=1, default=str) + "\n")
