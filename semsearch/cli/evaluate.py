"""The `semsearch` commands that measure or tune an index: eval, tune and bench."""

from __future__ import annotations

import json

import click

from .common import (
    cli,
    index_option,
    mode_option,
    open_index,
    precision_options,
    rerank_candidates,
    rerank_options,
    reranker_for,
    say_check,
    trust_option,
)


@cli.command("eval")
@index_option
@click.option("--queries", "queries_file", required=True, help="BEIR queries.jsonl.")
@click.option("--qrels", "qrels_file", required=True, help="BEIR qrels TSV (query-id corpus-id score).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@mode_option
@precision_options(default_help="the index's")
@rerank_options
@trust_option
def eval_(index_dir, queries_file, qrels_file, as_json, mode, precision, backend, rerank, candidates,
          rerank_max_length, rerank_precision, rerank_backend, rerank_passages, trust_remote_code):
    """Evaluate the index on judged queries: nDCG@10, MRR@10, Recall@100, MAP@100."""
    from ..corpus.readers import read_qrels, read_queries

    queries, qrels = read_queries(queries_file), read_qrels(qrels_file)
    engine = open_index(index_dir, None, None, precision, backend, trust_remote_code)
    reranker = reranker_for(engine, rerank, rerank_max_length, rerank_precision, rerank_backend, rerank_passages)
    candidates = rerank_candidates(reranker, candidates)
    result = engine.evaluate(queries, qrels, mode=mode, reranker=reranker, candidates=candidates)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        for key, value in result.to_dict().items():
            click.echo(f"{key:>10}: {value:.4f}" if isinstance(value, float) else f"{key:>10}: {value}")


@cli.command()
@index_option
@click.option("--queries", "queries_file", required=True, help="BEIR queries.jsonl.")
@click.option("--qrels", "qrels_file", required=True,
              help="qrels TSV of queries NOT used for reporting (e.g. BEIR's train split).")
@click.option("--method", "methods", default="rrf,score", show_default=True,
              help="Fusion methods to try: rrf, score (comma-separated).")
@click.option("--rerank", "rerank", is_flag=False, flag_value="", default=None, metavar="[MODEL]",
              help="Instead of the fusion, fit this reranker's blend weight with the first stage (alone: the "
                   "index's default reranker) on queries it was not trained on; it becomes the default.")
@click.option("--candidates", default=20, show_default=True, type=int, help="With --rerank: hits reranked.")
@mode_option
@click.option("--dry-run", is_flag=True, help="Print the result without storing it.")
@trust_option
def tune(index_dir, queries_file, qrels_file, methods, rerank, candidates, mode, dry_run, trust_remote_code):
    """Fit the hybrid fusion (method and dense weight) on judged queries; store it in the manifest.

    With --rerank, fit the reranker's first-stage blend weight for this index instead."""
    from ..corpus.readers import read_qrels, read_queries

    queries, qrels = read_queries(queries_file), read_qrels(qrels_file)
    engine = open_index(index_dir, None, None, trust_remote_code=trust_remote_code)
    if rerank is not None:
        tuned = engine.tune_rerank_weight(queries, qrels, reranker_for(engine, rerank, None), candidates=candidates,
                                          mode=mode, save=not dry_run)
        t = tuned.tuned_on
        click.echo(f"reranker {tuned.name}: blend weight {tuned.first_stage_weight:.2f} ({t['mode']} first stage, "
                   f"top {t['candidates']}): nDCG@10 {t['ndcg_at_10']:.4f} on {t['queries']} queries"
                   + (" (not stored: --dry-run)" if dry_run else f"; default reranker of {engine.path}"))
        say_check(tuned.check, logged=True)
        return
    fusion = engine.tune_fusion(queries, qrels, methods=[m.strip() for m in methods.split(",") if m.strip()],
                                save=not dry_run)
    click.echo(f"fusion {fusion.method}, dense weight {fusion.weight:.2f}: nDCG@10 {fusion.tuned_on['ndcg_at_10']:.4f} "
               f"on {fusion.tuned_on['queries']} queries" + (" (not stored: --dry-run)" if dry_run else
                                                             f"; stored in {engine.path}"))


@cli.command()
@click.option("--data", required=True, type=click.Path(file_okay=False),
              help="BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--split", default="test", show_default=True, help="qrels split to report on.")
@click.option("--tune-split", default="auto", show_default=True,
              help="qrels split to tune the hybrid fusion on ('auto': train if the dataset has it; 'none': plain RRF).")
@click.option("--rerank", default=None, metavar="MODEL", help="Add a hybrid+rerank row with this cross-encoder.")
@click.option("--candidates", default=20, show_default=True, type=int, help="Hits the reranker reads.")
@click.option("--model", default=None, help="Bi-encoder. [default: embedded all-MiniLM-L6-v2]")
@click.option("--factory", default=None, help="FAISS index_factory string. [default: Flat below 200k docs]")
@precision_options
@click.option("--rerank-precision", default=None, metavar="auto|fp32|bf16|int8",
              help="Reranker precision. [default: auto]")
@click.option("--rerank-backend", default=None, metavar="auto|torch|onnx|openvino",
              help="Reranker runtime. [default: auto]")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty report folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def bench(data, output, split, tune_split, rerank, candidates, model, factory, precision, backend, rerank_precision,
          rerank_backend, overwrite, quiet):
    """Benchmark dense / lexical / hybrid (/ hybrid+rerank) retrieval on a BEIR dataset; write a report."""
    from ..bench.report import check_dataset, run_bench
    from ..encode.transformer import TransformerEmbedder
    from ..rerank.reranker import Reranker

    check_dataset(data, split, output, overwrite)  # before any model loads
    reranker = (Reranker(rerank, precision=rerank_precision or "auto", backend=rerank_backend or "auto")
                if rerank else None)
    embedder = TransformerEmbedder(model, precision=precision or "auto", backend=backend or "auto")
    report = run_bench(data, output, split=split, reranker=reranker, candidates=candidates,
                       tune_split=None if tune_split.lower() == "none" else tune_split,
                       embedder=embedder, factory=factory, overwrite=overwrite,
                       progress=not quiet)
    for c in report["configs"]:
        click.echo(f"{c['config']:>14}: nDCG@10 {c['ndcg@10']:.4f}  Recall@100 {c['recall@100']:.4f}  "
                   f"p50 {c['latency_ms_p50']:.1f} ms")
    click.echo(f"report written to {output}/report.md")
