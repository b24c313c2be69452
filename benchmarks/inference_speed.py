"""Fast CPU inference: semsearch's precisions against sentence-transformers, speed and agreement in one run.

Bi-encoder (all-MiniLM-L6-v2), on the same texts, interleaved round by round:
sentence-transformers ``encode`` (batch 32, the anchor) vs semsearch fp32 / bf16 (torch),
fp32 / int8 (ONNX Runtime), bf16 / int8 (OpenVINO). Reported: sentences/s and its ratio to the anchor
(median over rounds of the per-round ratio), cosine to semsearch fp32 per text, top-10 neighbour overlap
with fp32 among the sentences.

SciFact (test split): the corpus is embedded by every variant, chunk by chunk in turn (docs/s and
ratio), the test queries too; nDCG@10 of exact search for every (corpus precision, query precision)
pair, which is what decides whether vectors of two precisions may share an index.

OpenVINO variants (bf16; static int8, calibrated on semsearch's shipped texts, not on SciFact) need
``pip install 'semsearch[openvino]'``. ``openvino-int8-bf16-hint`` is the static int8 model as it ran before
issue 31 (its floating-point layers compiled with OpenVINO's bf16 hint; now f32), on CPUs with native
bf16, so that the fix's speed cost and what it changes in agreement are measured in the same run.
Every variant reports its min cosine to fp32 and the share of texts below 0.95 next to its speed,
and the report starts with the CPU (``lscpu`` model and flags): agreement depends on the CPU's kernels.

Reranker (a cross-encoder trained by `semsearch train-reranker`): top 20 of the fp32 dense search for
each test query, scored query by query, interleaved: sentence-transformers ``CrossEncoder.predict`` vs
semsearch at each precision; pairs/s, p50/p95 latency, Pearson correlation of scores with fp32, and
nDCG@10 after reranking (blended with the first stage as the reranker was tuned).

End-to-end single query, in process with models loaded: encode one query + exact search, and + rerank
top 20, p50 per variant.

    python benchmarks/inference_speed.py [--data ../shared/datasets/beir/scifact] \
        [--reranker models/scifact-reranker] [--output benchmarks/results/inference]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from machine import (  # benchmarks/machine.py (the script's folder is on the path)
    machine,
    machine_line,
)
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"
VARIANTS = {"fp32": ("fp32", "torch"), "bf16": ("bf16", "torch"), "onnx-fp32": ("fp32", "onnx"),
            "int8": ("int8", "onnx"), "openvino-bf16": ("bf16", "openvino"), "openvino-int8": ("int8", "openvino")}
ANCHOR = "sentence-transformers"
OLD_HINT = "openvino-int8-bf16-hint"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reranker", type=Path, default=ROOT / "models" / "scifact-reranker",
                        help="a cross-encoder folder (train one with `semsearch train-reranker`)")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=256, help="corpus documents per interleaved chunk")
    parser.add_argument("--rerank-queries", type=int, default=100, help="test queries for the reranker part")
    parser.add_argument("--e2e-queries", type=int, default=50, help="test queries for the end-to-end latency")
    parser.add_argument("--max-docs", type=int, default=None, help="first N corpus documents (smoke runs only)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "inference")
    args = parser.parse_args()
    for need in (args.data / "corpus.jsonl", args.reranker / "config.json"):
        if not need.exists():
            sys.exit(f"missing {need}")
    import logging

    import torch

    torch.set_num_threads(2)
    logging.getLogger("semsearch.rerank").setLevel(logging.ERROR)  # SciFact pairs are mostly cut at 192 tokens
    from semsearch import read_corpus, read_qrels, read_queries

    docs = list(read_corpus(args.data / "corpus.jsonl"))[: args.max_docs]
    queries = read_queries(args.data / "queries.jsonl")
    qrels = read_qrels(args.data / "qrels" / "test.tsv")
    result = {"machine": machine(), "torch_threads": torch.get_num_threads()}
    encoders = _encoders()
    result["encode"] = bench_encode(encoders, _sentences(docs, args.sentences), args.rounds)
    result["scifact"], dense_top, corpus = bench_scifact(encoders, docs, queries, qrels, args.chunk)
    rerankers = _rerankers(args.reranker)
    texts = {d.id: d.embedding_text for d in docs}
    qids = [q for q in qrels if q in queries][: args.rerank_queries]
    result["rerank"] = bench_rerank(rerankers, qids, queries, texts, dense_top, qrels)
    result["end_to_end"] = bench_end_to_end(encoders, rerankers, qids[: args.e2e_queries], queries, texts, corpus,
                                            [d.id for d in docs])
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    report = _markdown(result)
    (args.output / "report.md").write_text(report)
    _plot(result, args.output / "speed_vs_quality.png")
    print(report)


# --- models ----------------------------------------------------------------------------------


def _encoders() -> dict:
    from sentence_transformers import SentenceTransformer

    from semsearch import TransformerEmbedder
    from semsearch.encode.models import DEFAULT_MODEL, model_folder

    st = SentenceTransformer(str(model_folder(DEFAULT_MODEL)), device="cpu")
    out = {ANCHOR: lambda texts: st.encode(texts, batch_size=32, normalize_embeddings=True)}
    for name, (precision, backend) in VARIANTS.items():
        emb = TransformerEmbedder(precision=precision, backend=backend)
        out[name] = lambda texts, emb=emb: emb.encode(texts, batch_size=32)
    old = _old_hint(TransformerEmbedder(precision="int8", backend="openvino"))
    if old is not None:
        out[OLD_HINT] = lambda texts, emb=old: emb.encode(texts, batch_size=32)
    return out


def _old_hint(model):
    """``model`` (an int8 OpenVINO embedder or reranker, freshly made) with its runner recompiled the way
    semsearch compiled it before issue 31 (bf16 hint for the floating-point layers), where bf16 is native;
    else None. Reaches into the model's runtime on purpose: the old setting is gone from the library."""
    from semsearch.encode.openvino import OpenVinoRunner
    from semsearch.encode.precision import native_bf16

    if not native_bf16("openvino"):
        return None
    import openvino as ov

    path = model._rt.runner.path
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "bf16",
                                                          "INFERENCE_NUM_THREADS": torch_threads(),
                                                          "PERFORMANCE_HINT": "LATENCY"})
    model._rt.runner = OpenVinoRunner(compiled, path)
    return model


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _rerankers(folder: Path) -> dict:
    from sentence_transformers import CrossEncoder

    from semsearch import Reranker

    out = {}
    for name, (precision, backend) in VARIANTS.items():
        out[name] = Reranker(folder, precision=precision, backend=backend)
    old = _old_hint(Reranker(folder, precision="int8", backend="openvino"))
    if old is not None:
        out[OLD_HINT] = old
    import torch

    ce = CrossEncoder(str(folder), device="cpu", max_length=out["fp32"].max_length,
                      activation_fn=torch.nn.Identity())
    return {ANCHOR: lambda pairs: np.asarray(ce.predict(pairs, batch_size=32, show_progress_bar=False)),
            **{n: (lambda pairs, r=r: r.score(pairs).scores) for n, r in out.items()}, "_blend": out["fp32"]}


# --- parts -----------------------------------------------------------------------------------


def _sentences(docs, n: int) -> list[str]:
    sents = [s for d in docs for s in re.split(r"(?<=[.!?])\s+", d.text) if len(s) > 20]
    rng = np.random.default_rng(0)
    return [sents[i] for i in rng.choice(len(sents), n, replace=False)]


def bench_encode(encoders: dict, texts: list[str], rounds: int) -> dict:
    times = {k: [] for k in encoders}
    vectors = {}
    for r in tqdm(range(rounds), desc="encode rounds", file=sys.stderr):
        names = list(encoders)
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate who goes first
            t = time.perf_counter()
            vectors[name] = np.asarray(encoders[name](texts), dtype=np.float32)
            times[name].append(time.perf_counter() - t)
    ref = vectors["fp32"]
    ref_top = _top10(ref)
    out = {"texts": len(texts), "rounds": rounds, "variants": {}}
    for name, ts in times.items():
        ratios = [a / t for a, t in zip(times[ANCHOR], ts)]
        cos = (vectors[name] * ref).sum(1)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref_top, _top10(vectors[name]))])
        out["variants"][name] = {"texts_per_s": len(texts) / float(np.median(ts)), "ratio": float(np.median(ratios)),
                                 "ratio_min": float(min(ratios)), "ratio_max": float(max(ratios)),
                                 "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                                 "below_095": float((cos < 0.95).mean()), "top10_overlap": float(overlap)}
    return out


def _top10(v: np.ndarray) -> np.ndarray:
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :10]


def bench_scifact(encoders: dict, docs, queries, qrels, chunk: int):
    from semsearch.metrics import ndcg_at_k

    names = list(encoders)
    corpus = {n: [] for n in names}
    seconds = dict.fromkeys(names, 0.0)
    texts = [d.embedding_text for d in docs]
    for c, start in enumerate(tqdm(range(0, len(texts), chunk), desc="SciFact corpus chunks", file=sys.stderr)):
        part = texts[start : start + chunk]
        for name in names[c % len(names):] + names[: c % len(names)]:
            t = time.perf_counter()
            corpus[name].append(np.asarray(encoders[name](part), dtype=np.float32))
            seconds[name] += time.perf_counter() - t
    corpus = {n: np.concatenate(v) for n, v in corpus.items()}
    qids = [q for q in qrels if q in queries]
    qvecs = {n: np.asarray(encoders[n]([queries[q] for q in qids]), dtype=np.float32) for n in names}
    ids = np.array([d.id for d in docs])
    ndcg = {}
    for cn in names:
        for qn in names:
            top = np.argsort(-(qvecs[qn] @ corpus[cn].T), axis=1)[:, :10]
            ndcg[f"{cn}|{qn}"] = float(np.mean([ndcg_at_k(list(ids[t]), qrels[q], 10) for q, t in zip(qids, top)]))
    dense_top = {q: list(ids[t]) for q, t in zip(qids, np.argsort(-(qvecs["fp32"] @ corpus["fp32"].T), axis=1)[:, :20])}
    out = {"documents": len(docs), "queries": len(qids), "variants": {}, "ndcg_matrix": ndcg}
    for n in names:
        cos = (corpus[n] * corpus["fp32"]).sum(1)
        out["variants"][n] = {"docs_per_s": len(docs) / seconds[n], "ratio": seconds[ANCHOR] / seconds[n],
                              "ndcg@10": ndcg[f"{n}|{n}"], "cosine_min": float(cos.min()),
                              "cosine_mean": float(cos.mean()), "below_095": float((cos < 0.95).mean())}
    return out, dense_top, corpus


def bench_rerank(rerankers: dict, qids, queries, texts, dense_top, qrels) -> dict:
    from semsearch.metrics import ndcg_at_k
    from semsearch.rerank.blend import blend_order

    names = [n for n in rerankers if n != "_blend"]
    weight = rerankers["_blend"].first_stage_weight
    times = {n: [] for n in names}
    scores = {n: [] for n in names}
    for i, q in enumerate(tqdm(qids, desc="rerank queries", file=sys.stderr)):
        pairs = [(queries[q], texts[d]) for d in dense_top[q]]
        for name in names[i % len(names):] + names[: i % len(names)]:
            t = time.perf_counter()
            s = rerankers[name](pairs)
            times[name].append(time.perf_counter() - t)
            scores[name].append(np.asarray(s, dtype=np.float64))
    ref = np.concatenate(scores["fp32"])
    out = {"queries": len(qids), "candidates": 20, "blend_weight": weight, "variants": {}}
    for n in names:
        got = np.concatenate(scores[n])
        ndcg = np.mean([ndcg_at_k(blend_order(dense_top[q], s, weight)[:10], qrels[q], 10)
                        for q, s in zip(qids, scores[n])])
        out["variants"][n] = {"pairs_per_s": 20 * len(qids) / sum(times[n]),
                              "p50_ms": 1000 * float(np.median(times[n])),
                              "p95_ms": 1000 * float(np.percentile(times[n], 95)),
                              "ratio": float(np.median(times[ANCHOR]) / np.median(times[n])),
                              "pearson_vs_fp32": float(np.corrcoef(ref, got)[0, 1]),
                              "ndcg@10": float(ndcg)}
    return out


def bench_end_to_end(encoders: dict, rerankers: dict, qids, queries, texts, corpus: dict, ids) -> dict:
    """One query at a time: encode + exact search over the variant's own corpus vectors (+ rerank top 20)."""
    import faiss

    names = list(encoders)
    flats = {}
    for n in names:
        flats[n] = faiss.IndexFlatIP(corpus[n].shape[1])
        flats[n].add(corpus[n])
    search_t = {n: [] for n in names}
    full_t = {n: [] for n in names}
    for i, q in enumerate(tqdm(qids, desc="end-to-end queries", file=sys.stderr)):
        for n in names[i % len(names):] + names[: i % len(names)]:
            t = time.perf_counter()
            _, top = flats[n].search(np.asarray(encoders[n]([queries[q]]), dtype=np.float32), 20)
            t1 = time.perf_counter()
            rerankers[n]([(queries[q], texts[ids[j]]) for j in top[0]])
            search_t[n].append(t1 - t)
            full_t[n].append(time.perf_counter() - t)
    return {"queries": len(qids), **{n: {"search_p50_ms": 1000 * float(np.median(search_t[n])),
                "search_rerank20_p50_ms": 1000 * float(np.median(full_t[n]))} for n in names}}


# --- report ----------------------------------------------------------------------------------


def _markdown(r: dict) -> str:
    e, s, k, z = r["encode"], r["scifact"], r["rerank"], r["end_to_end"]
    lines = [f"Machine: {machine_line(r['machine'])}; torch threads {r['torch_threads']}.", "",
             f"Bi-encoder: {e['texts']} SciFact sentences, {e['rounds']} interleaved rounds (ratio: median of "
             f"per-round ratios to the anchor, min-max in brackets); SciFact corpus ({s['documents']} docs) "
             f"embedded chunk by chunk in turn; nDCG@10 on {s['queries']} test queries, exact search.", "",
             "| variant | sent/s | ratio | cosine to fp32 (min / mean) | below 0.95 | top-10 overlap | SciFact docs/s "
             "| ratio | docs: min cosine, below 0.95 | SciFact nDCG@10 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for n, v in e["variants"].items():
        sv = s["variants"][n]
        lines.append(f"| {n} | {v['texts_per_s']:.0f} | {v['ratio']:.2f}x ({v['ratio_min']:.2f}-{v['ratio_max']:.2f}) "
                     f"| {v['cosine_min']:.4f} / {v['cosine_mean']:.4f} | {100 * v['below_095']:.1f}% "
                     f"| {v['top10_overlap']:.3f} | {sv['docs_per_s']:.1f} | {sv['ratio']:.2f}x "
                     f"| {sv['cosine_min']:.4f}, {100 * sv['below_095']:.1f}% | {sv['ndcg@10']:.4f} |")
    names = list(s["variants"])
    lines += ["", "nDCG@10 with the corpus embedded at one precision (rows) and the queries at another (columns):", "",
              "| corpus \\ queries | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for cn in names:
        lines.append(f"| {cn} | " + " | ".join(f"{s['ndcg_matrix'][f'{cn}|{qn}']:.4f}" for qn in names) + " |")
    lines += ["", f"Reranker: top {k['candidates']} of the dense search for {k['queries']} test queries, one query "
              f"per call, interleaved; nDCG@10 after blending with the first stage (weight {k['blend_weight']}).", "",
              "| variant | pairs/s | p50 ms | p95 ms | speed ratio | Pearson vs fp32 | nDCG@10 |",
              "|---|---|---|---|---|---|---|"]
    for n, v in k["variants"].items():
        lines.append(f"| {n} | {v['pairs_per_s']:.1f} | {v['p50_ms']:.0f} | {v['p95_ms']:.0f} | {v['ratio']:.2f}x "
                     f"| {v['pearson_vs_fp32']:.4f} | {v['ndcg@10']:.4f} |")
    lines += ["", f"End to end, {z['queries']} queries one at a time, models loaded (encode + exact search over "
              f"{s['documents']} docs; "
              "+ rerank top 20 at the same precision):", "", "| variant | search p50 ms | + rerank p50 ms |",
              "|---|---|---|"]
    for n, v in z.items():
        if n == "queries":
            continue
        lines.append(f"| {n} | {v['search_p50_ms']:.1f} | {v['search_rerank20_p50_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, part, speed, title in ((axes[0], r["scifact"], "ratio", "bi-encoder: SciFact corpus"),
                                   (axes[1], r["rerank"], "ratio", "reranker: top 20 per query")):
        for n, v in part["variants"].items():
            ax.scatter(v[speed], v["ndcg@10"], s=40)
            ax.annotate(n, (v[speed], v["ndcg@10"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel("speed, x sentence-transformers")
        ax.set_ylabel("SciFact nDCG@10 (test)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
