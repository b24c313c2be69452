"""Precisions and backends: agreement with fp32 on a tiny model, caching, the manifest, refusals, fallbacks."""

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
from semsearch.encode.precision import resolve_precision, same_vectors
from semsearch.errors import BadInput, ManifestMismatch, ModelError
from semsearch.files import cache_dir

needs_ort = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("onnxruntime") is None,
    reason="ONNX Runtime is not installed (pip install 'semsearch[onnx]')",
)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_resolve_precision_rules():
    assert resolve_precision("auto") == (("bf16" if bf16_supported() else "fp32"), "torch")
    assert resolve_precision("int8", "onnx") == ("int8", "onnx")
    assert resolve_precision("fp32", "onnx") == ("fp32", "onnx")
    assert resolve_precision("auto", "onnx") == ("fp32", "onnx")
    with pytest.raises(BadInput, match="valid values are: auto, fp32, bf16, int8"):
        resolve_precision("fp16")
    with pytest.raises(BadInput, match="valid values are: auto, torch, onnx"):
        resolve_precision("fp32", "tensorrt")
    with pytest.raises(BadInput, match="does not run on backend 'torch'"):
        resolve_precision("int8", "torch")
    assert same_vectors("fp32", "bf16") and not same_vectors("fp32", "int8") and same_vectors("int8", "int8")


@pytest.mark.parametrize("vnni, installed, expected", [
    (True, {"onnx", "openvino"}, "openvino"),   # int8 dot products: OpenVINO's static int8 is fastest
    (False, {"onnx", "openvino"}, "onnx"),      # AVX2 only: OpenVINO int8 is no faster than fp32 there
    (True, {"onnx"}, "onnx"),
    (False, {"openvino"}, "openvino"),          # the only int8 runtime installed
    (False, set(), "onnx"),                     # refused later, with the hint to install it
])
def test_int8_auto_backend_follows_the_cpu(monkeypatch, vnni, installed, expected):
    from semsearch.encode import precision

    monkeypatch.setattr(precision, "has_vnni", lambda: vnni)
    monkeypatch.setattr(precision, "runtime_installed", lambda backend: backend in installed)
    assert resolve_precision("int8") == ("int8", expected)
    assert resolve_precision("int8", "auto") == ("int8", expected)
    assert resolve_precision("int8", "onnx") == ("int8", "onnx")  # an explicit backend is kept


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_bf16_agrees_with_fp32(tiny_bert, pooling):
    ref = TransformerEmbedder(tiny_bert, pooling=pooling, precision="fp32").encode(TEXTS)
    got = TransformerEmbedder(tiny_bert, pooling=pooling, precision="bf16").encode(TEXTS)
    # bf16 keeps 8 bits of mantissa; on this random 32-wide model that is cosine > 0.995 (MiniLM: > 0.9999)
    assert _cosines(ref, got).min() > 0.995


@needs_ort
@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_onnx_fp32_reproduces_torch(tiny_bert, pooling):
    ref = TransformerEmbedder(tiny_bert, pooling=pooling, normalize=False, precision="fp32").encode(TEXTS, 2)
    emb = TransformerEmbedder(tiny_bert, pooling=pooling, normalize=False, precision="fp32", backend="onnx")
    np.testing.assert_allclose(emb.encode(TEXTS, 2), ref, atol=1e-4)


@needs_ort
def test_int8_agrees_with_fp32_and_is_cached(tiny_bert, monkeypatch):
    from semsearch.encode import runtime as inference

    ref = TransformerEmbedder(tiny_bert, precision="fp32").encode(TEXTS)
    emb = TransformerEmbedder(tiny_bert, precision="int8", backend="onnx")
    assert (emb.precision, emb.backend) == ("int8", "onnx")
    got = emb.encode(TEXTS)
    cos = _cosines(ref, got)
    # Stated tolerance for int8 on this random 32-wide model (MiniLM measures mean 0.993 in the benchmark).
    assert cos.min() > 0.97 and cos.mean() > 0.985, cos
    assert not np.allclose(got, ref, atol=1e-6)  # it really ran the quantised model
    entry = next((cache_dir() / "onnx").glob(f"{emb.weights_sha256[:24]}-*-encoder-v*"))
    assert json.loads((entry / "export.json").read_text())["task"] == "encoder"
    assert any(p.name.startswith("model-int8") for p in entry.iterdir())

    def no_export(*args, **kwargs):
        raise AssertionError("the cached files should have been reused")

    monkeypatch.setattr(inference, "_RUNNERS", {})  # a fresh process, as far as sessions go
    monkeypatch.setattr(inference, "_export", no_export)
    monkeypatch.setattr(inference, "_quantize", no_export)
    np.testing.assert_allclose(TransformerEmbedder(tiny_bert, precision="int8", backend="onnx").encode(TEXTS), got,
                               atol=1e-6)


@needs_ort
def test_a_corrupt_cached_export_is_refused(tiny_bert, monkeypatch):
    from semsearch.encode import runtime as inference

    emb = TransformerEmbedder(tiny_bert, precision="fp32", backend="onnx")
    path = emb._runner.path
    monkeypatch.setattr(inference, "_RUNNERS", {})
    original = path.read_bytes()
    try:
        path.write_bytes(original[: len(original) // 2])
        with pytest.raises(ModelError, match="delete it to export again"):
            TransformerEmbedder(tiny_bert, precision="fp32", backend="onnx")
    finally:
        path.write_bytes(original)


@needs_ort
def test_reranker_backends_agree_with_fp32(any_agreement, spread_cross_encoder):
    ref = Reranker(spread_cross_encoder, precision="fp32").score(PAIRS).scores
    assert ref.std() > 0.5  # scores that spread, so agreement means something
    onnx = Reranker(spread_cross_encoder, precision="fp32", backend="onnx").score(PAIRS).scores
    np.testing.assert_allclose(onnx, ref, atol=1e-4)
    # Stated tolerances for this 32-wide random model on 20 pairs, where int8 noise is large next to the
    # spread (Pearson 0.86 here); MiniLM measures 1.000 (bf16) and 0.994 (int8) in the benchmark.
    for precision, least in (("bf16", 0.95), ("int8", 0.7)):
        got = Reranker(spread_cross_encoder, precision=precision,
                       backend="onnx" if precision == "int8" else "auto").score(PAIRS).scores
        assert np.corrcoef(ref, got)[0, 1] > least, precision
    config = Reranker(spread_cross_encoder, precision="int8", backend="onnx").config()
    assert (config["precision"], config["backend"]) == ("int8", "onnx")


@needs_ort
def test_precision_is_recorded_and_a_mismatch_refused(tiny_bert, corpus_file, tmp_path):
    path = tmp_path / "idx"
    SearchEngine.build(read_corpus(corpus_file), path,
                       embedder=TransformerEmbedder(tiny_bert, precision="int8", backend="onnx"), progress=False)
    manifest = json.loads((path / "manifest.json").read_text())
    assert (manifest["embedder"]["precision"], manifest["embedder"]["backend"]) == ("int8", "onnx")
    assert manifest["format_version"] == 3  # passage ids (3) and int8 (2): older versions refuse it
    engine = SearchEngine.open(path)
    assert engine.embedder.precision == "int8"
    assert engine.search(DOCS[0]["text"], k=1)[0].id == DOCS[0]["_id"]
    with pytest.raises(ManifestMismatch, match="built with int8 vectors; they do not mix with fp32"):
        SearchEngine.open(path, precision="fp32")
    with pytest.raises(ManifestMismatch, match="pass precision 'int8'"):
        SearchEngine.open(path, embedder=TransformerEmbedder(tiny_bert, precision="bf16"))
    with pytest.raises(BadInput, match="either an embedder or a precision"):
        SearchEngine.open(path, embedder=engine.embedder, precision="int8")


def test_int8_index_without_onnx_runtime(tiny_bert, corpus_file, tmp_path, monkeypatch):
    path = tmp_path / "idx"
    index_recorded_as(tiny_bert, corpus_file, path, precision="int8", backend="onnx")  # as if built with it
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    with pytest.raises(ModelError, match=r"recorded in int8, which needs ONNX Runtime; .*semsearch\[onnx\]"):
        SearchEngine.open(path)
    with pytest.raises(ManifestMismatch, match="do not mix"):  # refused before any model work
        SearchEngine.open(path, precision="fp32")


def test_fp32_and_bf16_vectors_mix(tiny_bert, corpus_file, tmp_path):
    path = tmp_path / "idx"
    SearchEngine.build(read_corpus(corpus_file), path, embedder=TransformerEmbedder(tiny_bert, precision="fp32"),
                       progress=False)
    assert SearchEngine.open(path, precision="bf16").embedder.precision == "bf16"
    assert SearchEngine.open(path).embedder.precision == "fp32"  # the recorded one by default


def test_old_manifests_count_as_fp32(tiny_bert, corpus_file, tmp_path):
    path = tmp_path / "idx"
    SearchEngine.build(read_corpus(corpus_file), path, embedder=TransformerEmbedder(tiny_bert, precision="fp32"),
                       progress=False)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["embedder"]["precision"], manifest["embedder"]["backend"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert SearchEngine.open(path).embedder.precision == "fp32"


def test_missing_onnx_runtime_is_a_clear_error_or_a_fallback(tiny_bert, tiny_cross_encoder, corpus_file, tmp_path,
                                                              monkeypatch, caplog):
    path = tmp_path / "idx"
    index_recorded_as(tiny_bert, corpus_file, path, backend="onnx")  # as if built with --backend onnx
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    with pytest.raises(ModelError, match=r"needs ONNX Runtime, which is not installed; install .*semsearch\[onnx\]"):
        TransformerEmbedder(tiny_bert, precision="int8", backend="onnx")
    with pytest.raises(ModelError, match="needs ONNX Runtime"):
        Reranker(tiny_cross_encoder, precision="int8", backend="onnx")
    engine = SearchEngine.open(path)  # fp32 on ONNX Runtime falls back to fp32 on torch: the same vectors
    assert (engine.embedder.precision, engine.embedder.backend) == ("fp32", "torch")
    assert "not installed; using torch fp32" in caplog.text


def test_single_query_path_matches_batched(tiny_bert):
    emb = TransformerEmbedder(tiny_bert, precision="fp32")
    batched = emb.encode(TEXTS, batch_size=2)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(emb.encode([text])[0], batched[i], atol=1e-5)


def test_models_are_loaded_once_per_process(tiny_bert):
    a, b = TransformerEmbedder(tiny_bert, precision="fp32"), TransformerEmbedder(tiny_bert, precision="bf16")
    assert a.model is b.model
    assert TransformerEmbedder(tiny_bert, device="meta").model is not a.model  # moved elsewhere: a private copy


def test_batch_size_is_checked_for_one_text(tiny_bert):
    with pytest.raises(BadInput, match="batch size"):
        TransformerEmbedder(tiny_bert, precision="fp32").encode(["one"], batch_size=0)


def test_cli_precision_options(tiny_bert, corpus_file, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["index", str(corpus_file), "--index", str(tmp_path / "a"), "--model", str(tiny_bert),
                              "--precision", "fp16"])
    assert bad.exit_code == 2 and "valid values are: auto, fp32, bf16, int8" in bad.stderr
    assert bad.stderr.count("\n") == 1
    ok = runner.invoke(cli, ["index", str(corpus_file), "--index", str(tmp_path / "b"), "--model", str(tiny_bert),
                             "--precision", "fp32", "-q"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["embedder"]["precision"] == "fp32"
    query = runner.invoke(cli, ["query", "cats", "--index", str(tmp_path / "b"), "--precision", "bf16", "--json"])
    assert query.exit_code == 0, query.output
    if __import__("importlib.util").util.find_spec("onnxruntime") is not None:
        refused = runner.invoke(cli, ["query", "cats", "--index", str(tmp_path / "b"), "--precision", "int8"])
        assert refused.exit_code == 2 and "do not mix" in refused.stderr and "Traceback" not in refused.output
