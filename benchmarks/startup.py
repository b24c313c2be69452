"""Start-up: what a cold ``semsearch`` process costs, whole processes timed side by side.

On the SciFact corpus, one index per variant (int8 vectors mix with no other kind, so each int8 runtime has
its own index of the same documents): torch bf16 (the default on a CPU with native bf16), OpenVINO int8 and
ONNX Runtime int8. Each command is a new ``semsearch`` process, run ``--runs`` times, interleaved round by
round (every command once per round, the order rotating), after one untimed run of each (so the disk cache
is warm in every row alike, and a reranker's export and check, made once per machine, are not timed; the
indexes' own are made when they are built, as a user's first build makes them). Reported: median and range of wall time, peak RSS, and the ratio of every cold
query to the torch one; and whether the process imports torch (a last untimed run of each, with a probe).

    python benchmarks/startup.py [--data ../shared/datasets/beir/scifact] [--runs 5] \\
        [--reranker models/scifact-reranker] [--output benchmarks/results/startup]

Writes ``results.json`` and ``report.md`` to ``--output``; indexes and the model cache live there too
(``--output``/indexes, ``--output``/cache), so a rerun reuses them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import (  # benchmarks/machine.py (the script's folder is on the path)
    machine,
    machine_line,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"
INDEXES = {"torch bf16": ["--precision", "bf16"], "OpenVINO int8": ["--precision", "int8", "--backend", "openvino"],
           "ONNX Runtime int8": ["--precision", "int8", "--backend", "onnx"]}
QUERY = "0-dimensional biomaterials show inductive properties."  # SciFact test query 1
_PROBE = "import sys, runpy; sys.argv = ['semsearch'] + sys.argv[1:]\ntry:\n    runpy.run_module('semsearch', " \
         "run_name='__main__')\nfinally:\n    print('HEAVY', 'torch' in sys.modules, file=sys.stderr)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reranker", type=Path, default=ROOT / "models" / "scifact-reranker",
                        help="a cross-encoder folder for the rows with --rerank (skipped if it is not there)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "startup")
    args = parser.parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        sys.exit(f"missing {args.data / 'corpus.jsonl'}")
    env = dict(os.environ, SEMSEARCH_CACHE=str(args.output / "cache"))
    indexes = {name: args.output / "indexes" / name.lower().replace(" ", "-") for name in INDEXES}
    for name, options in INDEXES.items():
        if not (indexes[name] / "manifest.json").is_file():
            print(f"building the {name} index", file=sys.stderr)
            subprocess.run(["semsearch", "index", str(args.data / "corpus.jsonl"), "--index", str(indexes[name]),
                            "--overwrite", "-q", *options], check=True, env=env)
    commands = {f"query, {name}": ["query", QUERY, "--index", str(path), "-k", "10"] for name, path in indexes.items()}
    if (args.reranker / "config.json").is_file():
        commands["query + rerank top 20, torch bf16"] = commands["query, torch bf16"] + [
            "--rerank", str(args.reranker), "--candidates", "20", "--rerank-precision", "bf16"]
        commands["query + rerank top 20, OpenVINO int8"] = commands["query, OpenVINO int8"] + [
            "--rerank", str(args.reranker), "--candidates", "20", "--rerank-precision", "int8",
            "--rerank-backend", "openvino"]
    commands["query --mode lexical"] = commands["query, torch bf16"] + ["--mode", "lexical"]
    commands["info"] = ["info", "--index", str(indexes["torch bf16"])]
    commands["--help"] = ["--help"]

    for name, command in commands.items():  # untimed: warms the disk cache, makes a reranker's export and check
        _timed(["semsearch", *command], env)
    seconds = {name: [] for name in commands}
    rss = {name: [] for name in commands}
    names = list(commands)
    for r in range(args.runs):
        for name in names[r % len(names):] + names[: r % len(names)]:
            wall, peak = _timed(["semsearch", *commands[name]], env)
            seconds[name].append(wall)
            rss[name].append(peak)
        print(f"round {r + 1}/{args.runs} done", file=sys.stderr)
    heavy = {}
    for name, command in commands.items():  # untimed, after the timed runs: what the same process imports
        proc = subprocess.run([sys.executable, "-c", _PROBE, *command], capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(f"{name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        heavy[name] = "HEAVY True" in proc.stderr
    result = {"machine": machine(), "runs": args.runs, "query": QUERY, "commands": {}}
    base = float(np.median(seconds["query, torch bf16"]))
    for name in commands:
        med = float(np.median(seconds[name]))
        result["commands"][name] = {"seconds": seconds[name], "median_s": med, "min_s": min(seconds[name]),
                                    "max_s": max(seconds[name]), "peak_rss_mib": float(np.median(rss[name])),
                                    "imports_torch": heavy[name], "speedup_vs_torch_query": base / med}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    report = _markdown(result)
    (args.output / "report.md").write_text(report)
    print(report)


def _timed(command: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process (its own rusage, from wait4)."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            sys.exit(f"{' '.join(command)} failed: {err.read().decode(errors='replace').strip()}")
    return wall, usage.ru_maxrss / 1024


def _markdown(r: dict) -> str:
    lines = [f"Machine: {machine_line(r['machine'])}.", "",
             f"Each command a new process, {r['runs']} runs interleaved round by round after one untimed run; "
             f"query: \"{r['query']}\", top 10, hybrid (the index default).", "",
             "| command | median s | range s | × faster than the torch query | imports torch | peak RSS MiB |",
             "|---|---|---|---|---|---|"]
    for name, c in r["commands"].items():
        lines.append(f"| {name} | {c['median_s']:.2f} | {c['min_s']:.2f}-{c['max_s']:.2f} | "
                     f"{c['speedup_vs_torch_query']:.2f} | {'yes' if c['imports_torch'] else 'no'} | "
                     f"{c['peak_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
