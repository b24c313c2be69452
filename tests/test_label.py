"""The threshold labeller on synthetic scores with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semsearch import BadInput, ManifestMismatch
from semsearch.label.threshold import (
    ABSTAIN,
    ThresholdLabeler,
    expected_calibration_error,
)


def _synthetic(n=400, seed=0, scale=1.0):
    """Scores whose true P(positive | s) = sigmoid(s): a logistic with slope 1."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2.5, n)
    y = rng.random(n) < 1 / (1 + np.exp(-s))
    return s * scale, y


def test_f1_threshold_on_separable_scores_is_the_gap():
    s = np.array([-3.0, -2.0, -1.5, 0.5, 1.0, 4.0])
    lab = ThresholdLabeler().fit(s, [0, 0, 0, 1, 1, 1])
    assert lab.threshold == pytest.approx(-0.5)  # midpoint between -1.5 and 0.5
    assert lab.fit_report.f1 == 1.0
    assert lab.predict([-0.6, -0.4]) == ["no", "yes"]


def test_f1_threshold_matches_brute_force():
    s, y = _synthetic(60, seed=3)
    lab = ThresholdLabeler().fit(s, y)

    def f1(t):
        pred = s >= t
        tp = (pred & y).sum()
        return 2 * tp / (pred.sum() + y.sum())

    grid = np.linspace(s.min() - 1, s.max() + 1, 20001)
    assert f1(lab.threshold) == pytest.approx(max(f1(t) for t in grid))


def test_target_precision_gives_most_recall_at_that_precision():
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    y = np.array([0, 1, 0, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
    lab = ThresholdLabeler(objective="precision", target_precision=0.8, score_kind="probability").fit(s, y)
    # at 0.45 the top 6 hold 5 positives (precision 0.83); one step lower is 5/7 = 0.71
    assert lab.threshold == pytest.approx(0.45)
    assert lab.fit_report.precision == pytest.approx(5 / 6) and lab.fit_report.recall == pytest.approx(5 / 6)
    with pytest.raises(BadInput, match="no threshold reaches precision"):
        ThresholdLabeler(objective="precision", target_precision=1.0, score_kind="probability").fit(
            [0.2, 0.9], [1, 0])


def test_platt_scaling_lowers_ece_of_miscalibrated_logits():
    s, y = _synthetic(400, seed=1, scale=4.0)  # overconfident: true slope is 1/4
    lab = ThresholdLabeler(calibration="platt").fit(s[:200], y[:200])
    raw = 1 / (1 + np.exp(-s[200:]))
    calibrated = lab.predict_proba(s[200:])
    assert expected_calibration_error(calibrated, y[200:]) < expected_calibration_error(raw, y[200:]) / 2
    assert lab.fit_report.ece_calibrated < lab.fit_report.ece_raw


def test_isotonic_is_monotone_and_calibrates():
    s, y = _synthetic(2000, seed=2, scale=4.0)
    lab = ThresholdLabeler(calibration="auto").fit(s[:1000], y[:1000])
    assert lab.fit_report.calibration == "isotonic"
    grid = np.linspace(-30, 30, 500)
    assert np.all(np.diff(lab.predict_proba(grid)) >= -1e-12)
    assert expected_calibration_error(lab.predict_proba(s[1000:]), y[1000:]) < 0.05


def test_isotonic_treats_tied_scores_as_one_whatever_the_row_order():
    rng = np.random.default_rng(7)
    s = np.concatenate([rng.normal(size=200), np.ones(100)])
    y = np.concatenate([rng.random(200) < 0.5, np.arange(100) % 2 == 0])  # half the tied scores positive
    probs = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(s))
        lab = ThresholdLabeler(calibration="isotonic").fit(s[order], y[order])
        probs.append(float(lab.predict_proba([1.0])[0]))
    assert max(probs) - min(probs) < 1e-12 and abs(probs[0] - 0.5) < 0.1


def test_abstain_band():
    s, y = _synthetic(100, seed=4)
    lab = ThresholdLabeler(abstain_band=0.15).fit(s, y)
    labels = lab.predict([lab.threshold, lab.threshold + 50, lab.threshold - 50])
    assert labels == [ABSTAIN, "yes", "no"]


def test_json_roundtrip_and_source_check(tmp_path):
    s, y = _synthetic(300, seed=5)
    lab = ThresholdLabeler(score_kind="logit", model="models/r", labels=("irrelevant", "relevant")).fit(
        s, np.where(y, "relevant", "irrelevant"))
    lab.save(tmp_path / "lab.json")
    again = ThresholdLabeler.load(tmp_path / "lab.json")
    probe = np.linspace(-5, 5, 11)
    assert again.predict(probe) == lab.predict(probe)
    np.testing.assert_allclose(again.predict_proba(probe), lab.predict_proba(probe))
    assert again.fit_report == lab.fit_report
    again.check_source("logit", "models/r")
    with pytest.raises(ManifestMismatch, match="fitted on logit scores of models/r, not probability"):
        again.check_source("probability")
    with pytest.raises(ManifestMismatch):
        again.check_source("logit", "models/other")


def test_a_saved_threshold_labeller_is_written_whole_and_bad_files_are_typed_errors(tmp_path):
    s, y = _synthetic(100, seed=6)
    lab = ThresholdLabeler().fit(s, y)
    (tmp_path / "lab.json").write_text("an older file")
    lab.save(tmp_path / "lab.json")
    assert ThresholdLabeler.load(tmp_path / "lab.json").predict([0.3]) == lab.predict([0.3])
    assert [p.name for p in tmp_path.iterdir()] == ["lab.json"]  # no temporary file left beside it
    with pytest.raises(BadInput, match="cannot write labeller"):
        lab.save(tmp_path / "missing" / "lab.json")
    with pytest.raises(BadInput, match="cannot read labeller"):
        ThresholdLabeler.load(tmp_path / "missing.json")
    data = json.loads((tmp_path / "lab.json").read_text())
    del data["fit"]
    (tmp_path / "damaged.json").write_text(json.dumps(data))
    with pytest.raises(ManifestMismatch, match="damaged threshold labeller"):
        ThresholdLabeler.load(tmp_path / "damaged.json")


def test_bad_input():
    with pytest.raises(BadInput, match="valid values are: f1, precision"):
        ThresholdLabeler(objective="accuracy")
    with pytest.raises(BadInput, match="both classes"):
        ThresholdLabeler().fit([1.0, 2.0], [1, 1])
    with pytest.raises(BadInput, match="unknown label 'maybe'"):
        ThresholdLabeler().fit([1.0, 2.0], ["yes", "maybe"])
    with pytest.raises(BadInput, match="NaN"):
        ThresholdLabeler().fit([1.0, float("nan")], [0, 1])
    with pytest.raises(BadInput, match="not fitted"):
        ThresholdLabeler().predict([1.0])


def test_an_abstention_reports_the_positive_label_s_probability():
    pytest.importorskip("fastapi")
    from semsearch.serve.labelers import ServedLabeler

    s, y = _synthetic(400, seed=8)
    lab = ThresholdLabeler(abstain_band=0.2, labels=("neg", "pos")).fit(s, np.where(y, "pos", "neg"))
    scores = np.linspace(-3, 3, 61)
    p_pos = lab.predict_proba(scores)
    rows = ServedLabeler("gate", lab).predict(scores=scores.tolist())
    assert {r["label"] for r in rows} == {"neg", ABSTAIN, "pos"}
    for row, p in zip(rows, p_pos):
        assert row["probability"] == pytest.approx(1 - p if row["label"] == "neg" else p)


def test_the_description_scorer_reads_a_sigmoid_reranker_s_logits(tiny_cross_encoder):
    from semsearch import Reranker
    from semsearch.label.documents import DescriptionScorer

    descriptions = {"pet": "an animal kept at home", "other": "anything else"}
    texts = ["my cat sleeps", "the market fell"]
    plain = DescriptionScorer(descriptions, "pet", reranker=Reranker(tiny_cross_encoder, precision="fp32"))
    sigmoid = DescriptionScorer(descriptions, "pet",
                                reranker=Reranker(tiny_cross_encoder, precision="fp32", activation="sigmoid"))
    np.testing.assert_allclose(sigmoid(texts), plain(texts), atol=1e-6)
    assert sigmoid.score_kind == "logit"
