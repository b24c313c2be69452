"""The FAISS wrapper against exact brute force on seeded synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch import BadInput
from semsearch.index import vectors as index_module
from semsearch.index.vectors import IndexBuilder, VectorIndex


def _data(n=2000, q=50, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = min(q, n)
    queries = x[rng.choice(n, q, replace=False)] + 0.1 * rng.standard_normal((q, dim)).astype("float32")
    ids = rng.permutation(np.arange(10_000, 10_000 + n)).astype("int64")  # ids unrelated to positions
    return x, queries.astype("float32"), ids


def _brute_force(x, ids, queries, k):
    scores = queries @ x.T
    top = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, top, axis=1), ids[top]


def test_flat_equals_brute_force_with_user_ids():
    x, queries, ids = _data()
    idx = VectorIndex.create(x.shape[1], "Flat")
    idx.add(x, ids)
    scores, got = idx.search(queries, 10)
    exp_scores, exp_ids = _brute_force(x, ids, queries, 10)
    np.testing.assert_array_equal(got, exp_ids)
    np.testing.assert_allclose(scores, exp_scores, atol=1e-5)


@pytest.mark.parametrize("factory", ["HNSW32", "IVF16,Flat"])
def test_approximate_factories_have_high_recall(factory):
    x, queries, ids = _data()
    builder = IndexBuilder(x.shape[1], factory)
    for part in range(0, len(x), 500):
        builder.add(x[part : part + 500], ids[part : part + 500])
    idx = builder.finish()
    _, got = idx.search(queries, 10)
    _, exp = _brute_force(x, ids, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exp)])
    assert recall >= 0.9, recall
    assert idx.ntotal == len(x)


def test_save_and_load_roundtrip(tmp_path):
    x, queries, ids = _data(n=300)
    idx = VectorIndex.create(x.shape[1], "Flat")
    idx.add(x, ids)
    idx.save(tmp_path / "v.faiss")
    again = VectorIndex.load(tmp_path / "v.faiss", "Flat")
    for a, b in zip(idx.search(queries, 5), again.search(queries, 5)):
        np.testing.assert_array_equal(a, b)


def test_k_larger_than_index_marks_empty_slots():
    x, queries, ids = _data(n=3)
    idx = VectorIndex.create(x.shape[1], "Flat")
    idx.add(x, ids)
    _, got = idx.search(queries[:1], 5)
    assert list(got[0, 3:]) == [-1, -1]


def test_invalid_factory_is_bad_input():
    with pytest.raises(BadInput, match="invalid FAISS factory string 'Nonsense42'"):
        VectorIndex.create(8, "Nonsense42")


def test_auto_factory_is_flat_below_threshold_and_hnsw_above(monkeypatch):
    monkeypatch.setattr(index_module, "AUTO_HNSW_THRESHOLD", 100)
    x, _, ids = _data(n=250)
    small = IndexBuilder(x.shape[1])
    small.add(x[:100], ids[:100])
    assert small.finish().factory == "Flat"
    large = IndexBuilder(x.shape[1])
    large.add(x[:100], ids[:100])
    large.add(x[100:], ids[100:])
    built = large.finish()
    assert built.factory == "HNSW32" and built.ntotal == 250


def test_too_few_vectors_to_train_is_bad_input():
    x, _, ids = _data(n=20)
    builder = IndexBuilder(x.shape[1], "IVF64,Flat")
    builder.add(x, ids)
    with pytest.raises(BadInput, match="cannot train"):
        builder.finish()
