"""Embedder and pooling on a tiny BERT built in the test: each pooling against the maths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from semsearch import BadInput, ModelError, TransformerEmbedder

TEXTS = ["the cat sat on the mat", "birds sang", "rivers flow to the sea under bright stars and the moon", "art"]


def _reference(folder, texts, pooling):
    """Each text alone (no padding), straight from the model outputs."""
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    rows = []
    for text in texts:
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            out = model(**enc)
        h = out.last_hidden_state[0]
        if pooling == "mean":
            v = h.mean(dim=0)
        elif pooling == "cls":
            v = h[0]
        else:  # tanh(W h_cls + b), computed by hand
            v = torch.tanh(model.pooler.dense.weight @ h[0] + model.pooler.dense.bias)
        rows.append(v.detach().numpy())
    return np.stack(rows)


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_pooling_matches_the_maths_in_input_order(tiny_bert, pooling):
    emb = TransformerEmbedder(tiny_bert, pooling=pooling, normalize=False, precision="fp32")
    got = emb.encode(TEXTS, batch_size=3)  # batches mix lengths, so padding is exercised
    np.testing.assert_allclose(got, _reference(tiny_bert, TEXTS, pooling), atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)


def test_normalised_vectors_have_unit_length_and_same_direction(tiny_bert):
    raw = TransformerEmbedder(tiny_bert, pooling="mean", normalize=False).encode(TEXTS)
    unit = TransformerEmbedder(tiny_bert, pooling="mean").encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_batches_are_sorted_by_token_count(tiny_bert):
    emb = TransformerEmbedder(tiny_bert)
    seen = []
    original = emb.embed_batch
    emb.embed_batch = lambda texts: (seen.append(list(texts)), original(texts))[1]
    emb.encode(TEXTS, batch_size=2)
    counts = emb.lengths(TEXTS)
    by_text = dict(zip(TEXTS, counts))
    flat = [by_text[t] for batch in seen for t in batch]
    assert flat == sorted(counts, reverse=True)


def test_unknown_pooling_names_the_valid_values(tiny_bert):
    with pytest.raises(BadInput, match="valid values are: mean, cls, pooler"):
        TransformerEmbedder(tiny_bert, pooling="max")


def test_pooler_refused_when_checkpoint_has_no_pooler_weights(tiny_bert_no_pooler):
    with pytest.raises(ModelError, match="no trained pooler weights"):
        TransformerEmbedder(tiny_bert_no_pooler, pooling="pooler")
    TransformerEmbedder(tiny_bert_no_pooler, pooling="cls")  # the other poolings still work


def _st_folder(tiny_bert, folder, *modules: str):
    """``tiny_bert`` as a sentence-transformers folder whose modules.json lists ``modules`` (``"Pooling"``, ...)."""
    shutil.copytree(tiny_bert, folder)
    paths = {"Transformer": ""}
    (folder / "modules.json").write_text(json.dumps([
        {"idx": i, "name": str(i), "path": paths.get(kind, f"{i}_{kind}"),
         "type": f"sentence_transformers.models.{kind}"} for i, kind in enumerate(modules)]))
    return folder


def test_sentence_transformers_folder_supplies_pooling_and_max_length(tiny_bert, tmp_path):
    folder = _st_folder(tiny_bert, tmp_path / "st", "Transformer", "Pooling")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    emb = TransformerEmbedder(folder)
    assert (emb.pooling, emb.max_length) == ("cls", 16)
    explicit = TransformerEmbedder(folder, pooling="mean", max_length=8)
    assert (explicit.pooling, explicit.max_length) == ("mean", 8)


def test_a_sentence_transformers_module_semsearch_does_not_run_is_refused(tiny_bert, tmp_path, caplog):
    folder = _st_folder(tiny_bert, tmp_path / "st-dense", "Transformer", "Pooling", "Dense", "Normalize")
    with pytest.raises(ModelError, match=r"modules semsearch does not run \(Dense\)"):
        TransformerEmbedder(folder)
    # an index built with such a model (before they were refused) still opens and searches, with a warning
    from semsearch import Document, SearchEngine

    embedder = TransformerEmbedder(folder, unsupported_modules="skip", precision="fp32")
    SearchEngine.build([Document("a", "a cat"), Document("b", "the sea")], tmp_path / "idx", embedder=embedder,
                       progress=False).close()
    with caplog.at_level("WARNING", logger="semsearch.encode.transformer"):
        with SearchEngine.open(tmp_path / "idx") as engine:
            assert len(engine.search("cat", k=1, mode="dense")) == 1
    assert "as the index was built" in caplog.text
    with pytest.raises(BadInput, match="valid values are: refuse, skip"):
        TransformerEmbedder(folder, unsupported_modules="ignore")


def test_truncation_to_max_length(tiny_bert):
    emb = TransformerEmbedder(tiny_bert, max_length=8)
    long_text = " ".join(["cat"] * 100)
    assert emb.lengths([long_text]) == [8]
    assert np.isfinite(emb.encode([long_text])).all()


def test_missing_model_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        TransformerEmbedder(tmp_path / "no" / "such" / "model")


def test_identity_records_weights_hash(tiny_bert, tiny_bert_no_pooler):
    a = TransformerEmbedder(tiny_bert).config()
    b = TransformerEmbedder(tiny_bert_no_pooler).config()
    assert a["kind"] == "transformers" and len(a["weights_sha256"]) == 64
    assert a["weights_sha256"] != b["weights_sha256"]


def test_loads_show_no_transformers_bar_or_report_and_leave_its_switches_as_found(tiny_bert_no_pooler, capfd):
    import logging

    from transformers.utils import logging as hf_logging

    from semsearch.encode.models import load_pretrained, quiet_loading

    report = logging.getLogger("transformers.modeling_utils")
    hf_logging.enable_progress_bar()
    before = report.level
    _, _, missing = load_pretrained("AutoModel", tiny_bert_no_pooler, "tiny", False, cache=False)
    err = capfd.readouterr().err
    assert any(k.startswith("pooler.") for k in missing)  # semsearch still knows what the checkpoint lacked
    assert "Loading weights" not in err and "pooler" not in err, err
    assert hf_logging.is_progress_bar_enabled() and report.level == before and not report.filters
    with quiet_loading():  # the report is filtered, its logger's level left alone: above WARNING,
        during = report.level  # transformers runs a tensor-parallel plan check that logs about MiniLM
    assert during == before
