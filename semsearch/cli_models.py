"""The ``semsearch`` commands that train or attach models: set-reranker, train-reranker, label.

Registered on the group in :mod:`semsearch.cli`, which turns their errors into one-line messages.
"""

from __future__ import annotations

import click

from .cli import _open, _path, cli, index_option


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
    from .engine import SearchEngine
    from .errors import BadInput
    from .rerank import Reranker

    if clear == bool(model):
        raise BadInput("give either a MODEL or --clear")
    engine = SearchEngine.open(_path(index_dir))
    reranker = None if clear else Reranker(model, max_length=max_length, activation=activation, precision=precision,
                                           backend=backend)
    engine.set_default_reranker(reranker)
    click.echo(f"default reranker of {engine.path}: {reranker.name if reranker else 'none'}"
               + (f" (scores: {reranker.score_kind})" if reranker else ""))


@cli.command("train-reranker")
@click.option("--data", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a JSONL of {query, positive}.")
@click.option("--output", required=True, help="Folder for the trained cross-encoder.")
@click.option("--base", default=None, help="Starting model. [default: embedded all-MiniLM-L6-v2 + a new head]")
@click.option("--split", default="train", show_default=True, help="qrels split of a BEIR folder.")
@click.option("--epochs", default=2, show_default=True, type=int)
@click.option("--max-steps", default=None, type=int, help="Stop after this many steps.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-length", default=192, show_default=True, type=int, help="Tokens per pair while training.")
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Index over the same corpus to mine hard negatives from. [default: embed the corpus]")
@click.option("--overwrite", is_flag=True, help="Replace a reranker already at --output.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train_reranker_cmd(data, output, base, split, epochs, max_steps, seed, max_length, index_dir, overwrite, quiet):
    """Train a cross-encoder reranker from relevance judgements (see the model card it writes)."""
    from .rerank_train import train_reranker

    engine = _open(index_dir, None, None) if index_dir else None
    report = train_reranker(data, output, split=split, base=base, epochs=epochs, max_steps=max_steps, seed=seed,
                            max_length=max_length, first_stage=engine, overwrite=overwrite, progress=not quiet)
    click.echo(f"trained reranker written to {report.output}: {report.steps} steps in {report.seconds / 60:.1f} min, "
               f"loss {report.loss_first:.3f} -> {report.loss_last:.3f}, validation nDCG@10 "
               f"{report.validation_ndcg10_first_stage:.4f} (first stage) -> {report.validation_ndcg10_blended:.4f}")


@cli.command()
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Label every document of this index.")
@click.option("--input", "input_file", default=None, help="Label the texts of this file (any corpus format).")
@click.option("--examples", required=True, help="EXAMPLES.jsonl: a few {text, label} lines.")
@click.option("--labels", "labels_file", default=None, help="LABELS.json: label name -> short description.")
@click.option("--method", default="setfit", show_default=True, help="threshold (two labels) or setfit.")
@click.option("--rerank", "rerank", default=None, metavar="MODEL",
              help="threshold: score with this cross-encoder. [default: the index's reranker, else the bi-encoder]")
@click.option("--abstain-band", default=0.0, show_default=True, type=float,
              help="threshold: abstain when the probability is this close to the threshold's.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--output", required=True, help="OUT.jsonl ({id, label, probability}); a re-run skips labelled ids.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def label(index_dir, input_file, examples, labels_file, method, rerank, abstain_band, seed, output, quiet):
    """Label every document of an index (or a file of texts) from a few labelled examples."""
    from .corpus import read_corpus
    from .errors import BadInput
    from .label_corpus import fit_labeler, label_documents, read_examples, read_label_descriptions
    from .rerank import Reranker

    if (index_dir is None) == (input_file is None):
        raise BadInput("give exactly one of --index or --input")
    texts, labels = read_examples(examples)
    descriptions = read_label_descriptions(labels_file) if labels_file else None
    engine = _open(index_dir, None, None) if index_dir else None
    reranker = embedder = None
    if method == "threshold":
        if rerank:
            reranker = Reranker(rerank)
        elif engine is not None and engine.manifest.reranker:
            reranker = engine.default_reranker()
        else:
            from .embedding import TransformerEmbedder

            embedder = engine.embedder if engine is not None else TransformerEmbedder()
    fitted = fit_labeler(method, texts, labels, descriptions, reranker=reranker, embedder=embedder, seed=seed,
                         abstain_band=abstain_band)
    if engine is not None:
        docs, total = engine.store.iter_documents(), len(engine.store)
    else:
        corpus = read_corpus(input_file)
        docs, total = corpus, len(corpus)
    summary = label_documents(docs, fitted, output, total=total, progress=not quiet)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(summary.counts.items()))
    click.echo(f"labelled {summary.labelled} documents into {summary.output} ({counts}); "
               f"{summary.skipped} already labelled were skipped")
