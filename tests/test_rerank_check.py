"""The reranker's usefulness check: the cross-fitted blend with the first stage, on synthetic scores
(against brute force) and on tiny rerankers trained here on a learnable toy task and on noise labels."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import WORDS

from semsearch import Hit, Reranker
from semsearch.cli import cli
from semsearch.errors import BadInput
from semsearch.metrics import ndcg_at_k
from semsearch.rerank.blend import (
    BLEND_WEIGHTS,
    blend_order,
    check_blend,
    default_candidates,
)
from semsearch.rerank.train import train_reranker
from semsearch.rerank.training_data import TrainingData
from semsearch.types import Document


def _synthetic(seed: int, n: int, signal: float, first_signal: float = 0.0):
    """``n`` queries of 20 candidates with 2 relevant ones each. The first stage orders them by
    ``first_signal`` · relevance + noise, the reranker scores them ``signal`` · relevance + noise
    (standard normal noise)."""
    rng = np.random.default_rng(seed)
    rankings, scores, grades = [], [], []
    for q in range(n):
        relevant = np.zeros(20)
        relevant[rng.choice(20, size=2, replace=False)] = 1
        order = np.argsort(-(first_signal * relevant + rng.normal(size=20)), kind="stable")
        ids = [f"q{q}d{i}" for i in order]
        rankings.append(ids)
        scores.append(signal * relevant[order] + rng.normal(size=20))
        grades.append({f"q{q}d{i}": 1 for i in np.flatnonzero(relevant)})
    return rankings, scores, grades


def _mean_ndcg(rankings, scores, grades, w):
    return float(np.mean([ndcg_at_k(blend_order(r, s, w), g, 10) for r, s, g in zip(rankings, scores, grades)]))


def test_a_helpful_reranker_keeps_the_weight_that_is_best_by_brute_force():
    rankings, scores, grades = _synthetic(0, 60, signal=3.0)
    check = check_blend(rankings, scores, grades, folds=5, seed=0)
    by_weight = {w: _mean_ndcg(rankings, scores, grades, w) for w in BLEND_WEIGHTS}
    best = max(by_weight.values())
    assert check.useful and check.gain > 3 * check.gain_se
    assert check.weight == max(w for w, v in by_weight.items() if v >= best - 1e-12)
    assert check.fitted_ndcg10 == pytest.approx(best)
    assert check.first_stage_ndcg10 == pytest.approx(by_weight[1.0])
    assert check.reranked_ndcg10 == pytest.approx(by_weight[0.0])
    assert check.queries == 60 and check.folds == 5 and len(check.fold_weights) == 5
    # the cross-fitted gain is at most the in-sample one (the weight is never judged on its own queries)
    assert check.gain <= best - by_weight[1.0] + 1e-12


def test_noise_rerankers_are_blended_at_weight_one_although_a_weight_wins_in_sample():
    kept, in_sample_winner = 0, 0
    for seed in range(20):
        rankings, scores, grades = _synthetic(seed, 40, signal=0.0, first_signal=1.0)
        check = check_blend(rankings, scores, grades, seed=seed)
        in_sample_winner += max(_mean_ndcg(rankings, scores, grades, w) for w in BLEND_WEIGHTS) > \
            check.first_stage_ndcg10 + 1e-9
        if check.useful:
            kept += 1
            continue
        assert check.weight == 1.0 and check.gain <= check.gain_se
        assert check.fitted_ndcg10 == pytest.approx(check.first_stage_ndcg10)
        assert "keep the first stage's order" in check.summary()
    assert kept <= 3  # 7% expected (a gain above one standard error by chance; 15% above 0)
    assert in_sample_winner > kept + 1  # a weight fitted and judged on the same queries would keep more


def test_check_round_trips_and_refuses_bad_input():
    rankings, scores, grades = _synthetic(1, 10, signal=2.0)
    check = check_blend(rankings, scores, grades)
    assert type(check).from_dict(json.loads(json.dumps(check.to_dict()))) == check
    with pytest.raises(BadInput, match="at least 2 judged queries"):
        check_blend(rankings[:1], scores[:1], grades[:1])
    with pytest.raises(BadInput, match="one entry per query"):
        check_blend(rankings, scores[:3], grades)
    with pytest.raises(BadInput, match=r"\[0, 1\]"):
        check_blend(rankings, scores, grades, weights=[0.5, 2.0])


class _FakeFirstStage:
    """A first stage that puts each query's relevant document at a seeded rank among 8 candidates (the
    others drawn from the rest of the corpus): decent recall, uninformative order."""

    def __init__(self, corpus: dict[str, Document], relevant: dict[str, str], seed: int = 0):
        self.corpus, self.relevant, self.rng = corpus, relevant, random.Random(seed)
        self.by_text: dict[str, list[str]] = {}

    def first_stage(self, texts, k, mode):
        out = []
        for text in texts:
            if text not in self.by_text:
                pos = self.relevant[text]
                others = self.rng.sample(sorted(d for d in self.corpus if d != pos), 11)
                ids = others[:11]
                ids.insert(self.rng.randrange(8), pos)
                self.by_text[text] = ids
            out.append([Hit(d, 1.0 - r / 100, r + 1, self.corpus[d].text) for r, d in enumerate(self.by_text[text][:k])])
        return out


def _toy(learnable: bool, n: int = 40, seed: int = 0) -> tuple[TrainingData, _FakeFirstStage]:
    """``n`` queries, each with one relevant document. Learnable: the relevant documents (and only they)
    contain the word "moon". Noise: nothing in the text tells the relevant documents apart."""
    rng = random.Random(seed)
    words = [w for w in WORDS if w != "moon"]
    corpus, queries, qrels, relevant = {}, {}, {}, {}
    for i in range(3 * n):
        text = " ".join(rng.choice(words) for _ in range(8))
        if learnable and i < n:
            text = text.replace(text.split()[3], "moon", 1)
        corpus[f"d{i}"] = Document(f"d{i}", text)
    for q in range(n):
        queries[f"q{q}"] = f"{q} " + " ".join(rng.choice(words) for _ in range(3))
        qrels[f"q{q}"] = {f"d{q}": 1}
        relevant[queries[f"q{q}"]] = f"d{q}"
    return TrainingData(corpus, queries, qrels, "toy"), _FakeFirstStage(corpus, relevant)


_TINY = dict(max_length=32, group_size=4, hard_negatives=2, mine_depth=8, candidates=8, lr=3e-3, head_lr=3e-3,
             progress=False)


def test_a_reranker_that_helps_keeps_its_blend_weight(tmp_path, tiny_bert):
    data, first = _toy(learnable=True)
    report = train_reranker(data, tmp_path / "r", base=str(tiny_bert), epochs=6, seed=0, first_stage=first, **_TINY)
    assert report.check_method == "cross-fitted, 2 folds" and report.validation_queries == 40
    assert report.useful and report.first_stage_weight < 1.0
    assert report.check["gain"] > 0.1 and report.check["first_stage_ndcg10"] < 0.7
    reranker = Reranker(tmp_path / "r")
    assert reranker.first_stage_weight == report.first_stage_weight and reranker.check.useful
    # the weight was fitted on the check's candidates: searches rerank as many unless told otherwise
    assert report.candidates == reranker.trained_candidates == _TINY["candidates"]
    assert default_candidates(reranker, 5) == report.candidates and default_candidates(reranker, 30) == 30
    assert "**Worth using:**" in (tmp_path / "r" / "README.md").read_text()
    assert json.loads((tmp_path / "r" / "validation_queries.json").read_text()) == []  # the final model saw all


def test_a_reranker_trained_on_noise_labels_is_blended_at_weight_one_and_says_so(tmp_path, tiny_bert, caplog):
    data, first = _toy(learnable=False)
    with caplog.at_level(logging.WARNING, logger="semsearch.rerank.train"):
        report = train_reranker(data, tmp_path / "r", base=str(tiny_bert), epochs=6, seed=0, first_stage=first,
                                **_TINY)
    assert not report.useful and report.first_stage_weight == 1.0 and report.check["gain"] <= 0
    assert "did not beat the first stage" in caplog.text
    config = json.loads((tmp_path / "r" / "semsearch_reranker.json").read_text())
    assert config["first_stage_weight"] == 1.0 and config["check"]["useful"] is False
    assert "**Not better than the first stage:**" in (tmp_path / "r" / "README.md").read_text()
    reranker = Reranker(tmp_path / "r")
    assert reranker.first_stage_weight == 1.0 and not reranker.check.useful
    hits = first.first_stage([data.queries["q0"]], 8, "dense")
    assert [h.id for h in reranker.rerank([data.queries["q0"]], hits, 8)[0]] == [h.id for h in hits[0]]


def test_held_out_check_picks_the_epoch_and_cross_fit_is_validated(tmp_path, tiny_bert):
    data, first = _toy(learnable=True)
    report = train_reranker(data, tmp_path / "r", base=str(tiny_bert), epochs=3, seed=0, first_stage=first,
                            cross_fit=0, validation_fraction=0.25, **_TINY)
    assert report.check_method == "held out, 10 queries" and report.train_queries == 30
    history = json.loads((tmp_path / "r" / "semsearch_reranker.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    scores = [h["first_stage_ndcg10"] + h["gain"] for h in history]
    assert report.best_epoch == 1 + int(np.argmax(scores))
    assert len(json.loads((tmp_path / "r" / "validation_queries.json").read_text())) == 10
    with pytest.raises(BadInput, match="2 to 40 folds"):
        train_reranker(data, tmp_path / "x", base=str(tiny_bert), first_stage=first, cross_fit=41, **_TINY)


def test_cli_warns_when_the_reranker_does_not_help(tmp_path, tiny_bert, tiny_cross_encoder):
    data, first = _toy(learnable=False)
    train_reranker(data, tmp_path / "r", base=str(tiny_bert), epochs=2, seed=0, first_stage=first, **_TINY)
    from semsearch import SearchEngine, TransformerEmbedder

    SearchEngine.build(list(data.corpus.values()), tmp_path / "idx", progress=False,
                       embedder=TransformerEmbedder(str(tiny_bert), pooling="mean"))
    runner = CliRunner()
    out = runner.invoke(cli, ["set-reranker", str(tmp_path / "r"), "--index", str(tmp_path / "idx")])
    assert out.exit_code == 0, out.stderr
    assert "blend weight 1.00" in out.stdout
    assert out.stderr.startswith("warning: the reranker did not beat the first stage")
    out = runner.invoke(cli, ["set-reranker", str(tiny_cross_encoder), "--index", str(tmp_path / "idx")])
    assert out.exit_code == 0 and "has not been checked" in out.stderr


def test_inverse_cloze_pseudo_queries_are_deterministic_for_a_seed():
    from semsearch.rerank.training_data import inverse_cloze

    rng = random.Random(3)
    docs = [Document(f"d{i}", " ".join(" ".join(rng.choice(WORDS) for _ in range(7)).capitalize() + "."
                                       for _ in range(4)), f"title {i}") for i in range(30)]
    data = inverse_cloze(docs, count=20, seed=5)
    assert data == inverse_cloze(docs, count=20, seed=5)
    assert data.queries != inverse_cloze(docs, count=20, seed=6).queries
    assert len(data.queries) == 20 and not data.judged
    for qid, query in data.queries.items():
        (positive,) = data.qrels[qid]
        source = positive.removesuffix("~ict")
        assert query in data.corpus[source].text and query not in data.corpus[positive].text
        assert data.corpus[positive].title == data.corpus[source].title
        assert data.exclude[qid] == {source, positive}
    with pytest.raises(BadInput, match="no document has"):
        inverse_cloze([Document("x", "One sentence only.")])


def test_pseudo_queries_never_draw_their_own_document_as_a_negative():
    from semsearch.rerank.mining import draw_negatives

    rng = random.Random(0)
    ids = [f"d{i}" for i in range(6)]
    for _ in range(50):
        chosen = draw_negatives(rng, {"d0~ict": 1}, ["d0", "d1", "d2"], ids, hard=2, total=4, exclude=frozenset({"d0"}))
        assert "d0" not in chosen and len(chosen) == 4


def test_a_relevant_document_is_never_its_query_s_negative_even_in_a_tiny_corpus():
    from semsearch.rerank.mining import draw_negatives

    rng = random.Random(0)
    ids = [f"d{i}" for i in range(10)]
    judged = {"d0": 1, **{f"d{i}": 0 for i in range(1, 9)}}  # grade-0 judgements are not relevant
    for _ in range(200):
        chosen = draw_negatives(rng, judged, ids[:5], ids, hard=2, total=4)
        assert "d0" not in chosen and len(chosen) == 4
    two = {"d0": 1, "d1": 1}  # a pairs file with two positives, in a corpus of three documents
    for _ in range(50):
        assert draw_negatives(rng, two, ids[:3], ids[:3], hard=1, total=4) == ["d2"] * 4
    with pytest.raises(BadInput, match="no document can serve as a negative"):
        draw_negatives(rng, {"d0": 1, "d1": 2}, ids[:2], ids[:2], hard=1, total=3)
    many = [f"d{i}" for i in range(100)]
    mostly_relevant = {d: 1 for d in many[:95]}
    for _ in range(100):  # five negatives exist: four are drawn without repeats
        chosen = draw_negatives(rng, mostly_relevant, many[:10], many, hard=2, total=4)
        assert len(set(chosen)) == 4 and not set(chosen) & set(many[:95])


def test_a_reranker_trained_on_pseudo_queries_is_not_checked_and_says_so(tmp_path, tiny_bert):
    from semsearch.rerank.training_data import inverse_cloze

    rng = random.Random(1)
    docs = [Document(f"d{i}", " ".join(" ".join(rng.choice(WORDS) for _ in range(6)).capitalize() + "."
                                       for _ in range(3))) for i in range(30)]
    pseudo = inverse_cloze(docs, count=12, seed=0, min_words=2)
    first = _FakeFirstStage(dict(pseudo.corpus), {q: next(iter(pseudo.qrels[qid])).removesuffix("~ict")
                                                  for qid, q in pseudo.queries.items()})
    report = train_reranker(pseudo, tmp_path / "r", base=str(tiny_bert), epochs=1, seed=0, first_stage=first,
                            unchecked_weight=0.5, **_TINY)
    assert report.check is None and report.first_stage_weight == 0.5 and report.validation_queries == 0
    assert report.train_queries == 12 and "pseudo-queries, which cannot check it" in report.summary()
    assert "**Not checked:**" in (tmp_path / "r" / "README.md").read_text()
    reranker = Reranker(tmp_path / "r")
    assert reranker.first_stage_weight == 0.5
    assert report.candidates is None and reranker.trained_candidates is None  # no check fitted a weight on any
    assert default_candidates(reranker, 10) == 50


def test_training_reads_each_candidate_as_the_index_s_best_passage_for_the_query():
    from semsearch.rerank.mining import Mined
    from semsearch.types import Passage

    corpus = {d: Document(d, f"{d} start. {d} the part that matches.", f"T{d}") for d in ("a", "b", "c")}

    class TwoSides:  # dense finds a and b; the default (hybrid) mode also finds c
        def first_stage(self, texts, k, mode):
            ids = ["a", "b"] if mode == "dense" else ["c", "a"]
            return [[Hit(d, 1.0, r + 1, corpus[d].text, corpus[d].title, passages=(Passage(len(d) + 8, len(corpus[d].text)),))
                     for r, d in enumerate(ids)] for _ in texts]

    data = TrainingData(corpus, {"q": "which part matches"}, {"q": {"a": 1}}, "toy")
    mined = Mined(data, ["q"], depth=2, candidates=2, engine=TwoSides(), progress=False)
    assert mined.ranked["q"] == ["a", "b"] and mined.candidates["q"] == ["c", "a"]
    assert [mined.text("q", d) for d in "abc"] == [f"T{d} {d} the part that matches." for d in "abc"]
