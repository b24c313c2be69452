"""Bad input, one case per line: each is a clear one-line error with exit status 2 (CLI) or a typed exception
(API), and nothing already stored is lost. A few are not errors by design (k beyond the index, a 10 MB
document); those are checked for the behaviour promised instead."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import one_line_error
from fakes import HashEmbedder

from semsearch import Document, SearchEngine
from semsearch.cli import cli
from semsearch.errors import (
    BadInput,
    IndexNotFound,
    ManifestMismatch,
    ModelError,
    StorageError,
)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


GOOD = [{"_id": "a", "text": "the cat sat on the mat", "colour": "red"},
        {"_id": "b", "text": "a dog barked at the moon", "colour": "blue"},
        {"_id": "c", "text": "birds sang in tall green trees"}]


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("bad")
    corpus = folder / "good.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in GOOD))
    result = run("index", corpus, "--index", folder / "idx", "--model", tiny_bert, "--precision", "fp32", "-q")
    assert result.exit_code == 0, result.output
    return folder / "idx"


def _count(index) -> int:
    return len(SearchEngine.open(index))


CORPORA = [  # (file name, content, extra options, expected message)
    ("empty.jsonl", "\n\n", [], "corpus is empty"),
    ("blank.jsonl", '{"_id": "x", "text": ""}\n', [], "has an empty text"),
    ("spaces.jsonl", '{"_id": "x", "text": "   \\t "}\n', [], "has an empty text"),
    ("notext.jsonl", '{"_id": "x", "body": "words"}\n', [], "has no 'text' field"),
    ("number.jsonl", '{"_id": "x", "text": 42}\n', [], "must be strings"),
    ("dup.jsonl", '{"_id": "x", "text": "a"}\n{"_id": "x", "text": "b"}\n', [], "duplicate document id 'x'"),
    ("numstr.jsonl", '{"_id": 1, "text": "a"}\n{"_id": "1", "text": "b"}\n', [], "duplicate document id '1'"),
    ("latin1.jsonl", b'{"_id": "x", "text": "caf\xe9"}\n', [], "not valid UTF-8"),
    ("broken.jsonl", '{"_id": "x", "text": \n', [], "invalid JSON"),
    ("array.jsonl", '["x", "text"]\n', [], "expected a JSON object"),
    ("noid.jsonl", '{"text": "words"}\n', [], "has no id field"),
    ("nullid.jsonl", '{"_id": null, "text": "words"}\n', [], "id must be a non-empty string or integer"),
    ("ok.jsonl", '{"_id": "x", "text": "words"}\n', ["--format", "xml"], "unknown corpus format 'xml'"),
    ("ok.xml", "<doc/>", [], "cannot tell the format"),
    ("nocol.csv", "id,body\n1,words\n", [], "no column 'text'"),
    ("ok.jsonl", '{"_id": "x", "text": "words"}\n', ["--batch-size", "0"], "batch size must be at least 1"),
    ("ok.jsonl", '{"_id": "x", "text": "words"}\n', ["--precision", "fp8"], "valid values are: auto, fp32"),
]


@pytest.mark.parametrize("name,content,options,pattern", CORPORA, ids=[c[0] + str(i) for i, c in enumerate(CORPORA)])
def test_bad_corpus_for_index_and_add(tmp_path, index, tiny_bert, name, content, options, pattern):
    corpus = tmp_path / name
    corpus.write_bytes(content if isinstance(content, bytes) else content.encode())
    one_line_error(run("index", corpus, "--index", tmp_path / "new", "--model", tiny_bert, "-q", *options), pattern)
    assert not (tmp_path / "new").exists()
    if "--precision" not in options and "--format" not in options:
        before = _count(index)
        result = run("add", corpus, "--index", index, "-q", *options)
        if pattern != "corpus is empty":  # adding nothing is fine
            one_line_error(result, pattern.replace("duplicate document id", "document id").replace(
                "'x'", "'x' appears twice").replace("'1'", "'1' appears twice"))
        assert _count(index) == before  # nothing lost, nothing half-added


def test_missing_corpus(tmp_path, index):
    one_line_error(run("add", tmp_path / "missing.jsonl", "--index", index), "does not exist")


@pytest.mark.parametrize("args,pattern", [
    (["-k", "0"], "k must be a positive integer"),
    (["-k", "-3"], "k must be a positive integer"),
    (["--filter", "shape=round"], "no document has a metadata field 'shape'"),
    (["--filter", "colour"], "filter"),
    (["--mode", "fuzzy"], "mode"),
    (["--precision", "int4"], "valid values are: auto, fp32, bf16, int8"),
])
def test_bad_query_options(index, args, pattern):
    one_line_error(run("query", "cat", "--index", index, *args), pattern)


def test_whitespace_query(index):
    one_line_error(run("query", "   ", "--index", index), "a query must be non-empty text")


def test_k_beyond_the_index_returns_every_document(index):
    result = run("query", "cat", "--index", index, "-k", "50", "--json")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == len(GOOD)


def test_path_traversal_and_symlinked_index(tmp_path, index):
    one_line_error(run("query", "cat", "--index", f"{tmp_path}/x/../../etc"), "climbs out of its folder")
    link = tmp_path / "link"
    link.symlink_to(index, target_is_directory=True)
    assert run("query", "cat", "--index", link).exit_code == 0  # reading through a link is fine
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "z", "text": "words"}\n')
    one_line_error(run("add", corpus, "--index", link), "is a symbolic link")
    one_line_error(run("index", corpus, "--index", link, "--overwrite"), "is a symbolic link")
    assert _count(index) == len(GOOD) and link.is_symlink()


def test_index_names_stay_under_the_index_root(tmp_path, tiny_bert, monkeypatch):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "z", "text": "the cat sat"}\n')
    monkeypatch.setenv("SEMSEARCH_INDEX_ROOT", str(tmp_path / "root"))
    assert run("index", corpus, "--index", "cats", "--model", tiny_bert, "-q").exit_code == 0
    assert (tmp_path / "root" / "cats" / "manifest.json").is_file()  # a name lives under the root
    assert run("query", "cat", "--index", "cats").exit_code == 0
    assert run("index", corpus, "--model", tiny_bert, "-q").exit_code == 0  # no --index: the name "default"
    assert (tmp_path / "root" / "default" / "manifest.json").is_file()
    for bad in ("-x", "a b", "caf\u00e9", "x" * 200):
        one_line_error(run("query", "cat", "--index", bad), "invalid index name")
    one_line_error(run("query", "cat", "--index", ".."), "climbs out of its folder")


def test_unknown_ids_and_missing_index(tmp_path, index):
    one_line_error(run("delete", "nope", "--index", index), "no document with id 'nope'")
    one_line_error(run("query", "cat", "--index", tmp_path / "absent"), "no index at")


def _copy(index, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(index, target)
    return target


@pytest.mark.parametrize("damage,pattern", [
    (lambda p: (p / "vectors.faiss").write_bytes((p / "vectors.faiss").read_bytes()[:100]), "vectors.faiss"),
    (lambda p: (p / "vectors.faiss").write_bytes(b"not a faiss file at all"), "vectors.faiss"),
    (lambda p: (p / "docs.sqlite").write_bytes((p / "docs.sqlite").read_bytes()[:500]), "docs.sqlite"),
    (lambda p: (p / "manifest.json").write_text("{not json"), "manifest.json is not valid JSON"),
    (lambda p: (p / "manifest.json").write_text(json.dumps(
        {**json.loads((p / "manifest.json").read_text()), "format_version": 99})), "index format 99 is newer"),
    (lambda p: (p / "manifest.json").write_text(json.dumps(
        {**json.loads((p / "manifest.json").read_text()), "documents": 7})), "docs.sqlite has 3"),
    (lambda p: (p / "manifest.json").write_text(json.dumps(
        {**json.loads((p / "manifest.json").read_text()), "vectors": 7})), "vectors.faiss has 3"),
], ids=["faiss-truncated", "faiss-garbage", "sqlite-truncated", "manifest-json", "manifest-newer", "count-mismatch",
        "passage-count-mismatch"])
def test_corrupt_index_files_are_named(tmp_path, index, damage, pattern):
    target = _copy(index, tmp_path)
    damage(target)
    one_line_error(run("query", "cat", "--index", target), pattern)


def test_a_damaged_bm25_side_is_named_and_rebuilt_from_the_store(tmp_path, index, caplog):
    target = _copy(index, tmp_path)
    (target / "lexical" / "ids.npy").write_bytes(b"garbage")
    result = run("query", "cat", "--index", target, "--mode", "lexical", "--json")
    assert result.exit_code == 0, result.output
    assert f"{target / 'lexical'}" in caplog.text and "rebuilding the BM25 side from the document store" in caplog.text
    assert json.loads(result.stdout.splitlines()[0])["id"] == "a"


def test_model_without_weights(tmp_path, tiny_bert, index):
    broken = tmp_path / "model"
    shutil.copytree(tiny_bert, broken)
    (broken / "model.safetensors").unlink()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "z", "text": "words"}\n')
    one_line_error(run("index", corpus, "--index", tmp_path / "new", "--model", broken), "cannot load model")


def test_model_of_another_dimension(tmp_path):
    SearchEngine.build([Document("a", "words here")], tmp_path / "idx", embedder=HashEmbedder(64), progress=False)
    with pytest.raises(ManifestMismatch, match="dim=64, not 32"):
        SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder(32))


class _NaNEmbedder(HashEmbedder):
    def embed_batch(self, texts):
        out = super().embed_batch(texts)
        out[0, 0] = np.nan
        return out


def test_nan_vectors_from_a_broken_model(tmp_path):
    with pytest.raises(ModelError, match="NaN or infinite"):
        SearchEngine.build([Document("a", "words")], tmp_path / "idx", embedder=_NaNEmbedder(), progress=False)
    assert not (tmp_path / "idx").exists()
    engine = SearchEngine.build([Document("a", "words")], tmp_path / "ok", embedder=HashEmbedder(), progress=False)
    with pytest.raises(ModelError, match="NaN or infinite"):
        SearchEngine.open(tmp_path / "ok", embedder=_NaNEmbedder()).add([Document("b", "more")], progress=False)
    assert len(SearchEngine.open(tmp_path / "ok", embedder=HashEmbedder())) == 1 == len(engine)


def test_a_10_mb_document_is_truncated_with_a_warning(tmp_path, tiny_bert, caplog):
    from semsearch import TransformerEmbedder

    huge = "cat " * 2_500_000  # 10 MB
    embedder = TransformerEmbedder(tiny_bert, precision="fp32")
    engine = SearchEngine.build([Document("huge", huge), Document("small", "a dog barked")], tmp_path / "idx",
                                embedder=embedder, progress=False, passages="off")  # (auto: 40k passages)
    assert "1 of 2 texts were longer than 64 tokens" in caplog.text and caplog.text.count("longer than") == 1
    np.testing.assert_allclose(embedder.encode([huge]), embedder.encode([huge[:4000]]), atol=1e-6)
    assert engine.search("cat cat cat", k=1)[0].id == "huge"


def test_padding_cannot_push_a_text_s_words_past_the_cut_and_a_huge_query_reranks_at_once(tiny_bert,
                                                                                          tiny_cross_encoder,
                                                                                          monkeypatch):
    from semsearch import Reranker, TransformerEmbedder

    embedder = TransformerEmbedder(tiny_bert, precision="fp32")
    padded = " " * 20_000 + "hello world"  # 4 tokens, but over the 64 x 64 characters clipped before tokenising
    np.testing.assert_allclose(embedder.encode([padded]), embedder.encode(["hello world"]), atol=1e-6)
    reranker = Reranker(tiny_cross_encoder, precision="fp32")
    counted = []
    real = type(reranker._rt).token_counter  # a property: the tokenizer that counts a pair's tokens

    def spy(rt):
        count = real.fget(rt)
        return lambda queries, docs, **kw: counted.append(max(map(len, queries))) or count(queries, docs, **kw)

    monkeypatch.setattr(type(reranker._rt), "token_counter", property(spy))
    huge = "cat " * 250_000  # 1 MB: clipped like a text before its tokens are counted
    result = reranker.score([(huge, "a cat"), ("cat", "a cat")])
    assert list(result.truncated) == [True, False] and np.isfinite(result.scores).all()
    assert counted == [reranker.max_length * 64]  # the tokenizer read the clipped query, not 1 MB


def test_full_disk_while_building_keeps_the_old_index(tmp_path, monkeypatch):
    import faiss

    path = tmp_path / "idx"
    SearchEngine.build([Document("a", "old words")], path, embedder=HashEmbedder(), progress=False)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faiss, "write_index", no_space)
    with pytest.raises(StorageError, match="No space left on device; nothing was written there"):
        SearchEngine.build([Document("b", "new words")], path, embedder=HashEmbedder(), overwrite=True,
                           progress=False)
    monkeypatch.undo()
    engine = SearchEngine.open(path, embedder=HashEmbedder())
    assert [d.id for d in engine.store.iter_documents()] == ["a"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]  # no temp folder left


def test_full_disk_while_adding_keeps_the_acknowledged_batches(tmp_path, monkeypatch):
    from semsearch.index import update

    path = tmp_path / "idx"
    engine = SearchEngine.build([Document("a", "old words")], path, embedder=HashEmbedder(), progress=False)
    acknowledged = []

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(update, "_write_vectors", no_space)
    with pytest.raises(StorageError, match="No space left on device; every batch reported written is kept"):
        engine.add([Document(f"n{i}", f"new words {i}") for i in range(5)], progress=False, commit_every=2,
                   on_commit=acknowledged.extend)
    monkeypatch.undo()
    assert acknowledged == [f"n{i}" for i in range(5)]
    reader = SearchEngine.open(path, embedder=HashEmbedder())
    assert {h.id for h in reader.search("new words", k=10)} == set(acknowledged) | {"a"}


def test_unreadable_store_is_a_typed_error(tmp_path):
    path = tmp_path / "idx"
    SearchEngine.build([Document("a", "words")], path, embedder=HashEmbedder(), progress=False)
    (path / "docs.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(IndexNotFound, match="docs.sqlite is unreadable"):
        SearchEngine.open(path, embedder=HashEmbedder())


def test_adding_non_documents_and_duplicate_ids_in_one_batch(tmp_path):
    engine = SearchEngine.build([Document("a", "words")], tmp_path / "idx", embedder=HashEmbedder(), progress=False)
    with pytest.raises(BadInput, match="expected Document objects, got dict"):
        engine.add([{"_id": "b", "text": "x"}], progress=False)
    with pytest.raises(BadInput, match="'b' appears twice"):
        engine.add([Document("b", "x"), Document("b", "y")], progress=False)
    assert len(SearchEngine.open(tmp_path / "idx", embedder=HashEmbedder())) == 1


def test_the_command_alone_prints_its_help_and_a_wrong_command_is_one_line():
    bare = run()
    assert bare.exit_code == 0 and bare.stdout.startswith("Usage: ") and "\n  query " in bare.stdout
    one_line_error(run("nosuch"), "No such command 'nosuch'")


@pytest.mark.parametrize("options,pattern", [
    (["--passages", "all"], "valid values are: auto, off"),
    (["--passage-tokens", "8"], "at least 16"),
    (["--batch-size", "0"], "batch size must be at least 1"),
    (["--lexical-unit", "sentence"], "valid values are: document, passage"),
])
def test_bad_index_options_fail_before_a_model_loads(tmp_path, monkeypatch, options, pattern):
    from semsearch.encode import transformer

    monkeypatch.setattr(transformer, "TransformerEmbedder", lambda *a, **k: pytest.fail("a model was loaded"))
    corpus = tmp_path / "ok.jsonl"
    corpus.write_text('{"_id": "x", "text": "words"}\n')
    one_line_error(run("index", corpus, "--index", tmp_path / "new", *options), pattern)
