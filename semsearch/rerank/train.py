"""Training a cross-encoder reranker from relevance judgements (``semsearch train-reranker``).

Recipe: each labelled (query, positive) pair becomes a group of ``group_size``
pairs: the positive, ``hard_negatives`` documents the bi-encoder ranks high for
the query but that are not judged relevant, and random documents. The model
(default: the embedded all-MiniLM-L6-v2 body with a fresh one-logit head) is
trained with a softmax cross-entropy over each group (the positive must win).
Negatives are re-drawn every epoch. With an index over the corpus, a document
is read as the index's best passage for the query, as the reranker reads hits.

Every trained reranker carries a check of its own usefulness (:func:`~.blend.check_blend`):
the blend weight with the first stage and the nDCG@10 it gains over the first stage
on judged queries it was not trained on. With fewer than :data:`CROSS_FIT_BELOW`
queries the check is **cross-fitted**: models trained on all but one fold score that
fold, and the shipped model is trained on every query; with more, a seeded slice is
held out (it also picks the best epoch). A reranker whose held-out gain is not
positive is blended at weight 1: rankings keep the first stage's order.

>>> report = train_reranker("../shared/datasets/beir/scifact", "models/scifact-reranker")   # doctest: +SKIP
>>> report.useful, report.first_stage_weight                                              # doctest: +SKIP
(True, 0.4)
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..encode.models import bf16_supported, model_folder, model_name, quiet_loading
from ..errors import BadInput
from .blend import BlendCheck
from .card import VALIDATION_QUERIES, save_reranker
from .mining import Mined, draw_negatives
from .reranker import RERANKER_CONFIG
from .training_data import TrainingData, read_training_data

__all__ = ["TrainingReport", "train_reranker", "CROSS_FIT_BELOW", "VALIDATION_QUERIES"]

log = logging.getLogger(__name__)

#: Below this many judged queries the usefulness check is cross-fitted instead of held out.
CROSS_FIT_BELOW = 300


@dataclass(frozen=True)
class TrainingReport:
    """What :func:`train_reranker` did and what its check found (``check``: :meth:`BlendCheck.to_dict`)."""

    output: str
    base: str
    source: str
    epochs: int
    steps: int
    groups_per_epoch: int
    group_size: int
    train_queries: int
    validation_queries: int
    best_epoch: int
    loss_first: float
    loss_last: float
    validation_ndcg10_first_stage: float
    validation_ndcg10_reranked: float
    validation_ndcg10_blended: float
    first_stage_weight: float
    max_length: int
    seed: int
    seconds: float
    check: dict[str, Any] | None = None
    check_method: str = "none"
    candidates: int | None = None  # first-stage hits per query the check fitted the blend weight on (None: no check)

    @property
    def blend_check(self) -> BlendCheck | None:
        """The check as a :class:`BlendCheck`."""
        return BlendCheck.from_dict(self.check) if self.check else None

    @property
    def useful(self) -> bool:
        """True when the reranker gained nDCG@10 over the first stage on queries it was not trained on."""
        return bool(self.check and self.check["useful"])

    def summary(self) -> str:
        """One sentence on the check (what the blend weight is and why)."""
        if self.check is None:
            why = ("it was trained on pseudo-queries, which cannot check it" if self.check_method.startswith("none:")
                   else "no judged query was held out for it: cross-fitting was off and no share was held out")
            return (f"the reranker was not checked on judged queries ({why}); it is blended at weight "
                    f"{self.first_stage_weight:.2f} until `semsearch tune --rerank` checks it")
        return BlendCheck.from_dict(self.check).summary()


@dataclass(frozen=True)
class _Recipe:
    max_length: int
    group_size: int
    hard_negatives: int
    mine_depth: int
    groups_per_step: int
    lr: float
    head_lr: float
    epochs: int
    min_steps: int
    max_steps: int | None
    bf16: bool

    def steps(self, groups: int) -> tuple[int, int]:
        """(epochs, steps) for ``groups`` (query, positive) groups per epoch."""
        per_epoch = max(1, math.ceil(groups / self.groups_per_step))
        epochs = max(self.epochs, math.ceil(self.min_steps / per_epoch))
        return epochs, min(per_epoch * epochs, self.max_steps or sys.maxsize)


def train_reranker(
    data: TrainingData | str | os.PathLike,
    output: str | os.PathLike,
    *,
    split: str = "train",
    base: str | None = None,
    epochs: int = 2,
    min_steps: int = 0,
    max_steps: int | None = None,
    seed: int = 0,
    max_length: int = 256,
    group_size: int = 8,
    hard_negatives: int = 5,
    mine_depth: int = 30,
    groups_per_step: int = 2,
    lr: float = 5e-5,
    head_lr: float = 1e-3,
    validation_fraction: float = 0.1,
    cross_fit: int | None = None,
    unchecked_weight: float = 1.0,
    candidates: int = 20,
    bf16: bool | None = None,
    first_stage=None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainingReport:
    """Train a cross-encoder on ``data`` and write it to ``output`` (a folder :class:`Reranker` loads).

    ``data`` is a BEIR folder (its ``split`` qrels are used), a JSONL file of
    ``{"query", "positive"}`` pairs, or :class:`~.training_data.TrainingData`. ``base`` is the
    starting model: a bi-encoder body gets a new head, a cross-encoder (one semsearch trained, say)
    is trained further.

    ``first_stage`` is a :class:`~semsearch.SearchEngine` over the same corpus: hard negatives are mined
    from its dense side, documents are read as its best passage for the query, and the check reranks its
    default first stage (hybrid when tuned). Without it the corpus is embedded in memory with the default
    bi-encoder and the check reranks that dense ranking. ``cross_fit`` is the number of folds of the
    check (default: 2 below :data:`CROSS_FIT_BELOW` queries, else a held-out ``validation_fraction``;
    0 forces the held-out slice). Pseudo-queries (``data.judged`` false, e.g.
    :func:`~.training_data.inverse_cloze`) cannot check a reranker: all of them train it, and it ships
    at ``unchecked_weight`` (default 1, the first stage's order) until ``semsearch tune --rerank``
    checks it on judged queries. Training runs ``epochs`` epochs, more if needed to reach
    ``min_steps``, at most ``max_steps``. ``bf16`` (default: when the CPU supports it) runs forward and
    backward passes under bfloat16 autocast with float32 weights.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    data = read_training_data(data, split)
    _check_options(epochs, min_steps, max_steps, group_size, hard_negatives, groups_per_step, validation_fraction,
                   candidates)
    output = Path(output)
    if output.exists() and (any(output.iterdir()) if output.is_dir() else True):
        if not overwrite or not (output / RERANKER_CONFIG).is_file():
            raise BadInput(f"{output} exists; pass overwrite=True (CLI: --overwrite) to replace a trained reranker")
    recipe = _Recipe(max_length, group_size, hard_negatives, mine_depth, groups_per_step, lr, head_lr, epochs,
                     min_steps, max_steps, bf16_supported() if bf16 is None else bf16)

    qids = data.usable_queries()
    if not qids:
        raise BadInput("no query has a relevant document in the corpus")
    random.Random(seed).shuffle(qids)
    if not 0 <= unchecked_weight <= 1:
        raise BadInput(f"the unchecked blend weight must be in [0, 1], got {unchecked_weight}")
    folds = _folds(len(qids), cross_fit) if data.judged else 0
    n_val = 0 if folds or len(qids) < 20 or not data.judged else int(round(len(qids) * validation_fraction))
    n_val = n_val if n_val >= 2 else 0  # a check needs 2 queries at least
    val_qids, train_qids = sorted(qids[:n_val]), sorted(qids[n_val:])
    base_name = model_name(base)
    base_folder = model_folder(base_name)
    _check_base(base_folder, base_name)  # before mining, which takes minutes
    mined = Mined(data, qids, max(mine_depth, candidates), candidates if data.judged else 0, first_stage, progress)

    trainer = _Trainer(data, mined, recipe, base_folder)
    fold_sets = [sorted(qids[f::folds]) for f in range(folds)]
    total = sum(recipe.steps(len(mined.positives(set(qids) - set(held))))[1] for held in fold_sets)
    total += recipe.steps(len(mined.positives(train_qids)))[1]
    bar = tqdm(total=total, desc="training reranker", unit="step", file=sys.stderr, disable=not progress)

    check, history, method = None, [], "none"
    if folds:  # cross-fitted: each fold scored by a model that never saw it
        method = f"cross-fitted, {folds} folds"
        scores: dict[str, np.ndarray] = {}
        for f, held in enumerate(fold_sets):
            bar.set_description(f"training reranker (check fold {f + 1}/{folds})")
            model = trainer.new_model(seed + 1 + f)
            trainer.fit(model, sorted(set(qids) - set(held)), seed + 1 + f, bar)
            scores.update(trainer.score(model, held))
        check = mined.check(qids, scores, seed, "queries, each scored by a model trained without it")
        bar.set_description("training reranker (final model)")
    model = trainer.new_model(seed)

    def on_epoch(epoch: int, step: int, loss: float) -> dict | None:
        if not val_qids:
            return None
        epoch_check = mined.check(val_qids, trainer.score(model, val_qids), seed, "held-out training queries")
        history.append({"epoch": epoch, "step": step, "loss": loss, **epoch_check.to_dict()})
        log.info("epoch %d: %s", epoch, epoch_check.summary())
        return {"score": epoch_check.held_out_ndcg10, "check": epoch_check}

    fit = trainer.fit(model, train_qids, seed, bar, on_epoch)
    bar.close()
    if val_qids:
        method = f"held out, {len(val_qids)} queries"
        check = fit.best["check"]
    elif check is not None:
        history.append({"epoch": fit.epochs, "step": fit.steps, "loss": fit.last_epoch_loss, **check.to_dict()})
    weight = check.weight if check is not None else (1.0 if data.judged else unchecked_weight)
    if not data.judged:
        method = "none: pseudo-queries cannot check a reranker"
    report = TrainingReport(
        output=str(output), base=base_name, source=data.source, epochs=fit.epochs, steps=fit.steps,
        groups_per_epoch=len(mined.positives(train_qids)), group_size=group_size, train_queries=len(train_qids),
        validation_queries=check.queries if check else 0, best_epoch=fit.best_epoch,
        loss_first=float(np.mean(fit.losses[:20])) if fit.losses else float("nan"),
        loss_last=float(np.mean(fit.losses[-20:])) if fit.losses else float("nan"),
        validation_ndcg10_first_stage=check.first_stage_ndcg10 if check else float("nan"),
        validation_ndcg10_reranked=check.reranked_ndcg10 if check else float("nan"),
        validation_ndcg10_blended=check.held_out_ndcg10 if check else float("nan"),
        first_stage_weight=weight, max_length=max_length, seed=seed, seconds=time.perf_counter() - started,
        check=check.to_dict() if check else None, check_method=method,
        candidates=candidates if check is not None else None,
    )
    (log.info if report.useful else log.warning)("reranker %s: %s", output, report.summary())
    save_reranker(model, trainer.tokenizer, output, report, history, val_qids)
    return report


def _check_base(folder: Path, name: str) -> None:
    """Refuse a base that is a classifier with other than one output: the reranker trains a one-output head."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # loading it will say what is wrong
    outputs = len(config.get("id2label") or {}) or config.get("num_labels")
    if any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or []) \
            and outputs and outputs != 1:
        raise BadInput(f"base {name!r} is a classifier with {outputs} outputs; train-reranker trains one output: "
                       "start from an encoder (a new head is added) or a one-output cross-encoder")


def _folds(n: int, cross_fit: int | None) -> int:
    if cross_fit is None:
        return 2 if 2 <= n < CROSS_FIT_BELOW else 0
    if cross_fit == 0:
        return 0
    if not 2 <= cross_fit <= n:
        raise BadInput(f"cross-fitting needs 2 to {n} folds (one query each at least), got {cross_fit}")
    return int(cross_fit)


def _check_options(epochs, min_steps, max_steps, group_size, hard_negatives, groups_per_step, validation_fraction,
                   candidates) -> None:
    if epochs < 1:
        raise BadInput(f"epochs must be at least 1, got {epochs}")
    if min_steps < 0:
        raise BadInput(f"min steps must be at least 0, got {min_steps}")
    if max_steps is not None and max_steps < 1:
        raise BadInput(f"max steps must be at least 1, got {max_steps}")
    if group_size < 2 or not 0 <= hard_negatives <= group_size - 1:
        raise BadInput("group size must be at least 2, with at most group size - 1 hard negatives")
    if groups_per_step < 1:
        raise BadInput(f"groups per step must be at least 1, got {groups_per_step}")
    if not 0 <= validation_fraction < 0.5:
        raise BadInput(f"validation fraction must be in [0, 0.5), got {validation_fraction}")
    if candidates < 2:
        raise BadInput(f"the check reranks at least 2 candidates per query, got {candidates}")


@dataclass
class _Fit:
    epochs: int = 0
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    best: dict | None = None
    best_epoch: int = 0
    last_epoch_loss: float = float("nan")


class _Trainer:
    """One recipe, one tokenizer; trains fresh models on sets of queries and scores check candidates."""

    def __init__(self, data: TrainingData, mined: Mined, recipe: _Recipe, folder: Path):
        from transformers import AutoTokenizer

        self.data, self.mined, self.recipe, self.folder = data, mined, recipe, folder
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.doc_ids = sorted(data.corpus)

    def new_model(self, seed: int):
        import torch
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(seed)
        np.random.seed(seed)
        with quiet_loading():  # a new head is "newly initialized" by design: no load report, no bar
            return AutoModelForSequenceClassification.from_pretrained(str(self.folder), num_labels=1)

    def _encode(self, pairs):
        return self.tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                              max_length=self.recipe.max_length, return_tensors="pt")

    def fit(self, model, qids: list[str], seed: int, bar, on_epoch: Callable | None = None) -> _Fit:
        """Train ``model`` on the positives of ``qids``; ``on_epoch`` may score each epoch and the best is kept."""
        import torch

        r, data, rng = self.recipe, self.data, random.Random(seed)
        positives = self.mined.positives(qids)
        epochs, total = r.steps(len(positives))
        head = [p for n, p in model.named_parameters() if n.startswith(("classifier", "score"))]
        body = [p for n, p in model.named_parameters() if not n.startswith(("classifier", "score"))]
        optimizer = torch.optim.AdamW([{"params": body, "lr": r.lr}, {"params": head, "lr": r.head_lr}],
                                      weight_decay=0.01)
        warmup = max(1, int(0.1 * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
        fit = _Fit()
        model.train()
        for epoch in range(1, epochs + 1):
            if fit.steps >= total:
                break
            order = positives[:]
            rng.shuffle(order)
            at = len(fit.losses)
            for start in range(0, len(order), r.groups_per_step):
                if fit.steps >= total:
                    break
                pairs = []
                for qid, pos in order[start : start + r.groups_per_step]:
                    negatives = draw_negatives(rng, data.qrels[qid], self.mined.ranked[qid][: r.mine_depth],
                                                self.doc_ids, r.hard_negatives, r.group_size - 1,
                                                data.exclude.get(qid, frozenset()))
                    pairs += [(data.queries[qid], self.mined.text(qid, d)) for d in [pos] + negatives]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r.bf16):
                    logits = model(**self._encode(pairs)).logits.float().view(-1, r.group_size)
                loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                fit.losses.append(loss.item())
                fit.steps += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{np.mean(fit.losses[-50:]):.3f}")
            fit.epochs, fit.last_epoch_loss = epoch, float(np.mean(fit.losses[at:]))
            scored = on_epoch(epoch, fit.steps, fit.last_epoch_loss) if on_epoch else None
            if scored is None:
                fit.best_epoch = epoch
            elif fit.best is None or scored["score"] > fit.best["score"]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                fit.best, fit.best_epoch = {**scored, "state": state}, epoch
            model.train()
        if fit.best is not None:
            model.load_state_dict(fit.best["state"])
        return fit

    def score(self, model, qids: Sequence[str]) -> dict[str, np.ndarray]:
        """The model's scores of each query's check candidates (the pairs the reranker would read)."""
        import torch

        model.eval()
        pairs = [(self.data.queries[q], self.mined.text(q, d)) for q in qids for d in self.mined.candidates[q]]
        out = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.recipe.bf16):
            for start in range(0, len(pairs), 32):
                out.append(model(**self._encode(pairs[start : start + 32])).logits.float()[:, 0].numpy())
        flat = np.concatenate(out) if out else np.empty(0)
        result, at = {}, 0
        for q in qids:
            n = len(self.mined.candidates[q])
            result[q], at = flat[at : at + n], at + n
        return result
