"""The ``semsearch`` commands that make and change an index: index, add, delete, compact, info."""

from __future__ import annotations

import json
import logging
import sys

import click

from .common import (
    cli,
    corpus_options,
    engine_options,
    index_option,
    index_path,
    open_index,
    precision_options,
    trust_option,
)


@cli.command()
@click.argument("corpus")
@index_option
@click.option("--model", default=None,
              help="Hugging Face model: local folder or hub id. [default: embedded all-MiniLM-L6-v2]")
@click.option("--pooling", default=None, help="mean, cls or pooler. [default: the model's own, else mean]")
@click.option("--factory", default=None,
              help="FAISS index_factory string. [default: Flat below 200k docs, else HNSW32]")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Texts per model call.")
@click.option("--max-length", default=None, type=int, help="Tokens the model reads per text. [default: the model's]")
@click.option("--passages", default="auto", show_default=True, metavar="auto|off",
              help="auto: split documents longer than --passage-tokens into passages, each with its own vector "
                   "(a document scores its best); off: one vector per document (the model reads its start).")
@click.option("--passage-tokens", default=None, type=int,
              help="Most tokens per passage, title included. [default: the model's max length]")
@click.option("--passage-overlap", default=None, type=int, help="Tokens neighbouring passages share. [default: 32]")
@corpus_options
@click.option("--no-lexical", is_flag=True, help="Leave out the BM25 side (dense search only).")
@click.option("--lexical-unit", default="document", show_default=True, metavar="document|passage",
              help="What the BM25 side indexes: whole documents, or passages.")
@precision_options
@click.option("--overwrite", is_flag=True, help="Replace an existing index at --index.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a hub model to run its own code.")
@engine_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def index(corpus, index_dir, model, pooling, factory, batch_size, max_length, passages, passage_tokens,
          passage_overlap, fmt, id_field, text_field, title_field, on_error, no_lexical, lexical_unit, precision,
          backend, overwrite, trust_remote_code, engine, ray_address, shards, actors, cpus_per_actor, rows_per_batch,
          on_disk, quiet):
    """Index CORPUS: a JSONL/CSV/TSV/Parquet/txt file, a folder of .txt/.md/.html/.pdf files (HTML and PDF:
    pip install 'semsearch[docs]'), or builtin:python-docs.
    With --engine ray: a JSONL/CSV/TSV/Parquet file or a folder of such files."""
    from ..corpus.readers import read_corpus
    from ..encode.batching import check_batch_size
    from ..encode.transformer import TransformerEmbedder
    from ..errors import BadInput
    from ..index.engine import SearchEngine
    from ..index.layout import check_target
    from ..index.lexical import check_lexical_unit
    from ..index.passages import check_passage_options

    ray_options = {"ray_address": ray_address, "shards": shards, "actors": actors, "on_disk": on_disk or None,
                   "cpus_per_actor": cpus_per_actor, "rows_per_batch": rows_per_batch}
    if engine not in ("local", "ray"):
        raise BadInput(f"unknown engine {engine!r}; valid values are: local, ray")
    if engine == "local" and any(v is not None for v in ray_options.values()):
        given = [f"--{k.replace('_', '-')}" for k, v in ray_options.items() if v is not None]
        raise BadInput(f"{', '.join(given)}: only with --engine ray")
    if engine == "ray":
        from ..scale.corpus import corpus_files

        corpus_files(corpus, fmt)  # fail before the model loads
        docs = None
        _quiet_ray(quiet)
    else:
        docs = read_corpus(corpus, format=fmt, id_field=id_field, text_field=text_field, title_field=title_field,
                           on_error=on_error)
    check_target(index_path(index_dir), overwrite)  # fail before the model loads
    check_passage_options(passages, passage_tokens)
    check_batch_size(batch_size)
    check_lexical_unit(lexical_unit)
    embedder = TransformerEmbedder(model, pooling=pooling, max_length=max_length, trust_remote_code=trust_remote_code,
                                   precision=precision or "auto", backend=backend or "auto")
    passage_options = {"passages": passages, "passage_tokens": passage_tokens, "passage_overlap": passage_overlap,
                       "lexical_unit": lexical_unit}
    if engine == "ray":
        from ..scale.build import build_with_ray

        engine = build_with_ray(corpus, index_path(index_dir), embedder=embedder, factory=factory, shards=shards,
                                actors=actors, cpus_per_actor=1 if cpus_per_actor is None else cpus_per_actor,
                                batch_size=batch_size, format=fmt, id_field=id_field,
                                rows_per_batch=1024 if rows_per_batch is None else rows_per_batch,
                                text_field=text_field, title_field=title_field, lexical=not no_lexical, on_disk=on_disk,
                                overwrite=overwrite, ray_address=ray_address, progress=not quiet,
                                **passage_options)
    else:
        engine = SearchEngine.build(docs, index_path(index_dir), embedder=embedder, factory=factory, batch_size=batch_size,
                                    lexical=not no_lexical, overwrite=overwrite, progress=not quiet, **passage_options)
    m = engine.manifest
    click.echo(f"indexed {m.documents} documents ({m.vector_count} passages) into {engine.path} "
               f"(model {m.embedder['model']}, pooling {m.embedder['pooling']}, factory {m.factory}"
               f"{', BM25' if m.lexical else ''}){_skipped(docs)}")


_RAY_FAILURE_LOGS = ("Exception occurred in user code", "An exception was raised from a task")


def _quiet_ray(quiet: bool) -> None:
    """Ray Data logs each stage's progress as INFO lines when stderr is not a terminal: keep its warnings
    only (with -q, its errors only). Set after the import, which configures Ray Data's logging."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return  # build_with_ray says what to install
    if quiet or not sys.stderr.isatty():
        logging.getLogger("ray.data").setLevel(logging.ERROR if quiet else logging.WARNING)
    # A failure in a worker reaches the user as semsearch's own one-line error; Ray Data's log of it goes
    # (filtered at Ray's handlers: a logger's own filter does not see its children's records).
    for name in ("ray.data", "ray"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(lambda record: not record.getMessage().startswith(_RAY_FAILURE_LOGS))



@cli.command()
@click.argument("corpus")
@index_option
@click.option("--batch-size", default=32, show_default=True, type=int, help="Texts per model call.")
@corpus_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@trust_option
def add(corpus, index_dir, batch_size, fmt, id_field, text_field, title_field, on_error, quiet, trust_remote_code):
    """Add the documents of CORPUS to an index: new ids are inserted, existing ones updated.

    Only new or changed text is embedded. Each batch is durable once written; re-running the same
    command after an interruption finishes the job without duplicates."""
    from ..corpus.readers import read_corpus

    docs = read_corpus(corpus, format=fmt, id_field=id_field, text_field=text_field, title_field=title_field,
                       on_error=on_error)
    engine = open_index(index_dir, None, None, trust_remote_code=trust_remote_code)
    report = engine.add(docs, batch_size=batch_size, progress=not quiet)
    click.echo(f"{engine.path}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged; "
               f"{report.embedded} passages embedded, {report.from_cache} from the cache; "
               f"{engine.manifest.documents} documents in all{_skipped(docs)}")


def _skipped(docs) -> str:
    """``; N unreadable files skipped`` after ``--on-error skip`` skipped some (each was logged by path)."""
    skipped = getattr(docs, "skipped", None) or []
    return f"; {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''} skipped (see the warnings)" \
        if skipped else ""


@cli.command()
@click.argument("ids", nargs=-1)
@index_option
@click.option("--ids-file", default=None, type=click.Path(dir_okay=False),
              help="A file of ids to delete, one per line.")
def delete(ids, index_dir, ids_file):
    """Delete documents by id (all must exist, or nothing is deleted)."""
    from ..errors import BadInput

    wanted = list(ids)
    if ids_file:
        try:
            with open(ids_file, encoding="utf-8") as fh:
                wanted += [line.strip() for line in fh if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read ids file {ids_file}: {exc}") from None
    if not wanted:
        raise BadInput("give ids to delete, or --ids-file")
    engine = open_index(index_dir, None, None)
    report = engine.delete(wanted)
    click.echo(f"{engine.path}: {report.deleted} deleted; {engine.manifest.documents} documents left "
               "(run `semsearch compact` to reclaim their space)")


@cli.command()
@index_option
def compact(index_dir):
    """Rebuild an index's vector and BM25 files from its store and reclaim deleted documents' space."""
    engine = open_index(index_dir, None, None)
    report = engine.compact()
    click.echo(f"{engine.path}: {report.bytes_before / 2**20:.1f} MiB -> {report.bytes_after / 2**20:.1f} MiB; "
               f"{report.vectors_dropped} unused vectors dropped in {report.seconds:.1f} s")


@cli.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(index_dir, as_json):
    """Print the manifest of an index and what is on disk."""
    from ..index.info import describe

    data = describe(index_path(index_dir))  # loads no model: works even where the model is missing
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    for key, value in data.items():
        if key == "agreement":  # one line per model: how its precision agreed with fp32 on this CPU
            for model, entry in value.items():
                click.echo(f"agreement.{model}: {entry['precision']} on {entry['backend']}: {entry['summary']}")
        elif isinstance(value, dict):
            for sub, v in value.items():
                click.echo(f"{key}.{sub}: {v}")
        else:
            click.echo(f"{key}: {value}")

