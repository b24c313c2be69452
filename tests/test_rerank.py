"""The cross-encoder stage on a tiny model built in the test: scoring, reranking, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakes import HashEmbedder

from semsearch import BadInput, Document, ModelError, SearchEngine
from semsearch.rerank.blend import blend_order
from semsearch.rerank.reranker import Reranker
from semsearch.rerank.train import train_reranker
from semsearch.rerank.training_data import TrainingData, read_pairs

PAIRS = [
    ("the cat sat", "the cat sat on the mat while a dog barked"),
    ("rivers", "rivers flow to the sea"),
    ("books", "people read books about science history and art " * 3),
    ("moon", "the moon"),
]


def _manual_logits(folder, pairs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    out = []
    for q, d in pairs:
        with torch.no_grad():
            out.append(float(model(**tok(q, d, return_tensors="pt")).logits[0, 0]))
    return np.array(out)


def test_scores_are_the_model_logits_in_input_order(tiny_cross_encoder):
    reranker = Reranker(tiny_cross_encoder, batch_size=3, precision="fp32")
    result = reranker.score(PAIRS)
    np.testing.assert_allclose(result.scores, _manual_logits(tiny_cross_encoder, PAIRS), atol=1e-5)
    assert result.truncated_count == 0 and reranker.score_kind == "logit"


def test_long_pairs_are_counted_as_truncated(tiny_cross_encoder, caplog):
    result = Reranker(tiny_cross_encoder, max_length=14).score(PAIRS)
    assert list(result.truncated) == [True, False, True, False]
    assert "2 of 4 (query, document) pairs were longer than 14 tokens" in caplog.text


def test_sigmoid_gives_probabilities(tiny_cross_encoder):
    reranker = Reranker(tiny_cross_encoder, activation="sigmoid", precision="fp32")
    scores = reranker.score(PAIRS).scores
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-_manual_logits(tiny_cross_encoder, PAIRS))), atol=1e-5)
    assert reranker.score_kind == "probability" and reranker.config()["score_kind"] == "probability"


def test_a_bi_encoder_is_not_a_cross_encoder(tiny_bert):
    with pytest.raises(ModelError, match="not a cross-encoder.*train-reranker"):
        Reranker(tiny_bert)


def test_missing_model_names_what_to_do(tmp_path):
    with pytest.raises(ModelError, match="does not exist.*train one with `semsearch train-reranker`"):
        Reranker(tmp_path / "no" / "such" / "reranker")


def test_bad_options(tiny_cross_encoder):
    with pytest.raises(BadInput, match="valid values are: none, sigmoid"):
        Reranker(tiny_cross_encoder, activation="softmax")


def test_blend_order():
    ids = ["a", "b", "c"]
    assert blend_order(ids, np.array([0.0, 1.0, 2.0]), 0.0) == ["c", "b", "a"]
    assert blend_order(ids, np.array([0.0, 1.0, 2.0]), 0.9) == ["a", "b", "c"]
    assert blend_order([], np.array([]), 0.5) == []


DOCS = [Document(f"d{i}", text) for i, (_, text) in enumerate(PAIRS)] + [
    Document("d4", "birds sang in tall green trees"), Document("d5", "bright stars under the moon")]


def test_search_with_reranker_reorders_by_rerank_score(tmp_path, tiny_cross_encoder):
    engine = SearchEngine.build(DOCS, tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    reranker = Reranker(tiny_cross_encoder)
    hits = engine.search("the moon and stars", k=3, reranker=reranker, candidates=6)
    assert len(hits) == 3 and [h.rank for h in hits] == [1, 2, 3]
    scores = [h.rerank_score for h in hits]
    assert scores == sorted(scores, reverse=True)
    every = {h.id: h.rerank_score for h in engine.search("the moon and stars", k=6, reranker=reranker, candidates=6)}
    assert [h.id for h in hits] == sorted(every, key=every.get, reverse=True)[:3]
    assert all(h.score is not None for h in hits)  # the bi-encoder score is kept
    with pytest.raises(BadInput, match=r"k \(7\) is larger than candidates \(6\)"):
        engine.search("moon", k=7, reranker=reranker, candidates=6)
    with pytest.raises(BadInput, match="candidates must be a positive integer"):
        engine.search("moon", k=1, reranker=reranker, candidates=0)
    assert reranker.rerank(["moon"], [[]], 5) == [[]]  # no candidates: nothing to rerank


def test_default_reranker_is_recorded_in_the_manifest(tmp_path, tiny_cross_encoder):
    engine = SearchEngine.build(DOCS, tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    assert engine.default_reranker() is None
    engine.set_default_reranker(Reranker(tiny_cross_encoder, max_length=64))
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["reranker"]["score_kind"] == "logit" and manifest["reranker"]["max_length"] == 64
    reopened = SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())
    assert reopened.default_reranker().max_length == 64


def _margin(folder, data):
    """Mean score of each query's positive minus the mean score of the other documents for it."""
    reranker = Reranker(folder)
    margins = []
    for qid, rel in data.qrels.items():
        pos = next(iter(rel))
        others = [d for d in data.corpus if d != pos]
        scores = reranker.score([(data.queries[qid], data.corpus[d].text) for d in [pos] + others]).scores
        margins.append(scores[0] - scores[1:].mean())
    return float(np.mean(margins))


def test_training_raises_the_score_of_the_trained_positives(tmp_path, tiny_bert):
    corpus = {d.id: d for d in DOCS}
    queries = {"q0": "cat mat dog", "q1": "rivers sea", "q2": "science books", "q3": "green trees birds"}
    qrels = {"q0": {"d0": 1}, "q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d4": 1}}
    data = TrainingData(corpus, queries, qrels, "toy")
    engine = SearchEngine.build(DOCS, tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    kwargs = dict(base=str(tiny_bert), max_length=32, group_size=4, hard_negatives=2, mine_depth=4,
                  lr=3e-3, head_lr=3e-3, groups_per_step=2, first_stage=engine, progress=False)
    report = train_reranker(data, tmp_path / "r", epochs=40, seed=1, **kwargs)
    untrained = tmp_path / "untrained"
    train_reranker(data, untrained, epochs=1, seed=1, **{**kwargs, "lr": 0.0, "head_lr": 0.0})
    assert report.steps == 80 and report.loss_last < report.loss_first / 2
    trained_margin, untrained_margin = _margin(tmp_path / "r", data), _margin(untrained, data)
    assert trained_margin > untrained_margin + 1.0
    card = (tmp_path / "r" / "README.md").read_text()
    assert "Base model" in card and "80 steps" in card
    assert json.loads((tmp_path / "r" / "validation_queries.json").read_text()) == []  # < 20 queries: none held out
    again = train_reranker(data, tmp_path / "r2", epochs=40, seed=1, **kwargs)  # seeded: same result
    assert again.loss_last == pytest.approx(report.loss_last, rel=1e-5)
    with pytest.raises(BadInput, match="exists"):
        train_reranker(data, tmp_path / "r", epochs=1, **kwargs)


def test_pairs_file(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"query": "a?", "positive": "A."}\n{"query": "b?", "positive": "B."}\n{"query": "a?", "positive": "A2."}\n')
    data = read_pairs(f)
    assert len(data.corpus) == 3 and len(data.queries) == 2 and data.qrels["q0"] == {"p0": 1, "p2": 1}
    f.write_text('{"query": "a?"}\n')
    with pytest.raises(BadInput, match=":1: expected a JSON object with 'query' and 'positive'"):
        read_pairs(f)
    for positive in ('{"a": 1}', "5", "null"):
        f.write_text('{"query": "b?", "positive": "B."}\n{"query": "a?", "positive": %s}\n' % positive)
        with pytest.raises(BadInput, match=":2: query and positive must be strings"):
            read_pairs(f)


def test_a_sigmoid_reranker_blends_its_logits_as_the_weight_was_fitted_on(tmp_path, tiny_cross_encoder,
                                                                          monkeypatch):
    from semsearch.rerank import reranker as module

    blended = []
    real = module.blend_order
    monkeypatch.setattr(module, "blend_order", lambda ids, scores, w: blended.append(scores) or real(ids, scores, w))
    engine = SearchEngine.build(DOCS, tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    plain = Reranker(tiny_cross_encoder, precision="fp32", first_stage_weight=0.5)
    sigmoid = Reranker(tiny_cross_encoder, precision="fp32", first_stage_weight=0.5, activation="sigmoid")
    for query in ("the moon and stars", "birds in trees", "cat"):
        hits = engine.search(query, k=6, mode="dense")
        by_logits, by_probs = plain.rerank([query], [hits], 6)[0], sigmoid.rerank([query], [hits], 6)[0]
        assert [h.id for h in by_probs] == [h.id for h in by_logits]  # the same blend
        logits = np.array([h.rerank_score for h in by_logits], dtype=np.float64)
        np.testing.assert_allclose([h.rerank_score for h in by_probs], 1 / (1 + np.exp(-logits)), atol=1e-6)
        np.testing.assert_allclose(blended[-1], blended[-2])  # the blend read the logits both times


def test_a_base_classifier_with_two_outputs_is_refused_before_mining(tmp_path, tiny_cross_encoder, monkeypatch):
    import shutil

    from semsearch.rerank import train as module

    base = tmp_path / "two-outputs"
    shutil.copytree(tiny_cross_encoder, base)
    config = json.loads((base / "config.json").read_text())
    config.update(id2label={"0": "no", "1": "yes"}, label2id={"no": 0, "yes": 1})
    (base / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(module, "Mined", lambda *a, **k: pytest.fail("mined before checking the base"))
    data = TrainingData({f"d{i}": Document(f"d{i}", f"text {i}") for i in range(4)},
                        {"q0": "text 0?", "q1": "text 1?"}, {"q0": {"d0": 1}, "q1": {"d1": 1}}, "toy")
    with pytest.raises(BadInput, match="is a classifier with 2 outputs"):
        train_reranker(data, tmp_path / "r", base=str(base), progress=False)



def test_a_sigmoid_weight_tuned_before_the_blend_read_logits_asks_to_tune_again(tiny_cross_encoder, caplog):
    config = dict(Reranker(tiny_cross_encoder, activation="sigmoid").config(),
                  first_stage_weight_tuned_on={"queries": 40, "mode": "hybrid", "candidates": 20})
    with caplog.at_level("WARNING", logger="semsearch.rerank.reranker"):
        Reranker.from_config(config)
    assert "run `semsearch tune --rerank` again" in caplog.text
    caplog.clear()
    config["first_stage_weight_tuned_on"]["blend_of"] = "logits"
    with caplog.at_level("WARNING", logger="semsearch.rerank.reranker"):
        Reranker.from_config(config)
    assert "tune --rerank" not in caplog.text
