"""Load on ``semsearch serve``: a SciFact index, its 300 test queries, bounded loopback load that stops by itself.

Two servers run side by side on the same index, one with micro-batching and one without (one query
per encoder call); the load generator alternates between them for every (concurrency, mode) cell so
drift hits both alike. A cell is the 300 test queries sent by ``c`` closed-loop clients (each sends
its next query when the last answered). Reported per cell: requests per second, p50 / p95 / p99
latency (client side, loopback), errors (non-2xx or transport). For contrast: the in-process
``engine.search`` p50 (one query at a time, same queries) and a cold ``semsearch query`` process.

Writes during reads: 16 clients search for ``--rw-seconds`` with no writes, then as long again while
one client adds a document every ``--add-every`` seconds; reader p99 of both, errors, and afterwards
every acknowledged add is searched for by its unique word (lexical, k=3).

The load generator (asyncio + httpx) runs on the same 2 cores as the server, so the numbers are a
floor on what the server alone could do; the ratios between variants are what the goals use.

    python benchmarks/serve_load.py [--data ../shared/datasets/beir/scifact] [--index /tmp/serve-bench/scifact]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx
from machine import machine

from semsearch import SearchEngine, read_corpus, read_qrels, read_queries

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Server:
    def __init__(self, index: Path, *flags: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "semsearch", "serve", "--index", f"bench={index}",
                                      "--port", "0", *flags], stderr=subprocess.PIPE, text=True)
        self.url = None
        for line in self.proc.stderr:
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                self.url = found.group()
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # drain
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("server never became ready")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


async def load(url: str, queries: list[str], concurrency: int, mode: str, k: int = 10) -> dict:
    """``queries`` sent by ``concurrency`` closed-loop clients; latencies in ms."""
    latencies, errors, statuses = [], 0, {}
    todo = iter(queries)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker():
            nonlocal errors
            for q in todo:
                started = time.perf_counter()
                try:
                    r = await client.post("/indexes/bench/search", json={"query": q, "k": k, "mode": mode})
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code != 200:
                        errors += 1
                except httpx.TransportError:
                    errors += 1
                    statuses["transport"] = statuses.get("transport", 0) + 1
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"requests": len(latencies), "rps": round(len(latencies) / wall, 2), "errors": errors,
            "statuses": {str(s): n for s, n in statuses.items()},
            "p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
            "p99_ms": round(percentile(latencies, 99), 2)}


async def reads_with_writes(url: str, queries: list[str], seconds: float, add_every: float | None,
                            start_id: int) -> dict:
    """16 clients search (cycling through ``queries``) for ``seconds``; with ``add_every``, one more client
    adds a document that often. Returns reader latencies and the acknowledged ids."""
    latencies, errors, acked, add_errors = [], 0, [], 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def reader(offset: int):
            nonlocal errors
            n = offset
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    r = await client.post("/indexes/bench/search", json={"query": queries[n % len(queries)],
                                                                         "k": 10, "mode": "hybrid"})
                    errors += r.status_code != 200
                except httpx.TransportError:
                    errors += 1
                latencies.append((time.perf_counter() - started) * 1000)
                n += 16

        async def adder():
            nonlocal add_errors
            n = start_id
            while time.monotonic() < stop:
                tick = time.monotonic()
                doc = {"id": f"added-{n}", "title": "A new finding", "text": f"Marker word zqx{n}q in a note added "
                       f"while clients search: {queries[n % len(queries)]}"}
                try:
                    r = await client.post("/indexes/bench/documents", json={"documents": [doc]})
                    if r.status_code == 200:
                        acked.append(n)
                    else:
                        add_errors += 1
                except httpx.TransportError:
                    add_errors += 1
                n += 1
                await asyncio.sleep(max(0.0, add_every - (time.monotonic() - tick)))

        tasks = [reader(i) for i in range(16)] + ([adder()] if add_every else [])
        await asyncio.gather(*tasks)
    return {"searches": len(latencies), "errors": errors, "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2), "adds_acknowledged": len(acked), "add_errors": add_errors,
            "acked": acked}


def in_process_p50(index: Path, queries: list[str], mode: str) -> float:
    with SearchEngine.open(index) as engine:
        engine.search(queries[0], k=10, mode=mode)
        times = []
        for q in queries:
            started = time.perf_counter()
            engine.search(q, k=10, mode=mode)
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def cold_query(index: Path, query: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "semsearch", "query", query, "--index", str(index), "--mode", "dense",
                        "--json"], check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def markdown(r: dict) -> str:
    lines = ["| mode | clients | micro-batching | req/s | p50 ms | p95 ms | p99 ms | errors |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for cell in r["cells"]:
        lines.append(f"| {cell['mode']} | {cell['concurrency']} | {cell['variant']} | {cell['rps']} | {cell['p50_ms']} | "
                     f"{cell['p95_ms']} | {cell['p99_ms']} | {cell['errors']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--index", type=Path, default=Path("/tmp/serve-bench/scifact"),
                        help="Built here from --data if missing (passages auto, hybrid), else reused.")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--modes", default="dense,hybrid")
    parser.add_argument("--rw-seconds", type=float, default=30.0)
    parser.add_argument("--add-every", type=float, default=1.0, help="Seconds between adds during reads.")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks" / "runs" /
                        f"serve_load-{date.today().isoformat()}.json")
    args = parser.parse_args()
    queries_all = read_queries(args.data / "queries.jsonl")
    test = read_qrels(args.data / "qrels" / "test.tsv")
    queries = [queries_all[q] for q in test if q in queries_all]
    if not (args.index / "manifest.json").is_file():
        print(f"building {args.index} from {args.data}", file=sys.stderr)
        SearchEngine.build(read_corpus(args.data / "corpus.jsonl"), args.index).close()
    report = {"machine": machine(), "date": date.today().isoformat(), "queries": len(queries), "cells": []}
    modes = args.modes.split(",")
    report["in_process_p50_ms"] = {m: in_process_p50(args.index, queries, m) for m in modes}
    print("in-process p50", report["in_process_p50_ms"], file=sys.stderr, flush=True)
    report["cold_query_ms"] = cold_query(args.index, queries[0], args.cold_runs)
    print("cold semsearch query", report["cold_query_ms"], "ms", file=sys.stderr, flush=True)
    servers = {"on": Server(args.index), "off": Server(args.index, "--no-micro-batch")}
    added_ids: list[str] = []
    try:
        for n, concurrency in enumerate(int(c) for c in args.concurrency.split(",")):
            for mode in modes:
                order = ["on", "off"] if n % 2 == 0 else ["off", "on"]
                for variant in order:
                    cell = asyncio.run(load(servers[variant].url, queries, concurrency, mode))
                    cell.update(mode=mode, concurrency=concurrency, variant=variant)
                    report["cells"].append(cell)
                    print(json.dumps(cell), file=sys.stderr, flush=True)
        url = servers["on"].url
        quiet = asyncio.run(reads_with_writes(url, queries, args.rw_seconds, None, 0))
        busy = asyncio.run(reads_with_writes(url, queries, args.rw_seconds, args.add_every, 0))
        missing = []
        with httpx.Client(base_url=url, timeout=60) as client:
            for n in busy["acked"]:
                hits = client.post("/indexes/bench/search", json={"query": f"zqx{n}q", "k": 3, "mode": "lexical"}).json()
                if f"added-{n}" not in [h["id"] for h in hits["hits"]]:
                    missing.append(n)
        added_ids.extend(f"added-{n}" for n in busy.pop("acked"))
        del quiet["acked"]
        report["writes_during_reads"] = {"no_writes": quiet, "with_writes": busy, "acknowledged_not_found": missing,
                                         "add_every_s": args.add_every, "seconds": args.rw_seconds}
        print(json.dumps(report["writes_during_reads"]), file=sys.stderr, flush=True)
    finally:
        report["exit_codes"] = {v: s.stop() for v, s in servers.items()}
        # leave the index as it was: drop what the writes-during-reads phase added
        if added_ids:
            with SearchEngine.open(args.index, lazy=True) as engine:
                engine.delete(list(engine.store.lookup(added_ids)))
    cell = {(c["mode"], c["concurrency"], c["variant"]): c for c in report["cells"]}
    http_c1 = cell[("dense", 1, "on")]["p50_ms"]
    report["goals"] = {
        "http_c1_dense_p50_over_in_process": round(http_c1 / report["in_process_p50_ms"]["dense"], 2),
        "c16_micro_batching_throughput_ratio": {m: round(cell[(m, 16, "on")]["rps"] / cell[(m, 16, "off")]["rps"], 2)
                                                for m in modes if (m, 16, "on") in cell},
        "server_errors_5xx": sum(n for c in report["cells"] for s, n in c["statuses"].items() if s.startswith("5")),
        "lost_acknowledged_writes": len(report["writes_during_reads"]["acknowledged_not_found"]),
        "reader_p99_with_writes_over_without": round(report["writes_during_reads"]["with_writes"]["p99_ms"] /
                                                     report["writes_during_reads"]["no_writes"]["p99_ms"], 2),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(report))
    print(json.dumps(report["goals"], indent=2))


if __name__ == "__main__":
    main()
