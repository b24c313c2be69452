"""Labelling without descriptions (prototype tuning and features), zero-shot from descriptions alone, the
temperature's prior, and reliability diagrams."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sentence_transformers import SentenceTransformer

from semsearch import BadInput, ZeroShotLabeler
from semsearch.cli import cli
from semsearch.label.crossfit import GRID, fit_temperature, softmax
from semsearch.label.reliability import reliability_bins, reliability_diagram
from semsearch.label.setfit import BODY_LR, SetFitLabeler
from semsearch.label.threshold import expected_calibration_error
from semsearch.label.zeroshot import ZERO_SHOT_SCALE

A = ["the cat sat on the mat", "a dog barked at the cat", "the cat and the dog", "a cat on a mat"]
B = ["rivers flow to the sea", "bright stars over the sea", "the sea under the stars", "rivers and stars"]
LABELS = ["animal"] * 4 + ["water"] * 4


def _prototype_margin(body, texts, labels) -> float:
    """Mean over the texts of cos(own label's prototype, the text left out) - cos(other label's prototype)."""
    emb = torch.nn.functional.normalize(torch.tensor(body.encode(texts)), dim=-1).double()
    y = np.array([sorted(set(labels)).index(v) for v in labels])
    margins = []
    for i in range(len(texts)):
        protos = []
        for c in (0, 1):
            members = [j for j in range(len(texts)) if y[j] == c and j != i]
            protos.append(torch.nn.functional.normalize(emb[members].mean(0), dim=0))
        margins.append(float(emb[i] @ protos[y[i]] - emb[i] @ protos[1 - y[i]]))
    return float(np.mean(margins))


def test_without_descriptions_auto_tunes_towards_prototypes_and_learns_a_separable_task(tiny_bert, tmp_path):
    before = SentenceTransformer(str(tiny_bert), device="cpu")
    lab = SetFitLabeler(tiny_bert, description_epochs=20, body_lr=1e-3, description_scale=1.0, seed=0).fit(A + B, LABELS)
    assert lab.fit_info["tuning"] == "prototypes" and lab.fit_info["steps"] == 20
    assert lab.fit_info["body_lr"] == 1e-3
    # each text moved towards the mean of the other texts of its label, away from the other label's
    assert _prototype_margin(lab.body, A + B, LABELS) > _prototype_margin(before, A + B, LABELS) + 0.1
    probe = ["the dog sat on the mat", "stars over rivers"]
    assert lab.predict(probe) == ["animal", "water"]
    # the prototypes join the head's features (one cosine per label) and are saved with it
    assert lab._features(probe).shape[1] == 32 + 2
    lab.save(tmp_path / "lab")
    assert json.loads((tmp_path / "lab" / "head.json").read_text())["prototypes"] is not None
    np.testing.assert_allclose(SetFitLabeler.load(tmp_path / "lab").predict_proba(probe), lab.predict_proba(probe),
                               atol=1e-6)
    # same seed, same labeller; without prototype features the head sees the embedding alone
    again = SetFitLabeler(tiny_bert, description_epochs=20, body_lr=1e-3, description_scale=1.0, seed=0).fit(A + B, LABELS)
    np.testing.assert_allclose(again.predict_proba(probe), lab.predict_proba(probe), atol=1e-6)
    plain = SetFitLabeler(tiny_bert, description_epochs=1, prototype_features=False, seed=0).fit(A + B, LABELS)
    assert plain._features(probe).shape[1] == 32 and plain._prototypes is None
    assert plain.fit_info["body_lr"] == BODY_LR["prototypes"] > BODY_LR["contrastive"]  # each tuning's own default
    with pytest.raises(BadInput, match="body_lr must be positive"):
        SetFitLabeler(tiny_bert, body_lr=0)


def test_prototype_tuning_with_a_single_example_label_still_runs(tiny_bert):
    from semsearch.label.tuning import tune_on_prototypes

    body = SentenceTransformer(str(tiny_bert), device="cpu")
    steps = tune_on_prototypes(body, A + B[:1], [0] * 4 + [1], epochs=2, batch_size=4, lr=1e-3, scale=20.0, seed=0,
                               bf16=False, progress=False)
    assert steps == 4 and all(torch.isfinite(p).all() for p in body.parameters())


def test_prototype_features_leave_each_example_out_of_its_own_label(tiny_bert):
    from semsearch.label.features import leave_one_out_prototypes

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(8, 5))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    y = [0, 1, 0, 0, 1, 1, 0, 2]  # label 2 has a single example: nothing left to compare it with
    protos, cosines = leave_one_out_prototypes(emb, y, 3)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    for c in range(3):  # the prototypes: each label's normalised mean
        np.testing.assert_allclose(protos[c], unit(emb[[i for i, v in enumerate(y) if v == c]].mean(0)))
    for i in range(len(emb)):  # brute force: cosines to the other examples' means, own label without i
        others = [[j for j, v in enumerate(y) if v == c and j != i] for c in range(3)]
        expected = [emb[i] @ unit(emb[js].mean(0)) if js else 0.0 for js in others]
        np.testing.assert_allclose(cosines[i], expected, atol=1e-12)
    lab = SetFitLabeler(tiny_bert, description_scale=3.0)  # the head's features: embedding, then scaled cosines
    lab.classes = ["a", "b", "c"]
    _, features = lab._prototype_features(emb, [lab.classes[v] for v in y])
    np.testing.assert_allclose(features, np.hstack([emb, 3.0 * cosines]))


def test_crossfit_runs_prototype_fold_models_alongside(tiny_bert):
    lab = SetFitLabeler(tiny_bert, description_epochs=2, calibration="crossfit", seed=0).fit(A + B, LABELS)
    assert lab.fit_info["tuning"] == "prototypes" and lab.fit_info["calibration"] == "crossfit"
    assert lab.fit_info["crossfit_folds"] == 4 and lab.out_of_fold_logits.shape == (8, 2)
    assert lab.fit_info["parallel"] == min(torch.get_num_threads(), 5)
    z = lab.decision_function(["the cat"]) / lab.temperature
    np.testing.assert_allclose(lab.predict_proba(["the cat"]), softmax(z))
    # the temperature: the out-of-fold optimum under the default prior on log T (sd 1), never below 1 for a
    # small fit
    y = np.array([lab.classes.index(v) for v in LABELS])
    assert lab.temperature == fit_temperature(lab.out_of_fold_logits, y, prior_sd=1.0, soften_only=True) >= 1
    with pytest.raises(BadInput, match="temperature_prior_sd must be positive"):
        SetFitLabeler(tiny_bert, temperature_prior_sd=0)


def test_temperature_prior_pulls_few_labels_towards_one_and_many_labels_not():
    rng = np.random.default_rng(0)

    def draw(n, true_t=3.0):  # logits whose calibrated temperature is true_t
        z = rng.normal(scale=4.0, size=(n, 3))
        y = np.array([rng.choice(3, p=p) for p in softmax(z / true_t)])
        return z, y

    z, y = draw(4000)
    free, held = fit_temperature(z, y), fit_temperature(z, y, prior_sd=0.5)
    assert abs(np.log(free / 3.0)) < 0.1 and abs(np.log(held / free)) < 0.05  # many labels: the prior hardly matters
    z, y = draw(12)
    free, held = fit_temperature(z, y), fit_temperature(z, y, prior_sd=0.3)
    assert abs(np.log(held)) < abs(np.log(free))  # few labels: pulled towards T = 1
    # brute force over the grid: the MAP objective is summed log loss + (log T)^2 / (2 sd^2)
    rows = np.arange(len(y))
    objective = [-np.log(softmax(z / t)[rows, y] + 1e-12).sum() + np.log(t) ** 2 / (2 * 0.3 ** 2) for t in GRID]
    assert held == pytest.approx(GRID[int(np.argmin(objective))])


def test_reliability_bins_against_brute_force_and_ece():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.3, 1.0, size=5000)
    calibrated = rng.uniform(size=5000) < confidence           # right as often as it says
    over = rng.uniform(size=5000) < confidence ** 3             # right less often than it says
    good, bad = reliability_bins(confidence, calibrated), reliability_bins(confidence, over)
    assert good.ece < 0.03 and bad.ece > 0.15
    assert np.all(bad.accuracy <= bad.confidence + 0.02)
    np.testing.assert_allclose(np.abs(good.accuracy - good.confidence).max(), 0, atol=0.06)
    assert good.ece == pytest.approx(expected_calibration_error(confidence, calibrated))
    for (low, high), count, acc in zip(good.edges, good.counts, good.accuracy):
        inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
        assert count == inside.sum() and acc == pytest.approx(calibrated[inside].mean())
    assert reliability_bins([1.0, 0.0], [True, False]).counts.tolist() == [1, 1]  # 1.0 in the last bin
    with pytest.raises(BadInput, match="probabilities in"):
        reliability_bins([1.5], [True])
    with pytest.raises(BadInput, match="2 confidences but 1 outcomes"):
        reliability_bins([0.5, 0.5], [True])


def test_reliability_diagram_writes_a_png(tmp_path):
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.5, 1.0, size=300)
    panels = [(f"panel {i}", reliability_bins(confidence, rng.uniform(size=300) < confidence)) for i in range(3)]
    reliability_diagram(panels, tmp_path / "r.png", columns=2, title="synthetic")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(BadInput, match="no panels"):
        reliability_diagram([], tmp_path / "none.png")


class _Words:
    """A deterministic bag-of-words embedder over a fixed vocabulary (the plumbing, not the model, is tested)."""

    VOCAB = ["cat", "dog", "pet", "sea", "river", "water", "money", "bank"]

    def encode(self, texts):
        return np.array([[t.lower().count(w) + 1e-3 * k for k, w in enumerate(self.VOCAB)] for t in texts], dtype=float)


def test_zero_shot_picks_the_closest_description_and_says_it_is_uncalibrated():
    lab = ZeroShotLabeler({"water": "sea, river, water", "pet": "cat, dog, pet"}, embedder=_Words())
    assert lab.classes == ["pet", "water"] and lab.calibrated is False
    assert lab.predict(["my cat and dog", "the river meets the sea"]) == ["pet", "water"]
    proba = lab.predict_proba(["my cat and dog"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    cos = lab.cosines(["my cat and dog"])
    np.testing.assert_allclose(proba, softmax(ZERO_SHOT_SCALE * cos))
    assert lab.predict_proba([]).shape == (0, 2)
    with pytest.raises(BadInput, match="at least two labels"):
        ZeroShotLabeler({"pet": "cats"}, embedder=_Words())
    with pytest.raises(BadInput, match="scale must be positive"):
        ZeroShotLabeler({"pet": "cats", "water": "sea"}, embedder=_Words(), scale=0)


def test_label_zero_shot_cli_without_examples(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"pet": "an animal kept at home, like a cat or a dog",
                                                       "money": "news about money, banks and the stock market"}))
    (tmp_path / "texts.txt").write_text("my cat sleeps all day\nthe stock market fell sharply\n")
    args = ["label", "--input", tmp_path / "texts.txt", "--labels", tmp_path / "labels.json",
            "--output", tmp_path / "out.jsonl", "-q"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["pet", "money"]
    assert all(r["calibrated"] is False and 0.5 < r["probability"] <= 1 for r in rows)
    assert "not calibrated" in result.stderr
    for extra, pattern in ((["--method", "setfit"], "learns from examples"),
                           (["--method", "zero-shot", "--labels", tmp_path / "missing.json"], "cannot be read")):
        bad = CliRunner().invoke(cli, [str(a) for a in args[:3] + args[5:] + extra])
        assert bad.exit_code == 2 and pattern in bad.output
    no_labels = CliRunner().invoke(cli, [str(a) for a in args[:3] + args[5:]])
    assert no_labels.exit_code == 2 and "needs LABELS.json" in no_labels.output
