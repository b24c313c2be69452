"""Cross-fitting helpers: folds, the temperature and its posterior, on seeded synthetic logits."""

from __future__ import annotations

import numpy as np

from semsearch.label import expected_calibration_error
from semsearch.label_crossfit import (fit_temperature, fold_count, mixed_softmax, quantiles, softmax,
                                      stratified_folds, temperature_posterior)


def overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits 4x too confident for labels drawn from softmax(true logits), 3 classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    true_logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    p_true = softmax(true_logits)
    y = np.array([rng.choice(3, p=p) for p in p_true])
    return 4.0 * true_logits, y


def ece(proba: np.ndarray, y: np.ndarray) -> float:
    return expected_calibration_error(proba.max(axis=1), proba.argmax(axis=1) == y)


def test_fit_temperature_calibrates_overconfident_logits():
    over, y = overconfident(4000)
    t = fit_temperature(over, y)
    assert 3.0 < t < 5.3
    assert ece(softmax(over / t), y) < 0.03 < ece(softmax(over), y)


def test_temperature_posterior_is_broad_from_few_labels_and_sharp_from_many():
    over, y = overconfident(4000)
    intervals = {}
    for n in (40, 4000):
        temps, weights = temperature_posterior(over[:n], y[:n])
        assert abs(weights.sum() - 1) < 1e-12 and np.all(weights > 0)
        assert temps.min() <= fit_temperature(over[:n], y[:n]) <= temps.max()
        intervals[n] = quantiles(temps, weights, (0.05, 0.95))
    (low40, high40), (low, high) = intervals[40], intervals[4000]
    assert 3.0 < low < 4.0 < high < 5.3                  # many labels: a narrow interval around the true 4
    assert np.log(high40 / low40) > 4 * np.log(high / low)
    # the posterior average of 4000 labels is almost the single best temperature
    np.testing.assert_allclose(mixed_softmax(over, *temperature_posterior(over, y)),
                               softmax(over / fit_temperature(over, y)), atol=0.02)


def test_mixed_softmax_is_the_weighted_average_and_keeps_the_ranking():
    z = np.random.default_rng(1).normal(size=(50, 4)) * 3
    mixed = mixed_softmax(z, np.array([1.0, 3.0]), np.array([0.25, 0.75]))
    np.testing.assert_allclose(mixed, 0.25 * softmax(z) + 0.75 * softmax(z / 3.0))
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)
    assert np.array_equal(mixed.argmax(axis=1), z.argmax(axis=1))     # accuracy does not depend on the temperature


def test_stratified_folds_deal_every_label_round_the_folds():
    labels = ["a"] * 9 + ["b"] * 6 + ["c"] * 4
    folds = stratified_folds(labels, ["a", "b", "c"], k=4, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(len(labels)))
    for c, count in (("a", 9), ("b", 6), ("c", 4)):
        per_fold = [sum(labels[i] == c for i in f) for f in folds]
        assert sum(per_fold) == count and max(per_fold) - min(per_fold) <= 1
    assert folds == stratified_folds(labels, ["a", "b", "c"], k=4, seed=0)
    assert folds != stratified_folds(labels, ["a", "b", "c"], k=4, seed=1)


def test_fold_count():
    eight = ["a"] * 8 + ["b"] * 8
    assert fold_count("descriptions", eight, ["a", "b"]) == 4
    assert fold_count("contrastive", eight, ["a", "b"]) == 2
    assert fold_count("descriptions", ["a"] * 3 + ["b"] * 8, ["a", "b"]) == 3      # the rarest label's count
    assert fold_count("descriptions", ["a"] * 100 + ["b"] * 100, ["a", "b"]) == 2  # 200 examples: two folds
