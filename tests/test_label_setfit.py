"""SetFit labeller on the tiny BERT, and `semsearch label` end to end."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sentence_transformers import SentenceTransformer

from semsearch import BadInput, ManifestMismatch
from semsearch.cli import cli
from semsearch.label.setfit import SetFitLabeler

A = ["the cat sat on the mat", "a dog barked at the cat", "the cat and the dog", "a cat on a mat"]
B = ["rivers flow to the sea", "bright stars over the sea", "the sea under the stars", "rivers and stars"]


@pytest.mark.parametrize("descriptions", [None, {"animal": "a cat or a dog", "water": "rivers and the sea"}])
def test_setfit_learns_a_separable_task_and_roundtrips(tiny_bert, tmp_path, descriptions):
    # a small description weight: the tiny model's random geometry makes description cosines noise
    lab = SetFitLabeler(tiny_bert, descriptions=descriptions, tuning="contrastive", num_iterations=5,
                        description_scale=1.0, seed=0).fit(A + B, ["animal"] * 4 + ["water"] * 4)
    assert lab.fit_info["tuning"] == "contrastive"
    assert lab._features(["x"]).shape[1] == 32 + 2  # cosines to the descriptions (or prototypes) join the features
    probe = ["the dog sat on the mat", "stars over rivers"]
    assert lab.predict(probe) == ["animal", "water"]
    proba = lab.predict_proba(probe)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    lab.save(tmp_path / "lab")
    assert not list((tmp_path / "lab").rglob("*.pkl")) and (tmp_path / "lab" / "head.json").is_file()
    again = SetFitLabeler.load(tmp_path / "lab")
    np.testing.assert_allclose(again.predict_proba(probe), proba, atol=1e-6)
    assert again.classes == ["animal", "water"]
    with pytest.raises(BadInput, match="pass overwrite=True"):
        lab.save(tmp_path / "lab")
    lab.save(tmp_path / "lab", overwrite=True)  # a labeller is replaced when asked
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("years of work")
    with pytest.raises(BadInput, match="is not a SetFit labeller; refusing to replace it"):
        lab.save(tmp_path / "thesis", overwrite=True)
    assert (tmp_path / "thesis" / "thesis.tex").read_text() == "years of work"
    (tmp_path / "empty").mkdir()
    lab.save(tmp_path / "empty")  # an empty folder is written into
    assert SetFitLabeler.load(tmp_path / "empty").classes == ["animal", "water"]


def test_tuning_on_descriptions_pulls_each_text_to_its_label_description(tiny_bert, tmp_path):
    descriptions = {"animal": "a cat or a dog", "water": "rivers and the sea"}
    probe = ["the dog sat on the mat", "stars over rivers"]
    before = SetFitLabeler(tiny_bert, descriptions=descriptions, description_scale=1.0, seed=0)
    before.body = SentenceTransformer(str(tiny_bert), device="cpu")

    def margin(lab):  # cos(own description) - cos(other description), mean over the training texts
        lab._descriptions_emb = lab._encode(list(descriptions.values()))
        cos = lab._encode(A + B) @ lab._descriptions_emb.T
        return float(np.mean(np.r_[cos[:4, 0] - cos[:4, 1], cos[4:, 1] - cos[4:, 0]]))

    # the scale the toy was written for (the tiny random model's probe texts are close calls at the default 10)
    lab = SetFitLabeler(tiny_bert, descriptions=descriptions, description_epochs=20, body_lr=1e-3,
                        description_logit_scale=20.0, description_scale=1.0, seed=0).fit(A + B, ["animal"] * 4 + ["water"] * 4)
    assert lab.fit_info["tuning"] == "descriptions" and lab.fit_info["steps"] == 20  # "auto" with every label described
    assert margin(lab) > margin(before) + 0.1
    assert lab.predict(probe) == ["animal", "water"]
    # the word-embedding matrix stays as loaded (tune_word_embeddings=False), the layers above it move
    words = lambda body: body[0].auto_model.get_input_embeddings().weight  # noqa: E731
    assert torch.equal(words(lab.body), words(before.body))
    assert not torch.equal(lab.body[0].auto_model.encoder.layer[0].attention.self.query.weight,
                           before.body[0].auto_model.encoder.layer[0].attention.self.query.weight)
    assert all(p.requires_grad for p in lab.body.parameters())  # restored after tuning
    tuned_words = SetFitLabeler(tiny_bert, descriptions=descriptions, description_epochs=2, body_lr=1e-3,
                                description_scale=1.0, tune_word_embeddings=True, seed=0).fit(
        A + B, ["animal"] * 4 + ["water"] * 4)
    assert not torch.equal(words(tuned_words.body), words(before.body))
    lab.save(tmp_path / "lab")
    np.testing.assert_allclose(SetFitLabeler.load(tmp_path / "lab").predict_proba(probe), lab.predict_proba(probe),
                               atol=1e-6)
    # same seed, same labeller
    again = SetFitLabeler(tiny_bert, descriptions=descriptions, description_epochs=20, body_lr=1e-3,
                          description_logit_scale=20.0, description_scale=1.0, seed=0).fit(A + B, ["animal"] * 4 + ["water"] * 4)
    np.testing.assert_allclose(again.predict_proba(probe), lab.predict_proba(probe), atol=1e-6)


def test_description_tuning_in_sub_batches_matches_plain_whole_batch_steps(tiny_bert, monkeypatch):
    import semsearch.label.tuning as module

    texts = A + B + ["a very long sentence about a cat, a dog, a mat and a barking dog on the mat"]
    targets, descriptions = [0] * 4 + [1] * 4 + [0], ["a cat or a dog", "rivers and the sea"]

    def body_without_dropout():  # no dropout: the runs must then agree up to float error
        body = SentenceTransformer(str(tiny_bert), device="cpu")
        for m in body.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        return body

    def flat(body):
        return torch.cat([p.detach().flatten() for p in body.parameters()])

    # reference: the plain loop, each batch embedded whole and in order
    ref = body_without_dropout()
    embed = lambda b: torch.nn.functional.normalize(ref(ref.tokenize(b))["sentence_embedding"], dim=-1)  # noqa: E731
    words = ref[0].auto_model.get_input_embeddings().weight
    optimizer = torch.optim.AdamW([p for p in ref.parameters() if p is not words], lr=1e-3)
    generator, y = torch.Generator().manual_seed(0), torch.tensor(targets)
    ref.train()
    for _ in range(2):
        order = torch.randperm(len(texts), generator=generator)
        for start in range(0, len(texts), 5):
            idx = order[start:start + 5]
            loss = torch.nn.functional.cross_entropy(10.0 * embed([texts[i] for i in idx]) @ embed(descriptions).T,
                                                     y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert (flat(ref) - flat(body_without_dropout())).abs().max() > 1e-3  # the steps moved the weights

    monkeypatch.setattr(module, "SUB_BATCH", 2)  # batches of 5 -> length-sorted sub-batches of 2, 2, 1
    body = body_without_dropout()
    module.tune_on_descriptions(body, texts, targets, descriptions, epochs=2, batch_size=5, lr=1e-3, scale=10.0,
                                 seed=0, bf16=False, progress=False)
    torch.testing.assert_close(flat(body), flat(ref), atol=1e-5, rtol=1e-4)


def test_few_examples_get_epochs_up_to_the_minimum_steps_and_fold_models_the_same_epochs(tiny_bert, monkeypatch):
    import semsearch.label.setfit as module

    assert [module.tuning_epochs(n, 16, 4, 24) for n in (16, 17, 40, 80, 81, 128)] == [24, 12, 8, 5, 4, 4]
    assert module.tuning_epochs(16, 16, 4, 0) == 4
    calls = []
    tune = module.tune_on_descriptions

    def spy(body, texts, *args, **kwargs):  # the real tuning, recording how many texts for how many epochs
        calls.append((len(texts), kwargs["epochs"]))
        return tune(body, texts, *args, **kwargs)

    monkeypatch.setattr(module, "tune_on_descriptions", spy)
    descriptions = {"animal": "a cat or a dog", "water": "rivers and the sea"}
    texts, labels = A + B, ["animal"] * 4 + ["water"] * 4   # 8 examples: one batch of 16 an epoch
    lab = SetFitLabeler(tiny_bert, descriptions=descriptions, description_min_steps=6, calibration="none",
                        seed=0).fit(texts, labels)
    assert (lab.fit_info["epochs"], lab.fit_info["steps"]) == (6, 6) and calls == [(8, 6)]
    calls.clear()
    # the default: DESCRIPTION_MIN_STEPS (24) with a cross-fitted temperature from SMALL_FIT_BELOW (32)
    # examples on; a small fit is not cross-fitted unless asked, and then keeps its 4 epochs, as do its folds
    lab = SetFitLabeler(tiny_bert, descriptions=descriptions, seed=0).fit(texts, labels)
    assert lab.fit_info["calibration"] == "none" and lab.fit_info["epochs"] == 4
    lab = SetFitLabeler(tiny_bert, descriptions=descriptions, calibration="crossfit", seed=0).fit(texts, labels)
    assert lab.fit_info["epochs"] == 4 and calls[-5:] == [(8, 4)] + [(6, 4)] * 4
    calls.clear()
    many, many_labels = (A + B) * 4, labels * 4   # 32 examples: 2 batches an epoch, 12 epochs for 24 steps
    lab = SetFitLabeler(tiny_bert, descriptions=descriptions, description_epochs=1, seed=0).fit(many, many_labels)
    assert lab.fit_info["epochs"] == 12 and calls == [(32, 12)] + [(24, 12)] * 4
    calls.clear()
    lab = SetFitLabeler(tiny_bert, descriptions=descriptions, description_min_steps=6, batch_size=2,
                        calibration="crossfit", crossfit_folds=4, seed=0).fit(texts, labels)
    # full model: 4 steps an epoch, so the 4 default epochs already pass 6 steps; 4 fold models, 6 texts, 4 epochs
    assert (lab.fit_info["epochs"], lab.fit_info["steps"]) == (4, 16) and calls == [(8, 4)] + [(6, 4)] * 4
    calls.clear()
    lab = SetFitLabeler(tiny_bert, descriptions=descriptions, description_min_steps=15, batch_size=3,
                        calibration="crossfit", crossfit_folds=4, seed=0).fit(texts, labels)
    # full model: 3 steps an epoch, 5 epochs for 15 steps; the fold models (6 texts, 2 steps an epoch) run 5
    # epochs too, not the 8 that 15 steps of their own would take
    assert (lab.fit_info["epochs"], lab.fit_info["steps"]) == (5, 15) and calls == [(8, 5)] + [(6, 5)] * 4


def test_pairs_are_whole_iterations_within_the_budget(tiny_bert):
    texts, labels = A + B, ["animal"] * 4 + ["water"] * 4
    # 40 pairs of budget: 2 iterations (2 × 2 × 8 = 32 pairs) fit, 3 (48) would not; batches of 16 → 2 steps
    lab = SetFitLabeler(tiny_bert, tuning="contrastive", max_pairs=40, batch_size=16, seed=0).fit(texts, labels)
    assert (lab.fit_info["pairs_iterations"], lab.fit_info["pairs"], lab.fit_info["steps"]) == (2, 32, 2)


def test_crossfit_temperature_is_fitted_saved_and_applied(tiny_bert, tmp_path):
    lab = SetFitLabeler(tiny_bert, tuning="contrastive", num_iterations=2, description_scale=1.0,
                        calibration="crossfit", seed=0).fit(
        A + B, ["animal"] * 4 + ["water"] * 4)
    assert lab.fit_info["calibration"] == "crossfit" and lab.temperature != 1.0
    probe = ["the dog sat on the mat", "stars over rivers", "the cat"]
    z = lab._logits(probe) / lab.temperature
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(lab.predict_proba(probe), expected / expected.sum(axis=1, keepdims=True))
    lab.save(tmp_path / "lab")
    assert SetFitLabeler.load(tmp_path / "lab").temperature == lab.temperature
    config = json.loads((tmp_path / "lab" / "labeler.json").read_text())
    (tmp_path / "lab" / "labeler.json").write_text(json.dumps(dict(config, format="semsearch-setfit-labeler/2")))
    with pytest.raises(ManifestMismatch, match="not a semsearch SetFit labeller"):   # a format it does not know
        SetFitLabeler.load(tmp_path / "lab")
    assert lab.fit_info["crossfit_folds"] == 2  # contrastive tuning: halves
    # description tuning is cheap: 4 folds below 200 examples, never more than the rarest label has
    descriptions = {"animal": "a cat or a dog", "water": "rivers and the sea"}
    described = SetFitLabeler(tiny_bert, descriptions=descriptions, description_epochs=1, calibration="crossfit",
                              seed=0)
    assert described.fit(A + B, ["animal"] * 4 + ["water"] * 4).fit_info["crossfit_folds"] == 4
    assert described.fit(A[:3] + B, ["animal"] * 3 + ["water"] * 4).fit_info["crossfit_folds"] == 3
    two = SetFitLabeler(tiny_bert, descriptions=descriptions, description_epochs=1, calibration="crossfit",
                        crossfit_folds=2, seed=0)
    assert two.fit(A + B, ["animal"] * 4 + ["water"] * 4).fit_info["crossfit_folds"] == 2
    # "auto" leaves 8 examples uncalibrated (fewer than SMALL_FIT_BELOW)
    auto = SetFitLabeler(tiny_bert, description_epochs=1, seed=0).fit(A + B, ["animal"] * 4 + ["water"] * 4)
    assert auto.fit_info["calibration"] == "none" and auto.temperature == 1.0
    with pytest.raises(BadInput, match="crossfit_folds must be a whole number"):
        SetFitLabeler(tiny_bert, crossfit_folds=1)


def _with_torch_threads(threads, make):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return make()
    finally:
        torch.set_num_threads(before)


def test_crossfit_models_tuned_alongside_each_draw_their_own_dropout(tiny_bert):
    # the full model and 4 fold models, two at a time on one torch thread each, must give bit for bit the
    # fit of one model after another on one thread: dropout draws from torch's global generator, and
    # each model's seeded stream is its own however the two threads interleave
    descriptions = {"animal": "a cat or a dog", "water": "rivers and the sea"}
    assert SentenceTransformer(str(tiny_bert))[0].auto_model.config.hidden_dropout_prob > 0

    def fit(parallel):
        return SetFitLabeler(tiny_bert, descriptions=descriptions, description_epochs=6, body_lr=1e-3,
                             description_scale=1.0, calibration="crossfit", crossfit_folds=4, parallel=parallel,
                             seed=0).fit(
            A + B, ["animal"] * 4 + ["water"] * 4)

    serial = _with_torch_threads(1, lambda: fit(1))
    alongside = _with_torch_threads(2, lambda: fit(2))
    assert (serial.fit_info["parallel"], alongside.fit_info["parallel"]) == (1, 2)
    assert alongside.fit_info["crossfit_folds"] == 4 and alongside.temperature == serial.temperature
    np.testing.assert_array_equal(alongside._coef, serial._coef)
    for mine, theirs in zip(alongside.body.parameters(), serial.body.parameters()):
        assert torch.equal(mine, theirs)
    # contrastive tuning (setfit's trainer) stays one model after another
    contrastive = SetFitLabeler(tiny_bert, tuning="contrastive", num_iterations=1, calibration="crossfit", parallel=2,
                                seed=0)
    assert contrastive.fit(A + B, ["animal"] * 4 + ["water"] * 4).fit_info["parallel"] == 1


def test_run_alongside_shares_the_torch_threads_and_keeps_the_order():
    from semsearch.label.tuning import Turns, run_alongside

    jobs = [lambda i=i: (i, torch.get_num_threads()) for i in range(3)]
    assert _with_torch_threads(4, lambda: run_alongside(jobs, parallel=2)) == [(0, 2), (1, 2), (2, 2)]
    assert _with_torch_threads(4, lambda: run_alongside(jobs, parallel=1)) == [(0, 4), (1, 4), (2, 4)]
    assert _with_torch_threads(2, lambda: run_alongside(jobs, parallel=8)) == [(0, 1), (1, 1), (2, 1)]

    def fails():
        raise ValueError("fold 2 failed")

    # one job fails: the job still running is told to stop, and the error reaches the caller at once
    turns = Turns()
    started = time.perf_counter()
    with pytest.raises(ValueError, match="fold 2 failed"):
        run_alongside([lambda: turns.stop.wait(timeout=60), fails], parallel=2, turns=turns)
    assert turns.stop.is_set() and time.perf_counter() - started < 30  # not after the other job's 60 s wait


def test_description_tuning_stops_when_told(tiny_bert):
    from semsearch.label.tuning import Stopped, Turns, tune_on_descriptions

    turns = Turns()
    turns.stop.set()
    body = SentenceTransformer(str(tiny_bert), device="cpu")
    before = [p.detach().clone() for p in body.parameters()]
    with pytest.raises(Stopped):
        tune_on_descriptions(body, A + B, [0] * 4 + [1] * 4, ["a cat or a dog", "rivers and the sea"], epochs=2,
                             batch_size=4, lr=1e-3, scale=20.0, seed=0, bf16=False, progress=False, turns=turns)
    assert all(torch.equal(p, q) for p, q in zip(body.parameters(), before))  # no step taken
    assert all(p.requires_grad for p in body.parameters()) and not body.training  # restored


def test_default_head_penalty_scales_with_examples_per_label(tiny_bert):
    texts, labels = A + B, ["animal"] * 4 + ["water"] * 4
    probe = ["the dog sat on the mat", "stars over rivers", "the cat", "the sea"]
    default = SetFitLabeler(tiny_bert, tuning="contrastive", num_iterations=2, description_scale=1.0, seed=0)
    assert default.fit(texts, labels).fit_info["head_c"] == 2 / 8  # 1 / (4 examples per label)
    fixed = SetFitLabeler(tiny_bert, tuning="contrastive", num_iterations=2, description_scale=1.0, head_c=1.0,
                          seed=0).fit(texts, labels)
    assert fixed.fit_info["head_c"] == 1.0
    # same body (same seed), a stronger penalty: the same decisions, smaller logit margins
    assert default.predict(probe) == fixed.predict(probe)
    margin = lambda lab: np.abs(np.diff(lab._logits(probe), axis=1)).ravel()  # noqa: E731
    assert np.all(margin(default) < 0.5 * margin(fixed))


def test_setfit_bad_input(tiny_bert):
    with pytest.raises(BadInput, match="at least two labels"):
        SetFitLabeler(tiny_bert).fit(A, ["animal"] * 4)
    with pytest.raises(BadInput, match="empty text"):
        SetFitLabeler(tiny_bert).fit(A + [" "], ["a", "b", "a", "b", "a"])
    with pytest.raises(BadInput, match="descriptions name labels with no examples"):
        SetFitLabeler(tiny_bert, descriptions={"plant": "trees"}).fit(A, ["a", "b", "a", "b"])
    with pytest.raises(BadInput, match="not fitted"):
        SetFitLabeler(tiny_bert).predict(["x"])
    with pytest.raises(BadInput, match="valid: auto, contrastive, descriptions"):
        SetFitLabeler(tiny_bert, tuning="prompts")
    with pytest.raises(BadInput, match="needs a description of every label; none for: b"):
        SetFitLabeler(tiny_bert, descriptions={"a": "cats"}, tuning="descriptions").fit(A, ["a", "b", "a", "b"])
    with pytest.raises(BadInput, match="head_c must be positive"):
        SetFitLabeler(tiny_bert, head_c=0)
    with pytest.raises(BadInput, match="description_min_steps at least 0"):
        SetFitLabeler(tiny_bert, description_min_steps=-1)
    with pytest.raises(BadInput, match="valid: auto, crossfit, none"):
        SetFitLabeler(tiny_bert, calibration="platt")
    with pytest.raises(BadInput, match="at least 2 examples of every label"):
        SetFitLabeler(tiny_bert, calibration="crossfit").fit(A[:1] + B, ["animal"] + ["water"] * 4)
    for parallel in (0, 1.5, True):
        with pytest.raises(BadInput, match="parallel must be a whole number of models"):
            SetFitLabeler(tiny_bert, parallel=parallel)


def _files(tmp_path, examples):
    (tmp_path / "ex.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    (tmp_path / "labels.json").write_text(json.dumps({"pet": "an animal kept at home, like a cat or a dog",
                                                       "other": "news about money, weather, politics or travel"}))
    (tmp_path / "texts.txt").write_text("\n".join([
        "my cat sleeps all day", "the stock market fell", "a puppy chews a bone", "rain is expected tomorrow",
        "the hamster runs in its wheel", "parliament passed the budget"]) + "\n")


EXAMPLES = [{"text": "a kitten purring on the sofa", "label": "pet"}, {"text": "our dog loves walks", "label": "pet"},
            {"text": "a goldfish in a bowl", "label": "pet"}, {"text": "interest rates went up", "label": "other"},
            {"text": "the train was late", "label": "other"}, {"text": "a new phone was released", "label": "other"}]


def test_label_threshold_with_bi_encoder_and_resume(tmp_path):
    _files(tmp_path, EXAMPLES)
    args = ["label", "--input", tmp_path / "texts.txt", "--examples", tmp_path / "ex.jsonl", "--labels",
            tmp_path / "labels.json", "--method", "threshold", "--output", tmp_path / "out.jsonl", "-q"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert [r["label"] for r in rows] == ["pet", "other", "pet", "other", "pet", "other"]
    assert all(0.5 <= r["probability"] <= 1 for r in rows)
    # interrupted run: drop the last two lines and tear the one before; a re-run completes it
    lines = (tmp_path / "out.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "out.jsonl").write_text("".join(lines[:3]) + lines[3][:10])
    again = CliRunner().invoke(cli, [str(a) for a in args])
    assert "labelled 3 documents" in again.stdout and "3 already labelled were skipped" in again.stdout
    assert [json.loads(x)["id"] for x in (tmp_path / "out.jsonl").read_text().splitlines()] == ["1", "2", "3", "4", "5", "6"]


@pytest.mark.parametrize("examples,extra,pattern", [
    ([], [], "no examples"),
    ([{"text": "x", "label": "bird"}] + EXAMPLES, [], "LABELS.json does not describe: bird"),
    ([{"text": " ", "label": "pet"}], [], "empty text"),
    (EXAMPLES, ["--method", "vote"], "valid values are: threshold, setfit"),
])
def test_label_bad_input(tmp_path, examples, extra, pattern):
    _files(tmp_path, examples)
    (tmp_path / "ex.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    args = ["label", "--input", tmp_path / "texts.txt", "--examples", tmp_path / "ex.jsonl", "--labels",
            tmp_path / "labels.json", "--output", tmp_path / "out.jsonl", "-q", *extra]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2 and pattern in result.stderr, result.output


@pytest.mark.parametrize("output,content,pattern", [
    ("notes.txt", b"line one\nprecious last line without newline", "notes.txt:2: not a labelling output line"),
    ("notes.txt", b"line one\n", "notes.txt:1: not a labelling output line"),
    ("latin1.jsonl", "caf\xe9\n".encode("latin-1"), "not a UTF-8 labelling output"),
    ("missing/out.jsonl", None, "does not exist"),
    ("folder", "dir", "is a folder"),
])
def test_label_refuses_an_output_it_cannot_append_to_before_fitting_and_leaves_it_as_it_was(
        tmp_path, monkeypatch, output, content, pattern):
    import semsearch.label.documents as documents

    _files(tmp_path, EXAMPLES)
    target = tmp_path / output
    if content == "dir":
        target.mkdir()
    elif content is not None:
        target.write_bytes(content)
    monkeypatch.setattr(documents, "fit_labeler", lambda *a, **k: pytest.fail("fitted before checking --output"))
    args = ["label", "--input", tmp_path / "texts.txt", "--examples", tmp_path / "ex.jsonl", "--labels",
            tmp_path / "labels.json", "--method", "threshold", "--output", target, "-q"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2 and pattern in result.stderr and "Traceback" not in result.output, result.output
    if isinstance(content, bytes):
        assert target.read_bytes() == content


def test_label_every_document_of_an_index(tmp_path, minilm):
    from semsearch import Document, SearchEngine

    _files(tmp_path, EXAMPLES)
    texts = (tmp_path / "texts.txt").read_text().splitlines()
    SearchEngine.build([Document(f"doc{i}", t) for i, t in enumerate(texts)], tmp_path / "idx", embedder=minilm,
                       progress=False).close()
    args = ["label", "--index", tmp_path / "idx", "--examples", tmp_path / "ex.jsonl", "--labels",
            tmp_path / "labels.json", "--method", "threshold", "--output", tmp_path / "out.jsonl", "-q"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"doc{i}" for i in range(6)]
    assert [r["label"] for r in rows] == ["pet", "other", "pet", "other", "pet", "other"]
    both = CliRunner().invoke(cli, [str(a) for a in args + ["--input", tmp_path / "texts.txt"]])
    assert both.exit_code == 2 and "exactly one of --index or --input" in both.stderr


def test_fit_loads_its_bodies_without_transformers_bars_and_leaves_the_switch_as_found(tiny_bert, capfd):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    SetFitLabeler(tiny_bert, calibration="crossfit", seed=0).fit(A + B, ["animal"] * 4 + ["water"] * 4)
    assert "Loading weights" not in capfd.readouterr().err  # one body per fold, none of them with a bar
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    SetFitLabeler(tiny_bert, seed=0).fit(A + B, ["animal"] * 4 + ["water"] * 4)
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()


@pytest.mark.parametrize("tail", [b'{"id"', b'{"id": "2", "label": "caf\xc3', b'{'])
def test_a_row_torn_anywhere_is_cut_on_resume(tmp_path, tail):
    from semsearch.label.documents import check_label_output, label_documents

    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": "1", "label": "pet", "probability": 0.9}\n' + tail)
    assert check_label_output(out) == {"1"} and out.read_bytes().endswith(tail)  # checking changes nothing

    class Fixed:
        calibrated = True

        def label(self, texts):
            return [("other", 0.75)] * len(texts)

    from semsearch import Document
    summary = label_documents([Document("1", "a"), Document("2", "b")], Fixed(), out, progress=False)
    assert (summary.labelled, summary.skipped) == (1, 1)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["1", "2"]


def test_a_row_holding_a_unicode_line_separator_is_one_row(tmp_path):
    from semsearch.label.documents import check_label_output

    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "a\u2028b", "label": "x\u0085", "probability": 0.5}, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    assert check_label_output(out) == {"a\u2028b"}


def test_a_huge_text_is_clipped_before_the_body_reads_it(tiny_bert):
    lab = SetFitLabeler(tiny_bert, tuning="contrastive", num_iterations=1, seed=0)
    lab.fit(A + B, ["animal"] * 4 + ["water"] * 4)
    seen = []
    real = lab.body.encode
    lab.body.encode = lambda texts, **kw: seen.append(max(map(len, texts))) or real(texts, **kw)
    assert lab.predict(["cat " * 250_000]) in (["animal"], ["water"])  # 1 MB
    assert seen == [lab.body.max_seq_length * 64]
