"""The ``semsearch`` command line. The only place where errors become messages and exit codes.

User errors (any :class:`~semsearch.errors.SemsearchError`, and click's own usage
errors) print one line to stderr and exit with status 2; nothing else is printed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys

import click

from .errors import SemsearchError

DEFAULT_INDEX = os.path.join("indexes", "default")

index_option = click.option(
    "--index",
    "index_dir",
    envvar="SEMSEARCH_INDEX",
    default=DEFAULT_INDEX,
    show_default=True,
    show_envvar=True,
    type=click.Path(file_okay=False),
    help="Index folder.",
)


class _Cli(click.Group):
    """A click group whose errors are one line on stderr (exit 2), with no usage dump or traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except SemsearchError as exc:
            _fail(str(exc), 2)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int):
    click.echo(f"semsearch: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="semsearch")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(verbose: bool) -> None:
    """Semantic search on a plain CPU: index a corpus, query it, evaluate it."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="semsearch: %(levelname)s: %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _quiet_transformers(verbose)


def _quiet_transformers(verbose: bool) -> None:
    """transformers prints a progress bar for every model load; keep stderr for our own bar."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not verbose:
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # one line per failed retry otherwise
        try:
            import transformers

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - a core dependency
            pass


@cli.command()
@click.argument("corpus")
@index_option
@click.option("--model", default=None, help="Hugging Face model: local folder or hub id. [default: embedded all-MiniLM-L6-v2]")
@click.option("--pooling", default=None, help="mean, cls or pooler. [default: the model's own, else mean]")
@click.option("--factory", default=None, help="FAISS index_factory string. [default: Flat below 200k docs, else HNSW32]")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Texts per model call.")
@click.option("--max-length", default=None, type=int, help="Tokens per document. [default: the model's]")
@click.option("--format", "fmt", default=None, help="jsonl, csv, tsv, txt or dir. [default: from the extension]")
@click.option("--id-field", default=None, help="Id field of JSONL/CSV/TSV records. [default: _id or id]")
@click.option("--text-field", default="text", show_default=True, help="Text field of JSONL/CSV/TSV records.")
@click.option("--title-field", default="title", show_default=True, help="Title field of JSONL/CSV/TSV records.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index at --index.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a hub model to run its own code.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def index(corpus, index_dir, model, pooling, factory, batch_size, max_length, fmt, id_field, text_field,
          title_field, overwrite, trust_remote_code, quiet):
    """Index CORPUS: a JSONL/CSV/TSV/txt file, a folder of .txt/.md files, or builtin:python-docs."""
    from .corpus import read_corpus
    from .embedding import TransformerEmbedder
    from .engine import SearchEngine, check_target

    docs = read_corpus(corpus, format=fmt, id_field=id_field, text_field=text_field, title_field=title_field)
    check_target(_path(index_dir), overwrite)  # fail before the model loads
    embedder = TransformerEmbedder(model, pooling=pooling, max_length=max_length, trust_remote_code=trust_remote_code)
    engine = SearchEngine.build(docs, _path(index_dir), embedder=embedder, factory=factory,
                                batch_size=batch_size, overwrite=overwrite, progress=not quiet)
    m = engine.manifest
    click.echo(f"indexed {m.documents} documents into {engine.path} "
               f"(model {m.embedder['model']}, pooling {m.embedder['pooling']}, factory {m.factory})")


@cli.command()
@click.argument("queries", nargs=-1, required=True)
@index_option
@click.option("-k", "k", default=10, show_default=True, type=int, help="Hits per query.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit.")
@click.option("--model", default=None, help="Refuse unless the index was built with this model.")
@click.option("--pooling", default=None, help="Refuse unless the index was built with this pooling.")
def query(queries, index_dir, k, as_json, model, pooling):
    """Search the index for each of QUERIES (encoded together in one batch)."""
    from .engine import SearchEngine

    engine = _open(index_dir, model, pooling)
    results = engine.search_many(list(queries), k=k)
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
        id_width = min(max([len(h.id) for h in hits] + [2]), 30)
        click.echo(f"{'rank':>4}  {'score':>6}  {'id':<{id_width}}  title / text")
        for hit in hits:
            snippet = " — ".join(p for p in (hit.title, hit.text) if p).replace("\n", " ")
            room = max(width - id_width - 18, 20)
            snippet = snippet if len(snippet) <= room else snippet[: room - 1] + "…"
            click.echo(f"{hit.rank:>4}  {hit.score:>6.3f}  {hit.id[:id_width]:<{id_width}}  {snippet}")


@cli.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(index_dir, as_json):
    """Print the manifest of an index and what is on disk."""
    from .engine import describe

    data = describe(_path(index_dir))  # loads no model: works even where the model is missing
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                click.echo(f"{key}.{sub}: {v}")
        else:
            click.echo(f"{key}: {value}")


@cli.command("eval")
@index_option
@click.option("--queries", "queries_file", required=True, help="BEIR queries.jsonl.")
@click.option("--qrels", "qrels_file", required=True, help="BEIR qrels TSV (query-id corpus-id score).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_(index_dir, queries_file, qrels_file, as_json):
    """Evaluate the index on judged queries: nDCG@10, MRR@10, Recall@100, MAP@100."""
    from .corpus import read_qrels, read_queries

    queries, qrels = read_queries(queries_file), read_qrels(qrels_file)
    result = _open(index_dir, None, None).evaluate(queries, qrels)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        for key, value in result.to_dict().items():
            click.echo(f"{key:>10}: {value:.4f}" if isinstance(value, float) else f"{key:>10}: {value}")


def _path(index_dir: str):
    from pathlib import Path

    return Path(index_dir).expanduser()


def _open(index_dir: str, model: str | None, pooling: str | None):
    """Open an index; ``model``/``pooling`` given by the user must match what it was built with."""
    from .models import model_name
    from .engine import SearchEngine
    from .errors import ManifestMismatch
    from .manifest import Manifest
    from .pooling import check_pooling

    path = _path(index_dir)
    built = Manifest.load(path).embedder
    if pooling is not None and check_pooling(pooling) != built.get("pooling"):
        raise ManifestMismatch(f"index {path} was built with pooling {built.get('pooling')!r}, not {pooling!r}")
    if model is not None and built.get("kind") == "transformers" and model_name(model) != built.get("model"):
        from .embedding import TransformerEmbedder

        return SearchEngine.open(path, embedder=TransformerEmbedder(model, pooling=built.get("pooling"),
                                                                    max_length=built.get("max_length")))
    return SearchEngine.open(path)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="semsearch")
