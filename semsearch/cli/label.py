"""The ``semsearch label`` command: label every document of an index, or a file of texts, from a few examples."""

from __future__ import annotations

import click

from .common import cli, open_index, trust_option


@cli.command()
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Label every document of this index.")
@click.option("--input", "input_file", default=None, help="Label the texts of this file (any corpus format).")
@click.option("--examples", default=None, help="EXAMPLES.jsonl: a few {text, label} lines (none: zero-shot).")
@click.option("--labels", "labels_file", default=None, help="LABELS.json: label name -> short description.")
@click.option("--method", default=None,
              help="setfit, threshold (two labels) or zero-shot (descriptions only, uncalibrated). "
                   "[default: setfit with --examples, else zero-shot]")
@click.option("--rerank", "rerank", default=None, metavar="MODEL",
              help="threshold: score with this cross-encoder. [default: the index's reranker, else the bi-encoder]")
@click.option("--abstain-band", default=0.0, show_default=True, type=float,
              help="threshold: abstain when the probability is this close to the threshold's.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--output", required=True, help="OUT.jsonl ({id, label, probability}); a re-run skips labelled ids.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@trust_option
def label(index_dir, input_file, examples, labels_file, method, rerank, abstain_band, seed, output, quiet,
          trust_remote_code):
    """Label every document of an index (or a file of texts) from a few labelled examples, or zero-shot
    from the label descriptions alone."""
    from ..corpus.readers import read_corpus
    from ..errors import BadInput
    from ..label.documents import (
        check_label_output,
        fit_labeler,
        label_documents,
        read_examples,
        read_label_descriptions,
    )
    from ..rerank.reranker import Reranker

    if (index_dir is None) == (input_file is None):
        raise BadInput("give exactly one of --index or --input")
    check_label_output(output)  # before any model loads: a bad --output fails in a second, not after the fit
    method = method or ("setfit" if examples else "zero-shot")
    texts, labels = read_examples(examples) if examples else ([], [])
    descriptions = read_label_descriptions(labels_file) if labels_file else None
    engine = open_index(index_dir, None, None, trust_remote_code=trust_remote_code) if index_dir else None
    reranker = embedder = None
    if method == "zero-shot":
        from ..encode.transformer import TransformerEmbedder

        embedder = engine.embedder if engine is not None else TransformerEmbedder()
    elif method == "threshold":
        if rerank:
            reranker = Reranker(rerank)
        elif engine is not None and engine.manifest.reranker:
            reranker = engine.default_reranker()
        else:
            from ..encode.transformer import TransformerEmbedder

            embedder = engine.embedder if engine is not None else TransformerEmbedder()
    fitted = fit_labeler(method, texts, labels, descriptions, reranker=reranker, embedder=embedder, seed=seed,
                         abstain_band=abstain_band)
    if engine is not None:
        docs, total = engine.store.iter_documents(), len(engine.store)
    else:
        corpus = read_corpus(input_file)
        docs, total = corpus, corpus.size_hint
    summary = label_documents(docs, fitted, output, total=total, progress=not quiet)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(summary.counts.items()))
    click.echo(f"labelled {summary.labelled} documents into {summary.output} ({counts}); "
               f"{summary.skipped} already labelled were skipped")
    if not fitted.calibrated:
        click.echo("zero-shot probabilities come from description cosines alone: they rank, but are not "
                   "calibrated; a few labelled examples (--examples) calibrate them", err=True)
