"""Start-up: an index built on an exported runtime is queried (and reranked) without importing torch,
transformers or sentence-transformers, and commands that need no model import none of them either."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from semsearch import Reranker
from semsearch.cli import cli

HEAVY = ("torch", "transformers", "sentence_transformers")
needs_ort = pytest.mark.skipif(__import__("importlib.util").util.find_spec("onnxruntime") is None,
                               reason="ONNX Runtime is not installed (pip install 'semsearch[onnx]')")

_RUN = """
import json, sys
from semsearch.cli import cli
try:
    cli(sys.argv[1:], prog_name="semsearch")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}), file=sys.stderr)
""" % (HEAVY,)


def _semsearch(*args) -> tuple[int, str, list[str]]:
    """Run the CLI in a new process (this session's cache, via the environment); exit code, stdout, and which
    heavy modules it imported."""
    proc = subprocess.run([sys.executable, "-c", _RUN, *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], proc.stdout, report["heavy"]


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    """An index of tiny_bert vectors on ONNX Runtime fp32, built here (which exports and checks the model)."""
    from conftest import DOCS

    folder = tmp_path_factory.mktemp("startup")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    result = CliRunner().invoke(cli, ["index", str(corpus), "--index", str(folder / "onnx"), "--model",
                                      str(tiny_bert), "--precision", "fp32", "--backend", "onnx", "-q"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["index", str(corpus), "--index", str(folder / "torch"), "--model",
                                      str(tiny_bert), "-q"])  # auto: bf16 where the CPU has it (torch says which)
    assert result.exit_code == 0, result.output
    return folder


@needs_ort
def test_an_exported_index_is_queried_without_torch(exported):
    code, out, heavy = _semsearch("query", "cats purr", "--index", exported / "onnx", "-k", "2", "--json")
    assert code == 0 and heavy == [], (code, heavy)
    hits = [json.loads(line) for line in out.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["id"] == "cats"


@needs_ort
def test_an_exported_reranker_reranks_without_torch(exported, spread_cross_encoder):
    Reranker(spread_cross_encoder, precision="fp32", backend="onnx")  # exported and checked once, here
    code, out, heavy = _semsearch("query", "cats purr", "--index", exported / "onnx", "-k", "2", "--json",
                                  "--rerank", spread_cross_encoder, "--rerank-precision", "fp32",
                                  "--rerank-backend", "onnx")
    assert code == 0 and heavy == [], (code, heavy, out)
    assert all("rerank_score" in json.loads(line) for line in out.splitlines())


def test_commands_that_need_no_model_import_no_torch(exported):
    torch_index = exported / "torch"  # a torch index: only the dense side would need the model
    for args in (["--help"], ["query", "--help"], ["info", "--index", torch_index],
                 ["query", "cats", "--index", torch_index, "--mode", "lexical", "--json"]):
        code, out, heavy = _semsearch(*args)
        assert code == 0 and heavy == [], (args, code, heavy)
    assert json.loads(_semsearch("query", "cats", "--index", torch_index, "--mode", "lexical", "--json")[1]
                      .splitlines()[0])["id"] == "cats"


def test_delete_and_compact_load_no_model(exported, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported / "torch", copy)
    for args in (["delete", "cars", "--index", copy], ["compact", "--index", copy]):
        code, out, heavy = _semsearch(*args)
        assert code == 0 and heavy == [], (args, code, heavy)
    assert "documents: 5" in _semsearch("info", "--index", copy)[1].splitlines()
