"""The openvino backend: agreement with torch fp32 on tiny models, the int8 cache, the manifest, fallbacks."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DOCS, PAIRS, index_recorded_as
from conftest import SPREAD_TEXTS as TEXTS

from semsearch import Reranker, SearchEngine, TransformerEmbedder, read_corpus
from semsearch.cli import cli
from semsearch.encode.models import bf16_supported
from semsearch.errors import ManifestMismatch, ModelError
from semsearch.files import cache_dir

pytestmark = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("openvino") is None
    or __import__("importlib.util").util.find_spec("nncf") is None,
    reason="OpenVINO/NNCF are not installed (pip install 'semsearch[openvino]')",
)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_openvino_fp32_reproduces_torch(tiny_bert, pooling):
    ref = TransformerEmbedder(tiny_bert, pooling=pooling, normalize=False, precision="fp32").encode(TEXTS, 2)
    emb = TransformerEmbedder(tiny_bert, pooling=pooling, normalize=False, precision="fp32", backend="openvino")
    np.testing.assert_allclose(emb.encode(TEXTS, 2), ref, atol=1e-4)


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no native bf16")
def test_openvino_bf16_agrees_with_fp32(tiny_bert):
    ref = TransformerEmbedder(tiny_bert, precision="fp32").encode(TEXTS)
    got = TransformerEmbedder(tiny_bert, precision="bf16", backend="openvino").encode(TEXTS)
    assert _cosines(ref, got).min() > 0.995  # the same bound as torch bf16 on this model


def test_openvino_int8_agrees_with_fp32_is_cached_and_keeps_stdout_clean(tiny_bert, monkeypatch, capfd):
    from semsearch.encode import openvino as openvino_runner
    from semsearch.encode import runtime as inference

    ref = TransformerEmbedder(tiny_bert, precision="fp32").encode(TEXTS)
    capfd.readouterr()
    emb = TransformerEmbedder(tiny_bert, precision="int8", backend="openvino")
    assert capfd.readouterr().out == ""  # NNCF's progress bars and logs go to stderr, not to `--json` output
    got = emb.encode(TEXTS)
    cos = _cosines(ref, got)
    # Stated tolerance on this random 32-wide model; MiniLM measures mean 0.997 in the benchmark.
    assert cos.min() > 0.97 and cos.mean() > 0.985, cos
    assert not np.allclose(got, ref, atol=1e-6)  # it really ran the quantised model
    entry = next((cache_dir() / "onnx").glob(f"{emb.weights_sha256[:24]}-*-encoder-v*"))
    xml = [p.name for p in entry.glob("model-int8-openvino-*.xml")]
    assert xml == [f"model-int8-openvino-{openvino_runner.calibration_sha256()[:12]}.xml"]
    assert (entry / xml[0]).with_suffix(".bin").is_file()
    assert not [p for p in entry.iterdir() if p.name.startswith(".")]  # no staging left behind

    def no_work(*args, **kwargs):
        raise AssertionError("the cached files should have been reused")

    monkeypatch.setattr(inference, "_RUNNERS", {})  # a fresh process, as far as runners go
    monkeypatch.setattr(inference, "_export", no_work)
    monkeypatch.setattr(openvino_runner, "_quantize", no_work)
    again = TransformerEmbedder(tiny_bert, precision="int8", backend="openvino").encode(TEXTS)
    np.testing.assert_allclose(again, got, atol=1e-6)  # static int8: the same vectors every time


def test_openvino_int8_vectors_do_not_depend_on_batch_mates(tiny_bert):
    emb = TransformerEmbedder(tiny_bert, precision="int8", backend="openvino")
    batched = emb.encode(TEXTS, batch_size=len(TEXTS))
    alone = np.vstack([emb.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, batched, atol=1e-5)  # fixed ranges; ONNX Runtime int8 differs by 0.04 on MiniLM


def test_calibration_inputs_are_batches_cut_at_max_length(tiny_cross_encoder):
    from transformers import AutoTokenizer

    from semsearch.encode.openvino import calibration_inputs

    tok = AutoTokenizer.from_pretrained(tiny_cross_encoder)
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in tok(["a"], ["b"])]
    encoder = calibration_inputs(tok, "encoder", 24, names)
    pairs = calibration_inputs(tok, "classifier", 24, names)
    for batches in (encoder, pairs):
        assert len(batches) >= 8
        assert all(set(b) == set(names) and len(b["input_ids"]) <= 8 for b in batches)
        assert max(b["input_ids"].shape[1] for b in batches) == 24  # the passages reach the limit
        assert all(b["input_ids"].dtype == np.int64 for b in batches)
    seps = [((b["input_ids"] == tok.sep_token_id) & (b["attention_mask"] == 1)).sum(1) for b in pairs + encoder]
    assert all((n == 2).all() for n in seps[:len(pairs)])  # [CLS] question [SEP] passage [SEP]
    assert all((n == 1).all() for n in seps[len(pairs):])


def test_reranker_on_openvino_agrees_with_fp32(any_agreement, spread_cross_encoder):
    ref = Reranker(spread_cross_encoder, precision="fp32").score(PAIRS).scores
    assert ref.std() > 0.5
    fp32 = Reranker(spread_cross_encoder, precision="fp32", backend="openvino").score(PAIRS).scores
    np.testing.assert_allclose(fp32, ref, atol=1e-4)
    # Stated tolerances for this 32-wide random model (see test_inference); MiniLM: 1.000 / 0.997.
    for precision, least in (("bf16", 0.95), ("int8", 0.7)):
        if precision == "bf16" and not bf16_supported():
            continue
        got = Reranker(spread_cross_encoder, precision=precision, backend="openvino").score(PAIRS).scores
        assert np.corrcoef(ref, got)[0, 1] > least, precision
    config = Reranker(spread_cross_encoder, precision="int8", backend="openvino").config()
    assert (config["precision"], config["backend"]) == ("int8", "openvino")


def test_openvino_int8_index_is_recorded_and_refuses_other_int8(tiny_bert, corpus_file, tmp_path):
    path = tmp_path / "idx"
    SearchEngine.build(read_corpus(corpus_file), path,
                       embedder=TransformerEmbedder(tiny_bert, precision="int8", backend="openvino"), progress=False)
    manifest = json.loads((path / "manifest.json").read_text())
    assert (manifest["embedder"]["precision"], manifest["embedder"]["backend"]) == ("int8", "openvino")
    assert manifest["format_version"] == 3  # passage ids; with --passages off it would be 2
    engine = SearchEngine.open(path)
    assert (engine.embedder.precision, engine.embedder.backend) == ("int8", "openvino")
    assert engine.search(DOCS[0]["text"], k=1)[0].id == DOCS[0]["_id"]
    with pytest.raises(ManifestMismatch, match="int8-openvino vectors; they do not mix with int8 ones"):
        SearchEngine.open(path, precision="int8", backend="onnx")
    with pytest.raises(ManifestMismatch, match="pass precision 'int8' and backend 'openvino'"):
        SearchEngine.open(path, precision="fp32")


def test_fp32_on_openvino_mixes_with_torch_vectors(tiny_bert, corpus_file, tmp_path):
    path = tmp_path / "idx"
    SearchEngine.build(read_corpus(corpus_file), path, embedder=TransformerEmbedder(tiny_bert, precision="fp32"),
                       progress=False)
    engine = SearchEngine.open(path, precision="fp32", backend="openvino")
    assert engine.embedder.backend == "openvino"
    assert engine.search(DOCS[1]["text"], k=1)[0].id == DOCS[1]["_id"]


def test_missing_openvino_is_a_clear_error_or_a_fallback(tiny_bert, corpus_file, tmp_path, monkeypatch, caplog):
    path = tmp_path / "idx"
    manifest = index_recorded_as(tiny_bert, corpus_file, path, backend="openvino")  # as if built with it
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now fails
    with pytest.raises(ModelError, match=r"needs OpenVINO, which is not installed; .*semsearch\[openvino\]"):
        TransformerEmbedder(tiny_bert, precision="int8", backend="openvino")
    engine = SearchEngine.open(path)  # fp32 on OpenVINO falls back to fp32 on torch: the same vectors
    assert (engine.embedder.precision, engine.embedder.backend) == ("fp32", "torch")
    assert "OpenVINO, which is not installed; using torch fp32" in caplog.text
    manifest["embedder"]["precision"] = "int8"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"recorded in int8 on OpenVINO, which is not installed"):
        SearchEngine.open(path)


def test_cli_openvino_backend(any_agreement, tiny_bert, spread_cross_encoder, corpus_file, tmp_path):
    runner = CliRunner()
    index = str(tmp_path / "idx")
    built = runner.invoke(cli, ["index", str(corpus_file), "--index", index, "--model", str(tiny_bert),
                                "--precision", "int8", "--backend", "openvino", "-q"])
    assert built.exit_code == 0, built.output
    query = runner.invoke(cli, ["query", "cats", "--index", index, "--json", "--rerank", str(spread_cross_encoder),
                                "--rerank-precision", "int8", "--rerank-backend", "openvino"])
    assert query.exit_code == 0, query.output
    assert all(json.loads(line) for line in query.stdout.splitlines())  # nothing but JSON on stdout
    bad = runner.invoke(cli, ["query", "cats", "--index", index, "--rerank", str(spread_cross_encoder),
                              "--rerank-precision", "bf16", "--rerank-backend", "onnx"])
    assert bad.exit_code == 2 and "does not run on backend 'onnx'" in bad.stderr
    assert bad.stderr.count("\n") == 1
