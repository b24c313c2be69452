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
    help="Index: a NAME under the index root ($SEMSEARCH_INDEX_ROOT, default indexes/), or a PATH (with a '/').",
)


def precision_options(command=None, *, default_help="auto: bf16 where the CPU has it, else fp32"):
    """--precision and --backend for the bi-encoder."""
    if command is None:
        return lambda c: precision_options(c, default_help=default_help)
    command = click.option("--backend", default=None, metavar="auto|torch|onnx|openvino",
                           help="Runtime: torch, ONNX Runtime or OpenVINO (int8 runs on either of the last two). "
                                "[default: auto: torch, or onnx for int8]")(command)
    return click.option("--precision", default=None, metavar="auto|fp32|bf16|int8",
                        help=f"Bi-encoder precision. [default: {default_help}]")(command)


def corpus_options(command):
    """--format, --id-field, --text-field and --title-field: how to read a corpus file (index, add)."""
    for option in reversed([
        click.option("--format", "fmt", default=None, help="jsonl, csv, tsv, parquet, txt or dir. "
                     "[default: from the extension]"),
        click.option("--id-field", default=None, help="Id field of JSONL/CSV/TSV records. [default: _id or id]"),
        click.option("--text-field", default="text", show_default=True, help="Text field of JSONL/CSV/TSV records."),
        click.option("--title-field", default="title", show_default=True, help="Title field of JSONL/CSV/TSV records."),
    ]):
        command = option(command)
    return command


def engine_options(command):
    """--engine and the options of a Ray build (index)."""
    for option in reversed([
        click.option("--engine", default="local", show_default=True, metavar="local|ray",
                     help="Where to embed and build: this process, or a Ray cluster (pip install 'semsearch[ray]')."),
        click.option("--ray-address", default=None, help="Ray cluster to join. [default: start a local one]"),
        click.option("--shards", default=None, type=int, help="Ray: tasks filling the vector index. [default: CPUs]"),
        click.option("--actors", default=None, type=int, help="Ray: embedding actors. [default: CPUs - 1]"),
        click.option("--cpus-per-actor", default=None, type=int, help="Ray: CPUs per actor. [default: 1]"),
        click.option("--rows-per-batch", default=None, type=int, help="Ray: records an actor reads at a time. "
                     "[default: 1024]"),
        click.option("--on-disk", is_flag=True, help="Ray, IVF: keep the inverted lists in vectors.ivfdata."),
    ]):
        command = option(command)
    return command


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
    """transformers prints a progress bar and a load report for every model load; keep stderr for our own
    output. Set through the environment so that no command pays for importing transformers up front."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        return
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # one line per failed retry otherwise
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    transformers = sys.modules.get("transformers")
    if transformers is not None:  # already imported (e.g. the CLI invoked from Python): switch it directly
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


@cli.command()
@click.argument("corpus")
@index_option
@click.option("--model", default=None,
              help="Hugging Face model: local folder or hub id. [default: embedded all-MiniLM-L6-v2]")
@click.option("--pooling", default=None, help="mean, cls or pooler. [default: the model's own, else mean]")
@click.option("--factory", default=None,
              help="FAISS index_factory string. [default: Flat below 200k docs, else HNSW32]")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Texts per model call.")
@click.option("--max-length", default=None, type=int, help="Tokens per document. [default: the model's]")
@corpus_options
@click.option("--no-lexical", is_flag=True, help="Leave out the BM25 side (dense search only).")
@precision_options
@click.option("--overwrite", is_flag=True, help="Replace an existing index at --index.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a hub model to run its own code.")
@engine_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def index(corpus, index_dir, model, pooling, factory, batch_size, max_length, fmt, id_field, text_field,
          title_field, no_lexical, precision, backend, overwrite, trust_remote_code, engine, ray_address, shards,
          actors, cpus_per_actor, rows_per_batch, on_disk, quiet):
    """Index CORPUS: a JSONL/CSV/TSV/Parquet/txt file, a folder of .txt/.md files, or builtin:python-docs.
    With --engine ray: a JSONL/CSV/TSV/Parquet file or a folder of such files."""
    from .corpus import read_corpus
    from .embedding import TransformerEmbedder
    from .engine import SearchEngine, check_target
    from .errors import BadInput

    ray_options = {"ray_address": ray_address, "shards": shards, "actors": actors, "on_disk": on_disk or None,
                   "cpus_per_actor": cpus_per_actor, "rows_per_batch": rows_per_batch}
    if engine not in ("local", "ray"):
        raise BadInput(f"unknown engine {engine!r}; valid values are: local, ray")
    if engine == "local" and any(v is not None for v in ray_options.values()):
        given = [f"--{k.replace('_', '-')}" for k, v in ray_options.items() if v is not None]
        raise BadInput(f"{', '.join(given)}: only with --engine ray")
    if engine == "ray":
        from .ray_corpus import corpus_files

        corpus_files(corpus, fmt)  # fail before the model loads
        _quiet_ray(quiet)
    else:
        docs = read_corpus(corpus, format=fmt, id_field=id_field, text_field=text_field, title_field=title_field)
    check_target(_path(index_dir), overwrite)  # fail before the model loads
    embedder = TransformerEmbedder(model, pooling=pooling, max_length=max_length, trust_remote_code=trust_remote_code,
                                   precision=precision or "auto", backend=backend or "auto")
    if engine == "ray":
        from .distributed import build_with_ray

        engine = build_with_ray(corpus, _path(index_dir), embedder=embedder, factory=factory, shards=shards,
                                actors=actors, cpus_per_actor=1 if cpus_per_actor is None else cpus_per_actor,
                                batch_size=batch_size, format=fmt, id_field=id_field,
                                rows_per_batch=1024 if rows_per_batch is None else rows_per_batch,
                                text_field=text_field, title_field=title_field, lexical=not no_lexical, on_disk=on_disk,
                                overwrite=overwrite, ray_address=ray_address, progress=not quiet)
    else:
        engine = SearchEngine.build(docs, _path(index_dir), embedder=embedder, factory=factory, batch_size=batch_size,
                                    lexical=not no_lexical, overwrite=overwrite, progress=not quiet)
    m = engine.manifest
    click.echo(f"indexed {m.documents} documents into {engine.path} "
               f"(model {m.embedder['model']}, pooling {m.embedder['pooling']}, factory {m.factory}"
               f"{', BM25' if m.lexical else ''})")


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


def rerank_options(command):
    """--rerank [MODEL], --candidates N, --max-length N and --rerank-precision/--rerank-backend, shared by
    query and eval."""
    command = click.option("--rerank-backend", default=None, metavar="auto|torch|onnx|openvino",
                           help="Reranker runtime, as --backend. [default: the recorded one for the index's "
                                "reranker, else auto]")(command)
    command = click.option("--rerank-precision", default=None, metavar="auto|fp32|bf16|int8",
                           help="Reranker precision (int8 runs on ONNX Runtime or OpenVINO). [default: the recorded "
                                "one for the index's reranker, else auto]")(command)
    command = click.option("--max-length", "rerank_max_length", default=None, type=int,
                           help="Reranker tokens per (query, document) pair. "
                                "[default: the reranker's, else 256]")(command)
    command = click.option("--candidates", default=None, type=int,
                           help="First-stage hits the reranker reads. [default: what the reranker's blend "
                                "weight was tuned for (semsearch tune --rerank), else 50]")(command)
    command = click.option("--rerank", "rerank", is_flag=False, flag_value="", default=None, metavar="[MODEL]",
                           help="Rerank with a cross-encoder (folder or hub id); "
                                "alone: the index's default reranker.")(command)
    return command


mode_option = click.option("--mode", default=None, metavar="dense|lexical|hybrid",
                           help="First stage. [default: hybrid when the index has a lexical side, else dense]")


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
    from .filters import parse_filters

    parsed = parse_filters(filters)  # a malformed filter fails before the model loads
    engine = _open(index_dir, model, pooling, precision, backend)
    reranker = _reranker(engine, rerank, rerank_max_length, rerank_precision, rerank_backend)
    candidates = _candidates(reranker, candidates)
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


@cli.command()
@click.argument("corpus")
@index_option
@click.option("--batch-size", default=32, show_default=True, type=int, help="Texts per model call.")
@corpus_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def add(corpus, index_dir, batch_size, fmt, id_field, text_field, title_field, quiet):
    """Add the documents of CORPUS to an index: new ids are inserted, existing ones updated.

    Only new or changed text is embedded. Each batch is durable once written; re-running the same
    command after an interruption finishes the job without duplicates."""
    from .corpus import read_corpus

    docs = read_corpus(corpus, format=fmt, id_field=id_field, text_field=text_field, title_field=title_field)
    engine = _open(index_dir, None, None)
    report = engine.add(docs, batch_size=batch_size, progress=not quiet)
    click.echo(f"{engine.path}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged; "
               f"{report.embedded} texts embedded, {report.from_cache} from the cache; "
               f"{engine.manifest.documents} documents in all")


@cli.command()
@click.argument("ids", nargs=-1)
@index_option
@click.option("--ids-file", default=None, type=click.Path(dir_okay=False),
              help="A file of ids to delete, one per line.")
def delete(ids, index_dir, ids_file):
    """Delete documents by id (all must exist, or nothing is deleted)."""
    from .errors import BadInput

    wanted = list(ids)
    if ids_file:
        try:
            with open(ids_file, encoding="utf-8") as fh:
                wanted += [line.strip() for line in fh if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read ids file {ids_file}: {exc}") from None
    if not wanted:
        raise BadInput("give ids to delete, or --ids-file")
    engine = _open(index_dir, None, None)
    report = engine.delete(wanted)
    click.echo(f"{engine.path}: {report.deleted} deleted; {engine.manifest.documents} documents left "
               "(run `semsearch compact` to reclaim their space)")


@cli.command()
@index_option
def compact(index_dir):
    """Rebuild an index's vector and BM25 files from its store and reclaim deleted documents' space."""
    engine = _open(index_dir, None, None)
    report = engine.compact()
    click.echo(f"{engine.path}: {report.bytes_before / 2**20:.1f} MiB -> {report.bytes_after / 2**20:.1f} MiB; "
               f"{report.vectors_dropped} unused vectors dropped in {report.seconds:.1f} s")


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


_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"


def _path(index_dir: str):
    """``--index``: a NAME (letters, digits, ``.``, ``_``, ``-``; no slash) is a folder under the index root
    (``$SEMSEARCH_INDEX_ROOT``, default ``indexes``) and cannot leave it; anything with a slash, or
    starting with ``.`` or ``~``, is a path, where ``..`` is refused."""
    import re
    from pathlib import Path

    from .errors import BadInput

    if "/" in index_dir or os.sep in index_dir or index_dir.startswith((".", "~")):
        path = Path(index_dir).expanduser()
        if ".." in path.parts:
            raise BadInput(f"index path {index_dir!r} climbs out of its folder with '..'; give a plain path")
        return path
    if not re.fullmatch(_NAME, index_dir):
        raise BadInput(f"invalid index name {index_dir!r}: use letters, digits, '.', '_' and '-' (or give a path "
                       "with a '/')")
    return Path(os.environ.get("SEMSEARCH_INDEX_ROOT") or "indexes").expanduser() / index_dir


def _open(index_dir: str, model: str | None, pooling: str | None, precision: str | None = None,
          backend: str | None = None):
    """Open an index; ``model``/``pooling`` given by the user must match what it was built with;
    queries are embedded at ``precision`` (default: the index's)."""
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
        from .inference import fill_in, runnable_here

        recorded = (built.get("precision", "fp32"), built.get("backend", "torch"))
        precision, backend = (fill_in(recorded, precision, backend) if precision or backend
                              else runnable_here(*recorded, "the index's embedder"))
        return SearchEngine.open(path, embedder=TransformerEmbedder(
            model, pooling=built.get("pooling"), max_length=built.get("max_length"), precision=precision,
            backend=backend))
    return SearchEngine.open(path, precision=precision, backend=backend)


def _reranker(engine, rerank: str | None, max_length: int | None, precision: str | None = None,
              backend: str | None = None):
    """The reranker asked for: none, the index's default (``--rerank`` alone), or a model."""
    from .errors import BadInput
    from .rerank import Reranker

    if rerank is None:
        return None
    if rerank == "":
        if not engine.manifest.reranker:
            raise BadInput(f"index {engine.path} has no default reranker; pass --rerank MODEL or run set-reranker")
        return engine.default_reranker(max_length, precision=precision, backend=backend)
    return Reranker(rerank, max_length=max_length, precision=precision or "auto", backend=backend or "auto")


def _candidates(reranker, candidates: int | None) -> int:
    """--candidates, defaulting to the count the reranker's blend weight was tuned for (else 50)."""
    tuned = getattr(reranker, "tuned_on", None) or {}
    if candidates is None:
        return int(tuned.get("candidates") or 50)
    if tuned.get("candidates") and candidates != tuned["candidates"]:
        logging.getLogger(__name__).warning(
            "the reranker's blend weight was tuned for %d candidates, not %d", tuned["candidates"], candidates)
    return candidates


from . import cli_eval, cli_models  # noqa: E402,F401  (register eval/tune/bench; set-reranker, train-reranker, label)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="semsearch")
