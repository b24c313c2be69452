"""Training a cross-encoder reranker from relevance judgements (``semsearch train-reranker``).

Recipe: each labelled (query, positive) pair becomes a group of ``group_size``
pairs: the positive, ``hard_negatives`` documents the bi-encoder ranks high for
the query but that are not judged relevant, and random documents. The model
(default: the embedded all-MiniLM-L6-v2 body with a fresh one-logit head) is
trained with a softmax cross-entropy over each group (the positive must win).
Negatives are re-drawn every epoch. A seeded slice of the training queries is
held out: it picks the best epoch and fits the weight with which the
first-stage score is blended into the reranker's order.

>>> report = train_reranker("../shared/datasets/beir/scifact", "models/scifact-reranker")   # doctest: +SKIP
>>> report.validation_ndcg10_first_stage, report.validation_ndcg10_blended                # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..corpus.readers import read_corpus, read_jsonl_fields, read_qrels, read_queries
from ..encode.models import DEFAULT_MODEL, bf16_supported, model_folder, model_name
from ..errors import BadInput
from ..files import atomic_folder
from ..metrics import ndcg_at_k
from ..types import Document
from ..version import __version__
from .blend import blend_order
from .reranker import RERANKER_CONFIG

__all__ = ["TrainingData", "TrainingReport", "read_beir", "read_pairs", "train_reranker", "RERANKER_CONFIG"]

log = logging.getLogger(__name__)

_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class TrainingData:
    """Documents, queries and which documents are relevant to which query."""

    corpus: Mapping[str, Document]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    source: str


@dataclass(frozen=True)
class TrainingReport:
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


def read_beir(folder: str | os.PathLike, split: str = "train") -> TrainingData:
    """A BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"training data folder {str(folder)!r} does not exist")
    corpus = {d.id: d for d in read_corpus(folder / "corpus.jsonl")}
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    queries = read_queries(folder / "queries.jsonl")
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise BadInput(f"{len(missing)} judged queries are not in queries.jsonl (first: {missing[0]!r})")
    return TrainingData(corpus, {q: queries[q] for q in qrels}, qrels, f"{folder} ({split})")


def read_pairs(path: str | os.PathLike) -> TrainingData:
    """A JSONL file of ``{"query": …, "positive": …}`` lines; the positives form the corpus."""
    corpus: dict[str, Document] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    by_text: dict[str, str] = {}
    qid_of: dict[str, str] = {}
    for number, (query, positive) in read_jsonl_fields(path, ("query", "positive"), "pairs"):
        if not str(query).strip() or not str(positive).strip():
            raise BadInput(f"{path}:{number}: empty query or positive")
        doc_id = by_text.setdefault(positive, f"p{len(by_text)}")
        corpus[doc_id] = Document(doc_id, positive)
        qid = qid_of.setdefault(query, f"q{len(qid_of)}")
        queries[qid] = query
        qrels.setdefault(qid, {})[doc_id] = 1
    if len(corpus) < 2:
        raise BadInput(f"{path}: need at least 2 distinct positives to draw negatives from")
    return TrainingData(corpus, queries, qrels, str(path))


def train_reranker(
    data: TrainingData | str | os.PathLike,
    output: str | os.PathLike,
    *,
    split: str = "train",
    base: str | None = None,
    epochs: int = 2,
    max_steps: int | None = None,
    seed: int = 0,
    max_length: int = 192,
    group_size: int = 8,
    hard_negatives: int = 5,
    mine_depth: int = 30,
    groups_per_step: int = 2,
    lr: float = 5e-5,
    head_lr: float = 1e-3,
    validation_fraction: float = 0.1,
    candidates: int = 20,
    bf16: bool | None = None,
    first_stage=None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainingReport:
    """Train a cross-encoder on ``data`` and write it to ``output`` (a folder :class:`Reranker` loads).

    ``data`` is a BEIR folder (its ``split`` qrels are used), a JSONL file of
    ``{"query", "positive"}`` pairs, or :class:`TrainingData`.

    ``first_stage`` is a :class:`~semsearch.SearchEngine` over the same corpus used to mine hard
    negatives; without it the corpus is embedded in memory with the default bi-encoder.
    ``bf16`` (default: when the CPU supports it) runs forward and backward passes under bfloat16
    autocast with float32 weights. ``max_steps`` stops early (for smoke tests).
    """
    import torch
    from tqdm.auto import tqdm

    started = time.perf_counter()
    if not isinstance(data, TrainingData):
        data = read_beir(data, split) if Path(data).is_dir() else read_pairs(data)
    _check_options(epochs, max_steps, group_size, hard_negatives, groups_per_step, validation_fraction)
    output = Path(output)
    if output.exists() and (any(output.iterdir()) if output.is_dir() else True):
        if not overwrite or not (output / RERANKER_CONFIG).is_file():
            raise BadInput(f"{output} exists; pass overwrite=True (CLI: --overwrite) to replace a trained reranker")
    bf16 = bf16_supported() if bf16 is None else bf16
    rng = random.Random(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    qids = sorted(q for q, rel in data.qrels.items() if any(g >= 1 and d in data.corpus for d, g in rel.items()))
    if not qids:
        raise BadInput("no query has a relevant document in the corpus")
    rng.shuffle(qids)
    n_val = int(round(len(qids) * validation_fraction)) if len(qids) >= 20 else 0
    val_qids, train_qids = sorted(qids[:n_val]), sorted(qids[n_val:])
    ranked = _first_stage(data, train_qids + val_qids, max(mine_depth, candidates), first_stage, progress)

    base_name = model_name(base)
    folder = model_folder(base_name)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1)
    head = [p for n, p in model.named_parameters() if n.startswith(("classifier", "score"))]
    body = [p for n, p in model.named_parameters() if not n.startswith(("classifier", "score"))]
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": head_lr}], weight_decay=0.01)

    doc_ids = sorted(data.corpus)
    positives = [(q, d) for q in train_qids for d, g in sorted(data.qrels[q].items()) if g >= 1 and d in data.corpus]
    steps_per_epoch = math.ceil(len(positives) / groups_per_step)
    total_steps = min(steps_per_epoch * epochs, max_steps or sys.maxsize)
    warmup = max(1, int(0.1 * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )

    def text(doc_id: str) -> str:
        return data.corpus[doc_id].embedding_text

    losses: list[float] = []
    history: list[dict] = []
    best: tuple[float, int, dict | None, dict] = (-1.0, 0, None, {})
    step = 0
    bar = tqdm(total=total_steps, desc="training reranker", unit="step", file=sys.stderr, disable=not progress)
    for epoch in range(1, epochs + 1):
        if step >= total_steps:
            break
        model.train()
        order = positives[:]
        rng.shuffle(order)
        for start in range(0, len(order), groups_per_step):
            if step >= total_steps:
                break
            pairs = []
            for qid, pos in order[start : start + groups_per_step]:
                negatives = _negatives(rng, data.qrels[qid], ranked[qid][:mine_depth], doc_ids,
                                       hard_negatives, group_size - 1)
                pairs += [(data.queries[qid], text(d)) for d in [pos] + negatives]
            enc = tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(**enc).logits.float().view(-1, group_size)
            loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-50:]):.3f}")
        scores = _validate(model, tokenizer, data, val_qids, ranked, candidates, max_length, bf16)
        history.append({"epoch": epoch, "step": step, "loss": float(np.mean(losses[-steps_per_epoch:])), **scores})
        log.info("epoch %d: %s", epoch, history[-1])
        if not val_qids or scores["blended"] > best[0]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()} if val_qids else None
            best = (scores.get("blended", 0.0), epoch, state, scores)
    bar.close()
    if best[2] is not None:
        model.load_state_dict(best[2])

    report = TrainingReport(
        output=str(output), base=base_name, source=data.source, epochs=epochs, steps=step,
        groups_per_epoch=len(positives), group_size=group_size, train_queries=len(train_qids),
        validation_queries=len(val_qids), best_epoch=best[1],
        loss_first=float(np.mean(losses[:20])) if losses else float("nan"),
        loss_last=float(np.mean(losses[-20:])) if losses else float("nan"),
        validation_ndcg10_first_stage=best[3].get("first_stage", float("nan")),
        validation_ndcg10_reranked=best[3].get("reranked", float("nan")),
        validation_ndcg10_blended=best[3].get("blended", float("nan")),
        first_stage_weight=best[3].get("weight", 0.0), max_length=max_length, seed=seed,
        seconds=time.perf_counter() - started,
    )
    _save(model, tokenizer, output, report, history, val_qids)
    return report


def _check_options(epochs, max_steps, group_size, hard_negatives, groups_per_step, validation_fraction) -> None:
    if epochs < 1:
        raise BadInput(f"epochs must be at least 1, got {epochs}")
    if max_steps is not None and max_steps < 1:
        raise BadInput(f"max steps must be at least 1, got {max_steps}")
    if group_size < 2 or not 0 <= hard_negatives <= group_size - 1:
        raise BadInput("group size must be at least 2, with at most group size - 1 hard negatives")
    if groups_per_step < 1:
        raise BadInput(f"groups per step must be at least 1, got {groups_per_step}")
    if not 0 <= validation_fraction < 0.5:
        raise BadInput(f"validation fraction must be in [0, 0.5), got {validation_fraction}")


def _negatives(rng: random.Random, relevant: Mapping[str, int], ranked: Sequence[str], doc_ids: Sequence[str],
               hard: int, total: int) -> list[str]:
    """``hard`` documents from the first-stage ranking that are not judged relevant, then random ones."""
    pool = [d for d in ranked if relevant.get(d, 0) < 1]
    chosen = rng.sample(pool, min(hard, len(pool)))
    while len(chosen) < total:
        d = doc_ids[rng.randrange(len(doc_ids))]
        if relevant.get(d, 0) < 1 and d not in chosen:
            chosen.append(d)
        elif len(doc_ids) <= len(relevant) + len(chosen):  # tiny corpus: allow repeats
            chosen.append(d)
    return chosen


def _first_stage(data: TrainingData, qids: list[str], depth: int, engine, progress: bool) -> dict[str, list[str]]:
    """Each query's top ``depth`` document ids from the bi-encoder."""
    texts = [data.queries[q] for q in qids]
    if engine is not None:
        hits = engine.search_many(texts, k=depth, mode="dense")
        return {q: [h.id for h in hs] for q, hs in zip(qids, hits)}
    from tqdm.auto import tqdm

    from ..encode.transformer import TransformerEmbedder

    embedder = TransformerEmbedder(DEFAULT_MODEL)
    doc_ids = sorted(data.corpus)
    with tqdm(total=len(doc_ids), desc="mining negatives", unit="doc", file=sys.stderr, disable=not progress) as bar:
        docs = embedder.encode([data.corpus[d].embedding_text for d in doc_ids], on_batch=bar.update)
    scores = embedder.encode(texts) @ docs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return {q: [doc_ids[i] for i in row] for q, row in zip(qids, top)}


def _validate(model, tokenizer, data, qids, ranked, candidates, max_length, bf16) -> dict[str, float]:
    """nDCG@10 on held-out queries: first stage, reranked, and blended at the best weight."""
    if not qids:
        return {}
    import torch

    model.eval()
    pairs = [(data.queries[q], data.corpus[d].embedding_text) for q in qids for d in ranked[q][:candidates]]
    scores = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(pairs), 32):
            chunk = pairs[start : start + 32]
            enc = tokenizer([q for q, _ in chunk], [d for _, d in chunk], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            scores.append(model(**enc).logits.float()[:, 0].numpy())
    flat = np.concatenate(scores)
    per_query, at = {}, 0
    for q in qids:
        n = len(ranked[q][:candidates])
        per_query[q] = flat[at : at + n]
        at += n
    results = {"first_stage": float(np.mean([ndcg_at_k(ranked[q], data.qrels[q], 10) for q in qids]))}
    blended = {w: float(np.mean([ndcg_at_k(blend_order(ranked[q][:candidates], per_query[q], w), data.qrels[q], 10)
                                 for q in qids])) for w in _WEIGHTS}
    results["reranked"] = blended[0.0]
    best_w = max(_WEIGHTS, key=lambda w: (blended[w], -w))
    results["blended"], results["weight"] = blended[best_w], best_w
    model.train()
    return results


#: Written next to the model: the ids of the training queries held out for validation.
VALIDATION_QUERIES = "validation_queries.json"


def _save(model, tokenizer, output: Path, report: TrainingReport, history: list[dict], val_qids: list[str]) -> None:
    with atomic_folder(output) as tmp:
        (tmp / VALIDATION_QUERIES).write_text(json.dumps(val_qids) + "\n", encoding="utf-8")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config = {
            "semsearch_version": __version__,
            "score_kind": "logit",
            "max_length": report.max_length,
            "first_stage_weight": report.first_stage_weight,
            "training": asdict(report),
            "history": history,
        }
        (tmp / RERANKER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(_model_card(report, history), encoding="utf-8")


def _model_card(r: TrainingReport, history: list[dict]) -> str:
    rows = "\n".join(
        f"| {h['epoch']} | {h['step']} | {h['loss']:.3f} | {h.get('first_stage', float('nan')):.4f} "
        f"| {h.get('reranked', float('nan')):.4f} | {h.get('blended', float('nan')):.4f} | {h.get('weight', 0)} |"
        for h in history
    )
    return f"""# Cross-encoder reranker trained with semsearch {__version__}

- Base model: `{r.base}` with a fresh one-logit classification head
- Data: {r.source}; {r.train_queries} training queries, {r.groups_per_epoch} (query, positive) groups per epoch,
  {r.validation_queries} queries held out for validation
- Groups of {r.group_size}: the positive, hard negatives from the bi-encoder's top results that are not
  judged relevant, and random documents; softmax cross-entropy over each group
- {r.epochs} epoch(s), {r.steps} steps, max length {r.max_length} tokens, seed {r.seed}, {r.seconds / 60:.1f} minutes
- Loss: {r.loss_first:.3f} (first 20 steps) → {r.loss_last:.3f} (last 20 steps)
- Kept: epoch {r.best_epoch}. Scores are raw logits (`score_kind: logit`).
- First-stage weight fitted on the validation queries: {r.first_stage_weight}

Validation nDCG@10 (held-out training queries, reranking the bi-encoder's top candidates):

| epoch | step | mean loss | first stage | reranked | blended | weight |
|---|---|---|---|---|---|---|
{rows}

Load it with `semsearch query … --rerank {r.output}` or `semsearch.Reranker({r.output!r})`.
"""
