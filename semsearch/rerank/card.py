"""Writing a trained reranker: weights, tokenizer, ``semsearch_reranker.json`` (max length, blend weight,
its check, the training report) and a model card that says in words whether it is worth using.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..encode.models import DEFAULT_MODEL
from ..files import atomic_folder
from ..version import __version__
from .reranker import RERANKER_CONFIG

if TYPE_CHECKING:
    from .train import TrainingReport

__all__ = ["save_reranker", "VALIDATION_QUERIES"]

#: Written next to the model: the ids of the training queries the shipped model never saw.
VALIDATION_QUERIES = "validation_queries.json"


def save_reranker(model, tokenizer, output: Path, report: "TrainingReport", history: list[dict], val_qids: list[str]) -> None:
    with atomic_folder(output) as tmp:
        (tmp / VALIDATION_QUERIES).write_text(json.dumps(val_qids) + "\n", encoding="utf-8")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config = {
            "semsearch_version": __version__,
            "score_kind": "logit",
            "max_length": report.max_length,
            "first_stage_weight": report.first_stage_weight,
            **({"candidates": report.candidates} if report.candidates else {}),
            "check": report.check,
            "training": asdict(report),
            "history": history,
        }
        (tmp / RERANKER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(_model_card(report, history), encoding="utf-8")


def _model_card(r: "TrainingReport", history: list[dict]) -> str:
    rows = "\n".join(
        f"| {h['epoch']} | {h['step']} | {h['loss']:.3f} | {h['first_stage_ndcg10']:.4f} | {h['reranked_ndcg10']:.4f} "
        f"| {h['gain']:+.4f} ± {h['gain_se']:.4f} | {h['weight']:.2f} |"
        for h in history
    )
    verdict = ("**Not checked:** " if r.check is None else "**Worth using:** " if r.useful
               else "**Not better than the first stage:** ") + r.summary() + "."
    table = f"""
Check per epoch ({r.check_method}; the blend weight is chosen on other folds than the one it is judged on):

| epoch | step | mean loss | first stage | reranked | gain over first stage | weight |
|---|---|---|---|---|---|---|
{rows}
""" if rows else ""
    return f"""# Cross-encoder reranker trained with semsearch {__version__}

{verdict}

- Base model: `{r.base}`{" with a fresh one-logit classification head" if r.base == DEFAULT_MODEL else ""}
- Data: {r.source}; {r.train_queries} training queries, {r.groups_per_epoch} (query, positive) groups per epoch
- Groups of {r.group_size}: the positive, hard negatives from the bi-encoder's top results that are not
  judged relevant, and random documents; softmax cross-entropy over each group
- {r.epochs} epoch(s), {r.steps} steps, max length {r.max_length} tokens, seed {r.seed}, {r.seconds / 60:.1f} minutes
  (checks included)
- Loss: {r.loss_first:.3f} (first 20 steps) → {r.loss_last:.3f} (last 20 steps)
- Kept: epoch {r.best_epoch}. Scores are raw logits (`score_kind: logit`).
- Usefulness check: {r.check_method}; first-stage blend weight {r.first_stage_weight:.2f}
{table}
Load it with `semsearch query … --rerank {r.output}` or `semsearch.Reranker({r.output!r})`; fit its blend weight
for an index with `semsearch tune --rerank {r.output}` on judged queries it was not trained on.
"""

