"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from semsearch.metrics import (
    average_precision_at_k,
    evaluate_run,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

RANKING = ["d1", "d2", "d3", "d4", "d5"]
GRADES = {"d2": 1, "d4": 2, "d9": 1}  # d9 is never retrieved


def test_ndcg_by_hand():
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKING, GRADES, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKING, GRADES, 1) == 0.0
    assert ndcg_at_k(["d4", "d2", "d9"], GRADES, 3) == pytest.approx(1.0)


def test_mrr_by_hand():
    assert mrr_at_k(RANKING, GRADES, 10) == 0.5
    assert mrr_at_k(RANKING, GRADES, 1) == 0.0


def test_recall_by_hand():
    assert recall_at_k(RANKING, GRADES, 10) == pytest.approx(2 / 3)
    assert recall_at_k(RANKING, GRADES, 2) == pytest.approx(1 / 3)


def test_average_precision_by_hand():
    # relevant at ranks 2 and 4: (1/2 + 2/4) / 3 relevant documents
    assert average_precision_at_k(RANKING, GRADES, 100) == pytest.approx((0.5 + 0.5) / 3)
    assert average_precision_at_k(RANKING, GRADES, 3) == pytest.approx(0.5 / 3)


def test_grade_zero_is_not_relevant():
    assert mrr_at_k(["a", "b"], {"a": 0, "b": 1}, 10) == 0.5
    assert recall_at_k(["a"], {"a": 0, "b": 1}, 10) == 0.0


def test_evaluate_run_averages_and_counts_missing_queries_as_zero():
    qrels = {"q1": {"d2": 1}, "q2": {"x": 1}, "q3": {"y": 0}}  # q3 has nothing relevant: not scored
    result = evaluate_run({"q1": ["d1", "d2"]}, qrels)
    assert result.queries == 2
    assert result.mrr_at_10 == pytest.approx(0.25)
    assert result.recall_at_100 == pytest.approx(0.5)
    assert result.ndcg_at_10 == pytest.approx((1 / math.log2(3)) / 2)
    assert set(result.to_dict()) == {"ndcg@10", "mrr@10", "recall@100", "map@100", "queries"}
