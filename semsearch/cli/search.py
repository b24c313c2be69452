"""The ``semsearch query`` command: search an index and print the hits."""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap

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
    trust_option,
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
@click.option("--plain", is_flag=True, help="No highlighting of the query's words (also when not on a terminal).")
@precision_options(default_help="the index's")
@rerank_options
@trust_option
def query(queries, index_dir, k, as_json, model, pooling, mode, filters, plain, precision, backend, rerank, candidates,
          rerank_max_length, rerank_precision, rerank_backend, rerank_passages, trust_remote_code):
    """Search the index for each of QUERIES (encoded together in one batch). Each hit shows the passage
    of the document that matched best, with the query's words highlighted on a terminal."""
    from ..index.filters import parse_filters

    parsed = parse_filters(filters)  # a malformed filter fails before the model loads
    engine = open_index(index_dir, model, pooling, precision, backend, trust_remote_code)
    reranker = reranker_for(engine, rerank, rerank_max_length, rerank_precision, rerank_backend, rerank_passages)
    candidates = rerank_candidates(reranker, candidates, k)
    results = engine.search_many(list(queries), k=k, mode=mode, filters=parsed, reranker=reranker,
                                 candidates=candidates)
    if as_json:
        for text, hits in zip(queries, results):
            for hit in hits:
                click.echo(json.dumps({"query": text, **hit.to_dict()}, ensure_ascii=False))
        return
    width = shutil.get_terminal_size((100, 20)).columns
    colour = not plain and sys.stdout.isatty()
    for n, (text, hits) in enumerate(zip(queries, results)):
        if n:
            click.echo()
        click.echo(click.style(f"query: {text}", bold=True))
        if not hits:
            click.echo("  (no hits)")
            continue
        id_width = min(max([len(h.id) for h in hits] + [2]), 30)
        rerank_col = f"  {'rerank':>7}" if reranker else ""
        click.echo(f"{'rank':>4}  {'score':>6}{rerank_col}  {'id':<{id_width}}  title / best passage")
        terms = words_of(text)
        for hit in hits:
            rr = f"  {hit.rerank_score:>7.3f}" if reranker else ""
            where = f" (p. {hit.page})" if hit.page is not None else ""
            head = f"{hit.rank:>4}  {hit.score:>6.3f}{rr}  {hit.id[:id_width]:<{id_width}}  "
            title = (hit.title or "").replace("\n", " ") + where
            room = max(width - len(head), 20)
            click.echo(head + (title if len(title) <= room else title[: room - 1] + "…"))
            for line in textwrap.wrap(excerpt(hit.passage, terms, 2 * (width - 8)), width - 8):
                click.echo("        " + highlight(line, terms, colour))


_STOP = frozenset("a an and are as at be by do does for from how in is it of on or that the this to was what when "
                  "where which who why with".split())


def words_of(query: str) -> set[str]:
    """The query's words worth highlighting (lower case, stop words left out)."""
    from ..index.passages import query_terms

    return query_terms(query) - _STOP


def excerpt(passage: str, terms: set[str], size: int) -> str:
    """About ``size`` characters of ``passage`` on one line, starting a little before the first query word."""
    flat = " ".join(passage.split())
    if len(flat) <= size:
        return flat
    found = [m.start() for m in re.finditer(r"\w+", flat) if m.group().lower() in terms]
    start = max(0, min(found[0] - size // 4, len(flat) - size)) if found else 0
    if start:
        start = flat.find(" ", start) + 1 or start
    piece = flat[start:start + size]
    return ("…" if start else "") + piece + ("…" if start + size < len(flat) else "")


def highlight(line: str, terms: set[str], colour: bool) -> str:
    """``line`` with the query's words in bold yellow (on a terminal; else unchanged)."""
    if not colour or not terms:
        return line
    return re.sub(r"\w+", lambda m: click.style(m.group(), fg="yellow", bold=True)
                  if m.group().lower() in terms else m.group(), line)
