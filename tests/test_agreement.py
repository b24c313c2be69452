"""The self-check of every fast variant against fp32 on this CPU, its cache, refusals and fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DOCS, PAIRS, one_line_error
from conftest import SPREAD_TEXTS as TEXTS

from semsearch import Reranker, SearchEngine, TransformerEmbedder, read_corpus
from semsearch.cli import cli
from semsearch.encode import agreement, runtime, transformer
from semsearch.encode.agreement import AgreementError, check_pairs, check_texts
from semsearch.encode.cpu import cpu_key
from semsearch.encode.models import bf16_supported

needs_ort = pytest.mark.skipif(__import__("importlib.util").util.find_spec("onnxruntime") is None,
                               reason="ONNX Runtime is not installed (pip install 'semsearch[onnx]')")


def _perturb(path: Path) -> None:
    """Add unit noise to every float vector of an exported ONNX model (biases, LayerNorm): a broken export."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32 and values.ndim == 1 and values.size > 4:
            init.CopyFrom(numpy_helper.from_array(values + rng.normal(size=values.shape).astype(np.float32),
                                                  init.name))
    onnx.save(model, str(path))


@pytest.fixture()
def perturbed(monkeypatch):
    """Perturb an export in the cache for one test, then put it back (and forget the loaded runners)."""
    restore = []

    def perturb(path: Path) -> None:
        restore.append((path, path.read_bytes()))
        _perturb(path)
        monkeypatch.setattr(runtime, "_RUNNERS", {})

    yield perturb
    for path, data in restore:
        path.write_bytes(data)


def _checks(embedder) -> dict:
    return json.loads((embedder._rt.cache / agreement.AGREEMENT_FILE).read_text())["checks"]


def test_the_check_texts_are_fixed_and_run_from_a_few_words_to_two_passages():
    texts, pairs = check_texts(), check_pairs()
    assert (len(texts), len(pairs)) == (170, 120) and texts == check_texts() and pairs == check_pairs()
    lengths = sorted(len(t) for t in texts)
    assert lengths[0] < 40 and lengths[-1] > 900
    raw = json.loads((Path(agreement.__file__).parent.parent / "data" / "calibration.json").read_text())
    sentences = [t for t in texts if t not in raw["queries"] and t not in raw["passages"]]
    assert len(sentences) == 106  # 82 sentences of passages alone, 24 passage pairs: inputs calibration never saw
    assert all(q in raw["queries"] for q, _ in pairs)


@needs_ort
def test_fp32_onnx_passes_and_the_result_is_stored_beside_the_export_per_cpu(tiny_bert):
    emb = TransformerEmbedder(tiny_bert, precision="fp32", backend="onnx")
    assert emb.agreement.passed and emb.agreement.min_cosine >= 0.9999 and emb.agreement.floor == 0.999
    assert emb.agreement.texts == 170 and emb.agreement.below_095 == 0
    keys = [k for k in _checks(emb) if k.startswith("encoder|fp32|onnx|pooling=mean|")]
    assert len(keys) == 1 and f"cpu={cpu_key()}" in keys[0] and "onnxruntime" in keys[0]
    assert (emb._rt.cache / "model-fp32.onnx").is_file()


@needs_ort
def test_a_stored_check_is_reused_and_another_cpu_checks_again(tiny_bert, monkeypatch):
    TransformerEmbedder(tiny_bert, precision="fp32", backend="onnx")  # checked (now, or by an earlier test)
    measured = []
    real = transformer.measure_vectors

    def spy(*args, **kwargs):
        measured.append(args[2:])
        return real(*args, **kwargs)

    monkeypatch.setattr(transformer, "measure_vectors", spy)
    monkeypatch.setattr(runtime, "_RUNNERS", {})
    TransformerEmbedder(tiny_bert, precision="fp32", backend="onnx")
    assert measured == []  # the stored result was used
    monkeypatch.setattr(agreement, "cpu_key", lambda: "another-cpu0")
    emb = TransformerEmbedder(tiny_bert, precision="fp32", backend="onnx")
    assert measured == [("fp32", "onnx")]
    assert len([k for k in _checks(emb) if k.startswith("encoder|fp32|onnx|pooling=mean|")]) == 2


def test_a_replaced_model_file_drops_its_old_check_and_keeps_other_cpus(tmp_path):
    model = tmp_path / "model-fp32.onnx"
    model.write_bytes(b"first export")
    key = lambda: agreement.agreement_key("encoder", "fp32", "onnx", pooling="mean", max_length=64, model_file=model)
    result = agreement.Agreement("encoder", "fp32", "onnx", texts=170, min_cosine=1.0)
    first = key()
    agreement.save_agreement(tmp_path, first, result)
    other_cpu = first.replace(f"cpu={cpu_key()}", "cpu=another-cpu0")
    agreement.save_agreement(tmp_path, other_cpu, result)
    model.write_bytes(b"a second, longer export")  # exported again: a new size and time
    second = key()
    assert second != first
    agreement.save_agreement(tmp_path, second, result)
    stored = json.loads((tmp_path / agreement.AGREEMENT_FILE).read_text())["checks"]
    assert set(stored) == {second, other_cpu}
    assert agreement.cached_agreement(tmp_path, first) is None and agreement.cached_agreement(tmp_path, second) == result


@needs_ort
def test_a_perturbed_int8_export_is_refused_with_its_numbers(tiny_bert, corpus_file, tmp_path, perturbed):
    emb = TransformerEmbedder(tiny_bert, precision="int8", backend="onnx")
    assert emb.agreement.passed
    perturbed(emb._runner.path)
    with pytest.raises(AgreementError, match=r"bi-encoder .* at int8 on onnx disagrees with fp32 on this CPU: min "
                                             r"cosine -?0\.\d{4}, mean .* below 0\.95, on 170 texts \(floor 0\.98; "
                                             r"onnxruntime .*\); the next fastest variant is") as caught:
        TransformerEmbedder(tiny_bert, precision="int8", backend="onnx")
    assert not caught.value.agreement.passed and caught.value.agreement.below_095 > 0
    result = CliRunner().invoke(cli, ["index", str(corpus_file), "--index", str(tmp_path / "idx"), "--model",
                                      str(tiny_bert), "--precision", "int8", "--backend", "onnx", "-q"])
    one_line_error(result, "disagrees with fp32 on this CPU")
    assert not (tmp_path / "idx").exists()


@needs_ort
def test_a_perturbed_fp32_export_falls_back_to_torch_and_the_index_keeps_its_vectors(tiny_bert, corpus_file,
                                                                                     tmp_path, perturbed, caplog):
    path = tmp_path / "idx"
    built = SearchEngine.build(read_corpus(corpus_file), path,
                               embedder=TransformerEmbedder(tiny_bert, precision="fp32", backend="onnx"), progress=False)
    reference = TransformerEmbedder(tiny_bert, precision="fp32").encode(TEXTS)
    perturbed(built.embedder._runner.path)
    engine = SearchEngine.open(path)
    assert (engine.embedder.precision, engine.embedder.backend) == ("fp32", "torch")
    assert "at fp32 on onnx disagrees with fp32 on this CPU" in caplog.text and "using fp32 on torch" in caplog.text
    np.testing.assert_allclose(engine.embedder.encode(TEXTS), reference, atol=1e-5)
    assert engine.search(DOCS[0]["text"], k=1)[0].id == DOCS[0]["_id"]
    assert json.loads((path / "manifest.json").read_text())["embedder"]["backend"] == "onnx"  # as it was built


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no native bf16")
def test_bf16_below_the_floor_falls_back_to_fp32_and_int8_is_refused(tiny_bert, corpus_file, tmp_path, monkeypatch,
                                                                     caplog):
    path = tmp_path / "idx"
    SearchEngine.build(read_corpus(corpus_file), path, embedder=TransformerEmbedder(tiny_bert, precision="bf16"),
                       progress=False)
    monkeypatch.setenv("SEMSEARCH_AGREEMENT_FLOOR", "1.5")  # no bf16 or int8 variant can pass; fp32 keeps its floor
    engine = SearchEngine.open(path)
    assert (engine.embedder.precision, engine.embedder.backend) == ("fp32", "torch")
    assert "at bf16 on torch disagrees with fp32" in caplog.text
    assert engine.search(DOCS[2]["text"], k=1)[0].id == DOCS[2]["_id"]
    if runtime.onnxruntime_available():
        with pytest.raises(AgreementError, match="at int8 on onnx disagrees with fp32 on this CPU"):
            TransformerEmbedder(tiny_bert, precision="int8", backend="onnx")
    monkeypatch.setenv("SEMSEARCH_AGREEMENT_FLOOR", "not a number")
    with pytest.raises(Exception, match="SEMSEARCH_AGREEMENT_FLOOR must be a number"):
        TransformerEmbedder(tiny_bert, precision="bf16")


@needs_ort
def test_the_reranker_is_checked_by_the_pearson_of_its_scores(spread_cross_encoder, perturbed):
    reranker = Reranker(spread_cross_encoder, precision="fp32", backend="onnx")
    assert reranker.agreement.passed and reranker.agreement.pearson > 0.9999 and reranker.agreement.texts == 120
    ref = Reranker(spread_cross_encoder, precision="fp32").score(PAIRS).scores
    np.testing.assert_allclose(reranker.score(PAIRS).scores, ref, atol=1e-4)
    perturbed(reranker._rt.runner.path)
    fallen = Reranker(spread_cross_encoder, precision="fp32", backend="onnx")
    assert (fallen.precision, fallen.backend, fallen.agreement) == ("fp32", "torch", None)
    np.testing.assert_allclose(fallen.score(PAIRS).scores, ref, atol=1e-5)


@needs_ort
def test_info_shows_the_check_of_the_index_precision(tiny_bert, corpus_file, tmp_path, monkeypatch):
    runner = CliRunner()
    for name, options in (("onnx", ["--precision", "fp32", "--backend", "onnx"]), ("torch", ["--precision", "fp32"])):
        ok = runner.invoke(cli, ["index", str(corpus_file), "--index", str(tmp_path / name), "--model", str(tiny_bert),
                                 "-q", *options])
        assert ok.exit_code == 0, ok.output
    shown = runner.invoke(cli, ["info", "--index", str(tmp_path / "onnx")])
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if x.startswith("agreement.embedder:"))
    assert line.startswith("agreement.embedder: fp32 on onnx: passed: min cosine 1.0000, mean 1.0000, 0 below 0.95")
    data = json.loads(runner.invoke(cli, ["info", "--index", str(tmp_path / "onnx"), "--json"]).output)
    assert data["agreement"]["embedder"]["status"] == "passed" and data["agreement"]["embedder"]["min_cosine"] >= 0.9999
    assert "reference" in runner.invoke(cli, ["info", "--index", str(tmp_path / "torch")]).output
    monkeypatch.setenv("SEMSEARCH_CACHE", str(tmp_path / "empty-cache"))  # another machine, as far as checks go
    assert "not checked on this CPU" in runner.invoke(cli, ["info", "--index", str(tmp_path / "onnx")]).output


def test_fallbacks_keep_vectors_of_a_kind_that_mixes():
    from semsearch.encode.precision import same_vectors, vector_kind

    for precision, backend in (("bf16", "torch"), ("bf16", "openvino"), ("fp32", "openvino"), ("fp32", "onnx")):
        instead = agreement.fallback(precision, backend)
        assert same_vectors(vector_kind(precision, backend), vector_kind(*instead)), (precision, backend)
    assert agreement.fallback("int8", "onnx") is None and agreement.fallback("int8", "openvino") is None
    assert agreement.next_best("int8", "openvino", lambda p, b: b != "onnx") == ("bf16", "openvino")
    assert agreement.next_best("fp32", "onnx") == ("fp32", "torch")


def test_the_numbers_decide_and_a_nan_never_passes():
    vectors = np.random.default_rng(0).normal(size=(len(check_texts()), 4))
    good = agreement.measure_vectors(lambda t: vectors, lambda t: 2 * vectors, "int8", "onnx")
    assert good.passed and good.min_cosine == pytest.approx(1.0) and good.below_095 == 0
    noisy = agreement.measure_vectors(lambda t: vectors, lambda t: vectors + 0.3 * vectors[::-1], "int8", "onnx")
    assert not noisy.passed and 0 < noisy.below_095 < len(vectors)
    bad = agreement.measure_vectors(lambda t: np.ones((len(t), 4)), lambda t: np.full((len(t), 4), np.nan), "int8",
                                    "onnx")
    assert not bad.passed and bad.below_095 == len(check_texts())
    flat = agreement.measure_scores(lambda p: np.arange(len(p), dtype=float), lambda p: np.zeros(len(p)), "bf16",
                                    "torch")
    assert flat.pearson == 0.0 and not flat.passed


def test_checks_of_two_model_files_in_one_folder_are_both_kept(tmp_path):
    result = agreement.Agreement("encoder", "fp32", "onnx", texts=170, min_cosine=1.0)
    keys = []
    for name in ("model-a.onnx", "model-b.onnx"):
        (tmp_path / name).write_bytes(name.encode())
        keys.append(agreement.agreement_key("encoder", "fp32", "onnx", pooling="mean", max_length=64,
                                            model_file=tmp_path / name))
        agreement.save_agreement(tmp_path, keys[-1], result)
    assert set(json.loads((tmp_path / agreement.AGREEMENT_FILE).read_text())["checks"]) == set(keys)
