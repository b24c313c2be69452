"""What every ``semsearch`` command shares: the click group (the only place errors become messages and exit
codes), the options several commands take, and opening the index or reranker a command names.

User errors (any :class:`~semsearch.errors.SemsearchError`, and click's own usage errors) print one line to
stderr and exit with status 2; nothing else is printed.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from ..errors import SemsearchError

__all__ = ["cli", "index_option", "trust_option", "precision_options", "corpus_options", "engine_options",
           "rerank_options", "mode_option", "index_path", "open_index", "reranker_for", "rerank_candidates", "say_check"]

DEFAULT_INDEX = "default"  # a name: under $SEMSEARCH_INDEX_ROOT like any other

index_option = click.option(
    "--index",
    "index_dir",
    envvar="SEMSEARCH_INDEX",
    default=DEFAULT_INDEX,
    show_default="the name 'default'",
    show_envvar=True,
    type=click.Path(file_okay=False),
    help="Index: a NAME under the index root ($SEMSEARCH_INDEX_ROOT, default indexes/), or a PATH (with a '/').",
)

trust_option = click.option(
    "--trust-remote-code", is_flag=True,
    help="Let the index's recorded models run code shipped with them (asked only of an index built with "
         "--trust-remote-code).",
)


def precision_options(command=None, *, default_help="auto: bf16 where the CPU has it, else fp32"):
    """--precision and --backend for the bi-encoder."""
    if command is None:
        return lambda c: precision_options(c, default_help=default_help)
    command = click.option("--backend", default=None, metavar="auto|torch|onnx|openvino",
                           help="Runtime: torch, ONNX Runtime or OpenVINO (int8 runs on either of the last two). "
                                "[default: auto: torch; int8 on openvino where the CPU has VNNI or AMX, else onnx]")(command)
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
        click.option("--on-error", default="fail", show_default=True, metavar="fail|skip",
                     help="A file of a folder corpus that cannot be read (broken or encrypted PDF, binary junk): "
                          "stop (fail), or report it and go on (skip)."),
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


#: click 8.2+ raises this for a command run without the arguments it needs to do anything (older click printed
#: the help itself); a class no error is an instance of where it does not exist
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", type("_Never", (Exception,), {}))


class _Cli(click.Group):
    """A click group whose errors are one line on stderr (exit 2), with no usage dump or traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        except _NO_ARGS_IS_HELP as exc:  # `semsearch` alone (or a group without its command): the help, as asked
            click.echo(exc.ctx.get_help())
            sys.exit(0)
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


def rerank_options(command):
    """--rerank [MODEL], --candidates N, --max-length N and --rerank-precision/--rerank-backend, shared by
    query and eval."""
    command = click.option("--rerank-passages", default=None, type=int, metavar="1|2",
                           help="Passages of each hit the reranker reads; a document scores its best. "
                                "[default: the reranker's, else 1]")(command)
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
                                "weight was tuned for (semsearch tune --rerank), else 50; at least -k]")(command)
    command = click.option("--rerank", "rerank", is_flag=False, flag_value="", default=None, metavar="[MODEL]",
                           help="Rerank with a cross-encoder (folder or hub id); "
                                "alone: the index's default reranker.")(command)
    return command


mode_option = click.option("--mode", default=None, metavar="dense|lexical|hybrid",
                           help="First stage. [default: hybrid when the index has a lexical side, else dense]")


#: What an index (or served labeller) name may be: letters, digits, ".", "_", "-"; no slash
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"


def index_path(index_dir: str):
    """``--index``: a NAME (letters, digits, ``.``, ``_``, ``-``; no slash) is a folder under the index root
    (``$SEMSEARCH_INDEX_ROOT``, default ``indexes``) and cannot leave it; anything with a slash, or
    starting with ``.`` or ``~``, is a path, where ``..`` is refused."""
    import re
    from pathlib import Path

    from ..errors import BadInput

    if "/" in index_dir or os.sep in index_dir or index_dir.startswith((".", "~")):
        path = Path(index_dir).expanduser()
        if ".." in path.parts:
            raise BadInput(f"index path {index_dir!r} climbs out of its folder with '..'; give a plain path")
        return path
    if not re.fullmatch(NAME_PATTERN, index_dir):
        raise BadInput(f"invalid index name {index_dir!r}: use letters, digits, '.', '_' and '-' (or give a path "
                       "with a '/')")
    return Path(os.environ.get("SEMSEARCH_INDEX_ROOT") or "indexes").expanduser() / index_dir


def open_index(index_dir: str, model: str | None, pooling: str | None, precision: str | None = None,
               backend: str | None = None, trust_remote_code: bool = False):
    """Open an index; ``model``/``pooling`` given by the user must match what it was built with;
    queries are embedded at ``precision`` (default: the index's)."""
    from ..encode.models import model_name
    from ..encode.pooling import check_pooling
    from ..errors import ManifestMismatch
    from ..index.engine import SearchEngine
    from ..index.manifest import Manifest

    path = index_path(index_dir)
    built = Manifest.load(path).embedder
    if pooling is not None and check_pooling(pooling) != built.get("pooling"):
        raise ManifestMismatch(f"index {path} was built with pooling {built.get('pooling')!r}, not {pooling!r}")
    if model is not None and built.get("kind") == "transformers" and model_name(model) != built.get("model"):
        from ..encode.precision import fill_in, runnable_here
        from ..encode.transformer import TransformerEmbedder, model_weights_sha256

        given = model_weights_sha256(model)  # a copy of the same model elsewhere is fine; another model is not
        if not (given and given == built.get("weights_sha256")):
            raise ManifestMismatch(f"index {path} was built with model {built.get('model')!r}, not {model!r}")
        recorded = (built.get("precision", "fp32"), built.get("backend", "torch"))
        precision, backend = (fill_in(recorded, precision, backend) if precision or backend
                              else runnable_here(*recorded, "the index's embedder"))
        return SearchEngine.open(path, embedder=TransformerEmbedder(
            model, pooling=built.get("pooling"), max_length=built.get("max_length"), precision=precision,
            backend=backend, trust_remote_code=trust_remote_code), trust_remote_code=trust_remote_code)
    return SearchEngine.open(path, precision=precision, backend=backend, lazy=True,  # a model only if needed
                             trust_remote_code=trust_remote_code)


def reranker_for(engine, rerank: str | None, max_length: int | None, precision: str | None = None,
                 backend: str | None = None, passages: int | None = None):
    """The reranker asked for: none, the index's default (``--rerank`` alone), or a model."""
    from ..errors import BadInput
    from ..rerank.reranker import PASSAGES_READ, Reranker

    if rerank is None:
        if passages is not None:
            raise BadInput("--rerank-passages: only with --rerank")
        return None
    if passages is not None and passages not in PASSAGES_READ:
        raise BadInput(f"--rerank-passages must be 1 or 2, not {passages}")
    if rerank == "":
        if not engine.manifest.reranker:
            raise BadInput(f"index {engine.path} has no default reranker; pass --rerank MODEL or run set-reranker")
        reranker = engine.default_reranker(max_length, precision=precision, backend=backend)
    else:
        reranker = Reranker(rerank, max_length=max_length, precision=precision or "auto", backend=backend or "auto")
    if passages is not None:
        reranker.passages = passages
    return reranker


def rerank_candidates(reranker, candidates: int | None, k: int = 1) -> int:
    """--candidates, defaulting to the count the reranker's blend weight was tuned for (else 50), at least ``k``."""
    from ..rerank.blend import default_candidates, fitted_candidates

    if candidates is None:
        return default_candidates(reranker, k)
    fitted = fitted_candidates(reranker)
    if fitted and candidates != fitted and (reranker.first_stage_weight or 0) > 0:
        logging.getLogger(__name__).warning(
            "the reranker's blend weight was fitted on %d candidates, not %d", fitted, candidates)
    return candidates


def say_check(check, logged: bool = False) -> None:
    """A reranker's usefulness check (:class:`~semsearch.rerank.blend.BlendCheck`) in one line: on stdout
    when it helps, as a warning on stderr when it does not or was never checked (unless the library has
    ``logged`` that warning already, as training and tuning do)."""
    if logged and (check is None or not check.useful):
        return
    if check is None:
        click.echo("note: this reranker has not been checked against a first stage; it is blended at the weight it "
                   "came with. Run `semsearch tune --rerank` with judged queries it was not trained on.", err=True)
    elif check.useful:
        click.echo(f"check: {check.summary()}")
    else:
        click.echo(f"warning: {check.summary()}", err=True)
