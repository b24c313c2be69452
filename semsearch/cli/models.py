"""The ``semsearch`` commands that train or attach a reranker: set-reranker, train-reranker."""

from __future__ import annotations

import click

from .common import cli, index_option, index_path, open_index, say_check, trust_option


@cli.command("set-reranker")
@click.argument("model", required=False)
@index_option
@click.option("--max-length", default=None, type=int, help="Tokens per pair. [default: the reranker's, else 256]")
@click.option("--activation", default="none", show_default=True, help="none (logits) or sigmoid (probabilities).")
@click.option("--precision", default="auto", show_default=True, metavar="auto|fp32|bf16|int8",
              help="Precision it runs at by default (recorded).")
@click.option("--backend", default="auto", show_default=True, metavar="auto|torch|onnx|openvino",
              help="Runtime it runs on by default (recorded).")
@click.option("--clear", is_flag=True, help="Remove the index's default reranker.")
def set_reranker(model, index_dir, max_length, activation, precision, backend, clear):
    """Make MODEL the index's default reranker (used by `query --rerank` with no model)."""
    from ..errors import BadInput
    from ..index.engine import SearchEngine
    from ..rerank.reranker import Reranker

    if clear == bool(model):
        raise BadInput("give either a MODEL or --clear")
    engine = SearchEngine.open(index_path(index_dir), lazy=True)
    reranker = None if clear else Reranker(model, max_length=max_length, activation=activation, precision=precision,
                                           backend=backend)
    engine.set_default_reranker(reranker)
    click.echo(f"default reranker of {engine.path}: {reranker.name if reranker else 'none'}"
               + (f" (scores: {reranker.score_kind}, blend weight {reranker.first_stage_weight:.2f})" if reranker else ""))
    if reranker:
        say_check(reranker.check)


@cli.command("train-reranker")
@click.option("--data", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a JSONL of {query, positive}.")
@click.option("--output", required=True, help="Folder for the trained cross-encoder.")
@click.option("--base", default=None, help="Starting model. [default: embedded all-MiniLM-L6-v2 + a new head]")
@click.option("--split", default="train", show_default=True, help="qrels split of a BEIR folder.")
@click.option("--epochs", default=2, show_default=True, type=int)
@click.option("--min-steps", default=0, show_default=True, type=int,
              help="Train more epochs if needed to reach this many steps (small label sets).")
@click.option("--max-steps", default=None, type=int, help="Stop after this many steps.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-length", default=256, show_default=True, type=int, help="Tokens per pair while training.")
@click.option("--cross-fit", default=None, type=int, metavar="FOLDS",
              help="Folds of the usefulness check; 0: hold out a slice. [default: 2 below 300 queries, else 0]")
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Index over the same corpus to mine hard negatives from. [default: embed the corpus]")
@click.option("--overwrite", is_flag=True, help="Replace a reranker already at --output.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@trust_option
def train_reranker_cmd(data, output, base, split, epochs, min_steps, max_steps, seed, max_length, cross_fit,
                       index_dir, overwrite, quiet, trust_remote_code):
    """Train a cross-encoder reranker from relevance judgements (see the model card it writes).

    The reranker is checked on judged queries it was not trained on (cross-fitted when there are few);
    if it does not beat the first stage there, it is blended at weight 1 (the first stage's order)."""
    from ..rerank.train import train_reranker

    engine = open_index(index_dir, None, None, trust_remote_code=trust_remote_code) if index_dir else None
    report = train_reranker(data, output, split=split, base=base, epochs=epochs, min_steps=min_steps,
                            max_steps=max_steps, seed=seed, max_length=max_length, cross_fit=cross_fit,
                            first_stage=engine, overwrite=overwrite, progress=not quiet)
    click.echo(f"trained reranker written to {report.output}: {report.steps} steps in {report.seconds / 60:.1f} min, "
               f"loss {report.loss_first:.3f} -> {report.loss_last:.3f}")
    say_check(report.blend_check, logged=True)
