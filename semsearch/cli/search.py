"""The ``semsearch query`` command: search an index and print the hits."""

from __future__ import annotations

import json
import shutil

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
)


@cli.command()
@click.argument("queries", nargs=-1, required=True)
@index_option
@click.option("-k", "k", default=10, show_default=True, type=int, help="Hits per query.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit.")
@click.option("--model", default=None, help="Refuse unless the index was built with this model.")
@click.option("--pooling", default=None, help="Refuse unless the index was built with this pooling.")
@mode_option
@click.option("--filter", "filters", multiple=True, metavar="EXPR",
              help="Metadata filter, applied before ranking: field=value, field!=value, field>=n, "
                   "'field in a,b'. Repeat to combine (all must hold).")
@precision_options(default_help="the index's")
@rerank_options
def query(queries, index_dir, k, as_json, model, pooling, mode, filters, precision, backend, rerank, candidates,
          rerank_max_length, rerank_precision, rerank_backend):
    """Search the index for each of QUERIES (encoded together in one batch)."""
    from ..index.filters import parse_filters

    parsed = parse_filters(filters)  # a malformed filter fails before the model loads
    engine = open_index(index_dir, model, pooling, precision, backend)
    reranker = reranker_for(engine, rerank, rerank_max_length, rerank_precision, rerank_backend)
    candidates = rerank_candidates(reranker, candidates)
    results = engine.search_many(list(queries), k=k, mode=mode, filters=parsed, reranker=reranker,
                                 candidates=candidates)
    if as_json:
        for text, hits in zip(queries, results):
            for hit in hits:
                click.echo(json.dumps({"query": text, **hit.to_dict()}, ensure_ascii=False))
        return
    width = shutil.get_terminal_size((100, 20)).columns
    for n, (text, hits) in enumerate(zip(queries, results)):
        if n:
            click.echo()
        click.echo(click.style(f"query: {text}", bold=True))
        if not hits:
            click.echo("  (no hits)")
            continue
        id_width = min(max([len(h.id) for h in hits] + [2]), 30)
        rerank_col = f"  {'rerank':>7}" if reranker else ""
        click.echo(f"{'rank':>4}  {'score':>6}{rerank_col}  {'id':<{id_width}}  title / text")
        for hit in hits:
            snippet = " — ".join(p for p in (hit.title, hit.text) if p).replace("\n", " ")
            room = max(width - id_width - 18 - len(rerank_col), 20)
            snippet = snippet if len(snippet) <= room else snippet[: room - 1] + "…"
            rr = f"  {hit.rerank_score:>7.3f}" if reranker else ""
            click.echo(f"{hit.rank:>4}  {hit.score:>6.3f}{rr}  {hit.id[:id_width]:<{id_width}}  {snippet}")

