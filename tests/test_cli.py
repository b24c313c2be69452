"""The CLI and the API end to end with the real embedded MiniLM."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import DOCS, one_line_error

from semsearch import SearchEngine, read_corpus
from semsearch.cli import cli


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    result = run("index", corpus, "--index", folder / "idx")
    assert result.exit_code == 0, result.output
    assert "indexed 6 documents" in result.stdout and "doc/s" in result.stderr  # progress bar on stderr
    return folder / "idx"


QUESTIONS = {
    "which pet purrs?": "cats",
    "how do you make a loaf": "bread",
    "lava and ash eruption": "volcano",
    "board game with a queen": "chess",
    "automobile": "cars",
    "an instrument with keys": "piano",
}


def test_query_json_puts_the_right_document_first(built):
    result = run("query", *QUESTIONS, "--index", built, "-k", 3, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 * len(QUESTIONS)
    assert set(rows[0]) == {"query", "rank", "id", "score", "title", "text", "metadata", "passage", "start", "end"}
    firsts = {r["query"]: r["id"] for r in rows if r["rank"] == 1}
    assert firsts == QUESTIONS
    assert [r["rank"] for r in rows[:3]] == [1, 2, 3]
    cat = next(r for r in rows if r["id"] == "cats")
    assert cat["metadata"] == {"colour": "grey"} and cat["title"] == "Cats"


def test_query_table(built):
    result = run("query", "which pet purrs?", "--index", built, "-k", 2)
    assert result.exit_code == 0
    assert "query: which pet purrs?" in result.stdout
    assert result.stdout.splitlines()[2].split()[:3][0] == "1"
    assert "cats" in result.stdout.splitlines()[2]


def test_info_shows_manifest_and_counts(built):
    result = run("info", "--index", built, "--json")
    data = json.loads(result.stdout)
    assert data["documents"] == data["vectors"] == data["stored_documents"] == 6
    assert data["embedder"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["embedder"]["pooling"] == "mean" and data["factory"] == "Flat"
    text = run("info", "--index", built).stdout
    assert "embedder.pooling: mean" in text and "vectors: 6" in text


def test_eval_json(built, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"_id": str(i), "text": q}) + "\n" for i, q in enumerate(QUESTIONS)))
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{i}\t{doc}\t1\n" for i, doc in enumerate(QUESTIONS.values())))
    result = run("eval", "--index", built, "--queries", queries, "--qrels", qrels, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0, "map@100": 1.0, "queries": 6}


def test_index_location_from_env_and_default(built, corpus_file, tmp_path, monkeypatch):
    result = run("query", "automobile", "-k", 1, "--json", env={"SEMSEARCH_INDEX": str(built)})
    assert json.loads(result.stdout)["id"] == "cars"
    monkeypatch.chdir(tmp_path)
    assert run("index", corpus_file, "-q").exit_code == 0
    assert (tmp_path / "indexes" / "default" / "manifest.json").is_file()


def test_api_build_reopen_same_results(minilm, corpus_file, tmp_path):
    engine = SearchEngine.build(read_corpus(corpus_file), tmp_path / "api", embedder=minilm, progress=False)
    hits = engine.search("which pet purrs?", k=3)
    assert hits[0].id == "cats"
    engine.close()
    reopened = SearchEngine.open(tmp_path / "api")  # loads the model named in the manifest
    assert reopened.search("which pet purrs?", k=3) == hits


@pytest.mark.parametrize("name,content,options,pattern", [
    ("missing.jsonl", None, [], "does not exist"),
    ("empty.jsonl", "\n", [], "corpus is empty"),
    ("dup.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', [], "duplicate document id 'a'"),
    ("latin1.txt", "caf\xe9\n".encode("latin-1"), [], "not valid UTF-8"),
    ("ok.txt", "fine\n", ["--pooling", "max"], "unknown pooling 'max'; valid values are: mean, cls, pooler"),
    ("ok.txt", "fine\n", ["--factory", "Bogus"], "invalid FAISS factory string"),
    ("ok.txt", "fine\n", ["--model", "./no/such/model"], "does not exist"),
    ("ok.txt", "fine\n", ["--batch-size", "0"], "batch size must be at least 1"),
])
def test_index_user_errors(tmp_path, name, content, options, pattern):
    corpus = tmp_path / name
    if content is not None:
        corpus.write_bytes(content.encode() if isinstance(content, str) else content)
    result = run("index", corpus, "--index", tmp_path / "idx", "-q", *options)
    one_line_error(result, pattern)
    assert not (tmp_path / "idx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]  # no temp folder left


def test_pooler_on_a_model_without_pooler_weights(tiny_bert_no_pooler, corpus_file, tmp_path):
    result = run("index", corpus_file, "--index", tmp_path / "idx", "--model", tiny_bert_no_pooler, "--pooling", "pooler")
    one_line_error(result, "no trained pooler weights")


def test_existing_index_needs_overwrite(built, corpus_file):
    one_line_error(run("index", corpus_file, "--index", built), "already exists")


@pytest.mark.parametrize("args,pattern", [
    (["--pooling", "cls"], "built with pooling 'mean', not 'cls'"),
    (["-k", "0"], "k must be a positive integer"),
    (["--no-such-option"], "No such option"),
])
def test_query_user_errors(built, args, pattern):
    one_line_error(run("query", "cats", "--index", built, *args), pattern)


def test_query_with_another_model_is_refused(built, tiny_bert):
    one_line_error(run("query", "cats", "--index", built, "--model", tiny_bert), "built with model")


def test_blank_query_and_missing_index(built, tmp_path):
    one_line_error(run("query", "   ", "--index", built), "non-empty")
    one_line_error(run("query", "cats", "--index", tmp_path / "nowhere"), "no index at")
    one_line_error(run("info", "--index", tmp_path / "nowhere"), "no index at")


def test_hub_model_that_cannot_be_fetched(corpus_file, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests
    result = run("index", corpus_file, "--index", tmp_path / "idx", "--model", "semsearch-tests/no-such-model")
    one_line_error(result, "could not be fetched from the Hugging Face hub")


def test_query_rerank_reorders_and_reports(built, tiny_cross_encoder):
    result = run("query", "which pet purrs?", "--index", built, "-k", 4, "--candidates", 6, "--json",
                 "--rerank", tiny_cross_encoder)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 4 and {"rerank_score", "truncated", "score"} <= set(rows[0])
    assert [r["rerank_score"] for r in rows] == sorted((r["rerank_score"] for r in rows), reverse=True)
    dense = [json.loads(x)["id"] for x in run("query", "which pet purrs?", "--index", built, "-k", 6, "--json").stdout.splitlines()]
    assert [r["id"] for r in rows] != dense[:4]  # the random tiny cross-encoder reorders
    table = run("query", "which pet purrs?", "--index", built, "-k", 2, "--rerank", tiny_cross_encoder)
    assert "rerank" in table.stdout.splitlines()[1]


def test_default_reranker_and_rerank_errors(built, tiny_cross_encoder, tmp_path):
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(built, idx)
    one_line_error(run("query", "cats", "--index", idx, "--rerank"), "has no default reranker")
    assert run("set-reranker", tiny_cross_encoder, "--index", idx).exit_code == 0
    assert json.loads((idx / "manifest.json").read_text())["reranker"]["score_kind"] == "logit"
    result = run("query", "cats", "--index", idx, "--json", "-k", 2, "--rerank")
    assert result.exit_code == 0 and "rerank_score" in json.loads(result.stdout.splitlines()[0])
    one_line_error(run("query", "cats", "--index", idx, "-k", 20, "--candidates", 5, "--rerank"),
                    "k (20) is larger than candidates (5)")
    many = run("query", "cats", "--index", idx, "--json", "-k", 60, "--rerank")  # -k above the default 50
    assert many.exit_code == 0, many.output
    rows = [json.loads(line) for line in many.stdout.splitlines()]
    assert len(rows) == len(DOCS) and all("rerank_score" in r for r in rows)  # every document, reranked
    one_line_error(run("query", "cats", "--index", idx, "--rerank", tmp_path / "none"), "train-reranker")
    assert run("set-reranker", "--clear", "--index", idx).exit_code == 0
    assert json.loads((idx / "manifest.json").read_text())["reranker"] is None


def test_eval_with_rerank(built, tiny_cross_encoder, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"_id": str(i), "text": q}) + "\n" for i, q in enumerate(QUESTIONS)))
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{i}\t{doc}\t1\n" for i, doc in enumerate(QUESTIONS.values())))
    result = run("eval", "--index", built, "--queries", queries, "--qrels", qrels, "--json",
                 "--rerank", tiny_cross_encoder, "--candidates", 3)
    data = json.loads(result.stdout)
    assert data["recall@100"] == 1.0  # the first stage's tail follows the reranked candidates
    assert data["mrr@10"] < 1.0  # a random cross-encoder demotes some right answers


def test_train_reranker_cli(built, tiny_bert, tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": str(i), "text": q}) + "\n" for i, q in enumerate(QUESTIONS)))
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{i}\t{doc}\t1\n" for i, doc in enumerate(QUESTIONS.values())))
    out = tmp_path / "reranker"
    result = run("train-reranker", "--data", beir, "--output", out, "--base", tiny_bert, "--max-steps", 2,
                 "--index", built, "--max-length", 32, "-q")
    assert result.exit_code == 0, result.output
    assert "2 steps" in result.stdout and (out / "README.md").is_file()
    assert run("query", "cats", "--index", built, "--rerank", out, "-k", 1).exit_code == 0
    one_line_error(run("train-reranker", "--data", beir, "--output", out, "--base", tiny_bert, "-q"), "exists")
    one_line_error(run("train-reranker", "--data", tmp_path / "nope", "--output", tmp_path / "x"), "does not exist")


def test_an_index_built_with_trust_remote_code_asks_for_it_again_when_its_models_load(tiny_bert, corpus_file,
                                                                                      tiny_cross_encoder, tmp_path):
    from semsearch import ModelError, Reranker

    idx = tmp_path / "idx"
    assert run("index", corpus_file, "--index", idx, "--model", tiny_bert, "--trust-remote-code").exit_code == 0
    assert json.loads((idx / "manifest.json").read_text())["embedder"]["trust_remote_code"] is True
    one_line_error(run("query", "cats", "--index", idx, "--mode", "dense"), "runs code shipped with the model")
    one_line_error(run("add", corpus_file, "--index", idx, "-q"), "--trust-remote-code")
    assert run("query", "cats", "--index", idx, "--mode", "dense", "--trust-remote-code").exit_code == 0
    assert run("query", "cats", "--index", idx, "--mode", "lexical").exit_code == 0  # no model loads: nothing asked
    with pytest.raises(ModelError, match="trust_remote_code=True"):
        SearchEngine.open(idx)
    with SearchEngine.open(idx, trust_remote_code=True) as engine:
        assert engine.search("cats", k=2, mode="dense")
    config = dict(Reranker(tiny_cross_encoder).config(), trust_remote_code=True)
    with pytest.raises(ModelError, match="the index's reranker"):
        Reranker.from_config(config)
    assert Reranker.from_config(config, trust_remote_code=True).trust_remote_code
