"""Stage 3, the body's tuning step of :class:`semsearch.label.setfit.SetFitLabeler`: towards label descriptions,
towards label prototypes, or SetFit's contrastive pairs.

Each example's cosines to the label descriptions (:func:`tune_on_descriptions`) or to the means of the
other examples of each label (:func:`tune_on_prototypes`), times a scale, are trained as logits with
cross-entropy; :func:`tune_contrastive` runs the ``setfit`` library's pair training.
:func:`tuning_epochs` says how many epochs a fit gets; :func:`run_alongside` tunes several models at once.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence

#: description tuning embeds a batch in length-sorted sub-batches of at most this many texts (one loss
#: and one optimiser step per batch, as before): random SST batches of 16 are padded to about twice
#: their tokens; sorted halves cut that, about 13% off a tuning epoch on 2 AVX2 cores.
SUB_BATCH = 8


class Turns:
    """What models tuned alongside in threads share (:func:`run_alongside`).

    ``lock``: forward passes take it in turn, each swapping in its own model's dropout generator state;
    ``stop``: set when one job fails or the caller is interrupted, so every tuning ends at its next step.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stop = threading.Event()


class Stopped(Exception):
    """A tuning ended early because a model tuned alongside it failed (``Turns.stop``)."""


def tuning_epochs(examples: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """Epochs of description tuning: ``epochs``, or more where that many would take fewer than ``min_steps`` steps.

    >>> tuning_epochs(40, 16, 4, 24), tuning_epochs(16, 16, 4, 24), tuning_epochs(128, 16, 4, 24)
    (8, 24, 4)
    """
    per_epoch = -(-examples // batch_size)
    return max(epochs, -(-min_steps // per_epoch))


def tune_on_descriptions(body, texts: list[str], targets: list[int], descriptions: list[str], *, epochs: int,
                          batch_size: int, lr: float, scale: float, seed: int, bf16: bool, progress: bool,
                          word_embeddings: bool = False, turns: Turns | None = None) -> int:
    """Fine-tune ``body`` in place so each text's cosines to the descriptions, times ``scale``, predict its label.

    Cross-entropy over ``scale * cos(text, description_c)`` for every label c, with the descriptions
    encoded by the same body in every step; the word-embedding matrix is left as it is unless
    ``word_embeddings``. Returns the optimiser steps taken.

    Dropout draws from torch's global generator, seeded with ``seed``. So that several bodies can be
    tuned at once in threads and each still draws its own seeded stream, every forward pass holds
    ``turns.lock`` (shared by those threads) and swaps this tuning's generator state in and out;
    backward passes and optimiser steps, which draw nothing, run alongside the others'. Raises
    :class:`Stopped` at the first step after ``turns.stop`` is set.
    """
    def logits(embed, idx, texts_emb):
        return scale * texts_emb @ embed(descriptions).T

    return _tune(body, texts, targets, logits, None, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                 bf16=bf16, progress=progress, word_embeddings=word_embeddings, turns=turns,
                 desc="tuning on descriptions")


def tune_on_prototypes(body, texts: list[str], targets: list[int], *, epochs: int, batch_size: int, lr: float,
                       scale: float, seed: int, bf16: bool, progress: bool, word_embeddings: bool = False,
                       turns: Turns | None = None) -> int:
    """Fine-tune ``body`` in place so each text's cosines to the label prototypes, times ``scale``, predict its label.

    Tuning on descriptions without descriptions: a label's prototype is the mean of its examples'
    embeddings (prototypical networks), leaving the text itself out of its own label's mean, so a text
    is never pulled towards itself. The prototypes are embedded without gradients by the body as it is
    at the start of every epoch (one extra forward pass over the examples an epoch, no dropout); the
    loss moves each text towards its own label's prototype and away from the others' (a label with one
    example has no prototype of its own for it: that text is only moved away from the others). Threads,
    dropout and ``turns`` as in :func:`tune_on_descriptions`; returns the optimiser steps taken.
    """
    import torch

    y = torch.tensor(targets)
    classes = int(y.max()) + 1
    counts = torch.bincount(y, minlength=classes).float()
    state: dict = {}

    def refresh(embed):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            body.eval()
            emb = torch.cat([embed(texts[k:k + 64]) for k in range(0, len(texts), 64)])
            body.train()
        state["emb"] = emb
        state["sums"] = torch.zeros(classes, emb.shape[1]).index_add_(0, y, emb)

    def logits(embed, idx, texts_emb):
        own = torch.nn.functional.one_hot(y[idx], classes).float()  # (batch, classes)
        sums = state["sums"].unsqueeze(0) - own.unsqueeze(2) * state["emb"][idx].unsqueeze(1)
        protos = torch.nn.functional.normalize(sums / (counts - own).clamp(min=1).unsqueeze(2), dim=-1)
        return scale * torch.einsum("bd,bcd->bc", texts_emb, protos)

    return _tune(body, texts, targets, logits, refresh, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                 bf16=bf16, progress=progress, word_embeddings=word_embeddings, turns=turns,
                 desc="tuning on prototypes")


def tune_contrastive(body, texts: list[str], labels: list[str], *, iterations: int, epochs: int, batch_size: int,
                     lr: float, seed: int, bf16: bool, progress: bool) -> int:
    """SetFit's contrastive fine-tuning of ``body`` in place (the ``setfit`` library); returns the optimiser steps.

    ``iterations`` of pair generation (pairs = 2 x iterations x texts), ``epochs`` passes over them. The
    trainer's own head is not fitted (the labeller fits its own), and what it prints goes to stderr.
    """
    import contextlib
    import tempfile

    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.linear_model import LogisticRegression
    from transformers import set_seed

    setfit_model = SetFitModel(model_body=body, model_head=LogisticRegression(), labels=None)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, batch_size=batch_size, num_epochs=epochs, num_iterations=iterations,
            body_learning_rate=lr, seed=seed, report_to="none", save_strategy="no",
            logging_strategy="no", logging_first_step=False, show_progress_bar=progress,
        )
        set_seed(seed)
        trainer = Trainer(model=setfit_model, args=args,
                          train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        with contextlib.redirect_stdout(sys.stderr), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            trainer.train_embeddings(texts, labels, args=args)
    return int(trainer.st_trainer.state.global_step)


def _tune(body, texts: list[str], targets: list[int], logits_of: Callable, before_epoch: Callable | None, *,
          epochs: int, batch_size: int, lr: float, seed: int, bf16: bool, progress: bool, word_embeddings: bool,
          turns: Turns | None, desc: str) -> int:
    """The loop both tunings share: cross-entropy of ``logits_of(embed, batch indices, batch embeddings)``."""
    import torch
    from tqdm.auto import tqdm

    tokenize = getattr(body, "preprocess", None) or body.tokenize  # sentence-transformers 5.x renamed it

    def embed(batch: list[str]):
        features = tokenize(batch)
        return torch.nn.functional.normalize(body(features)["sentence_embedding"].float(), dim=-1)

    lengths = [len(ids) for ids in body.tokenizer(texts)["input_ids"]]  # for the sub-batches (SUB_BATCH)

    generator = torch.Generator().manual_seed(seed)
    turns = turns or Turns()
    with turns.lock:
        torch.manual_seed(seed)  # dropout
        dropout_state = torch.get_rng_state()
    y = torch.tensor(targets)
    frozen = set() if word_embeddings else {id(p) for p in _word_embeddings(body)}
    optimizer = torch.optim.AdamW([p for p in body.parameters() if id(p) not in frozen], lr=lr)
    per_epoch = -(-len(texts) // batch_size)
    trainable = {id(p): p.requires_grad for p in body.parameters()}
    for p in body.parameters():
        p.requires_grad_(trainable[id(p)] and id(p) not in frozen)
    body.train()
    try:
        with tqdm(total=epochs * per_epoch, desc=desc, unit="step", disable=not progress, file=sys.stderr) as bar:
            for _ in range(epochs):
                order = torch.randperm(len(texts), generator=generator)
                if before_epoch is not None:
                    before_epoch(embed)
                for start in range(0, len(texts), batch_size):
                    if turns.stop.is_set():
                        raise Stopped("tuning stopped: a model tuned alongside failed or was interrupted")
                    idx = sorted(order[start:start + batch_size].tolist(), key=lengths.__getitem__)
                    with turns.lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        torch.set_rng_state(dropout_state)
                        texts_emb = torch.cat([embed([texts[i] for i in idx[k:k + SUB_BATCH]])
                                               for k in range(0, len(idx), SUB_BATCH)])
                        logits = logits_of(embed, idx, texts_emb)
                        dropout_state = torch.get_rng_state()
                    loss = torch.nn.functional.cross_entropy(logits.float(), y[idx])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    bar.update()
    finally:
        body.eval()
        for p in body.parameters():
            p.requires_grad_(trainable[id(p)])
    return epochs * per_epoch


def run_alongside(jobs: Sequence[Callable[[], Any]], parallel: int, turns: Turns | None = None) -> list:
    """Run the jobs, up to ``parallel`` at a time in threads that share this thread's torch threads; results in order.

    Each worker thread gets ``torch.get_num_threads() // workers`` torch threads (at least 1); with one worker
    the jobs run here, one after another, on all of them. Jobs that tune models with
    :func:`tune_on_descriptions` must share ``turns``, so that each draws its own dropout stream, and so
    that when one fails (or the caller is interrupted) the others stop at their next step before the
    error is raised here.

    >>> run_alongside([lambda: 1, lambda: 2, lambda: 3], parallel=2)
    [1, 2, 3]
    """
    import torch

    total = torch.get_num_threads()
    workers = max(1, min(len(jobs), parallel))
    if workers == 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(workers, thread_name_prefix="semsearch-tune", initializer=torch.set_num_threads,
                            initargs=(max(1, total // workers),)) as pool:
        futures = [pool.submit(job) for job in jobs]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:  # a failure is raised now: the others are told to stop, not waited for
                if future.exception() is not None:
                    raise future.exception()
            return [future.result() for future in futures]
        except BaseException:
            if turns is not None:
                turns.stop.set()
            for future in futures:
                future.cancel()
            raise


def _word_embeddings(body) -> list:
    """The word-embedding parameters of a sentence-transformers body's Hugging Face model (none if not found)."""
    model = getattr(body[0], "auto_model", None) if len(body) else None
    module = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return list(module.parameters()) if module is not None else []
