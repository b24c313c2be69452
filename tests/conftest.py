"""Shared fixtures: a tiny BERT made here, the embedded MiniLM, small corpora."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

logging.getLogger("transformers").setLevel(logging.ERROR)

WORDS = (
    "the cat sat on the mat while a dog barked at the moon and birds sang in tall green trees "
    "rivers flow to the sea under bright stars people read books about science history and art"
).split()


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # A fixed vocabulary (not a trained one: the trainer's tie-breaking varies between processes,
    # which would change the random model's geometry from run to run).
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = sorted(set(WORDS) | {"x", "a"})
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + words + letters + [f"##{c}" for c in letters]))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=64,
    )
    fast.save_pretrained(folder)
    return fast


def _tiny_bert(folder: Path, pooler: bool, cross_encoder: bool = False) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    tokenizer = _tokenizer(folder)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    if cross_encoder:
        config.num_labels = 1
        BertForSequenceClassification(config).eval().save_pretrained(folder)
    else:
        BertModel(config, add_pooling_layer=pooler).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """Exported ONNX models go to a folder of the test session, not the user's cache."""
    import os

    folder = tmp_path_factory.mktemp("semsearch-cache")
    previous = os.environ.get("SEMSEARCH_CACHE")
    os.environ["SEMSEARCH_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("SEMSEARCH_CACHE", None)
    else:
        os.environ["SEMSEARCH_CACHE"] = previous


@pytest.fixture()
def any_agreement(monkeypatch):
    """Accept any agreement with fp32 (the self-check still runs): a tiny random reranker's int8 scores barely
    correlate with fp32's on the check pairs (Pearson 0.07 to 0.7), far below the floor of real models."""
    monkeypatch.setenv("SEMSEARCH_AGREEMENT_FLOOR", "-1")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT with a pooler and a tokenizer trained here (random weights, seeded)."""
    return _tiny_bert(tmp_path_factory.mktemp("tiny_bert"), pooler=True)


@pytest.fixture(scope="session")
def tiny_bert_no_pooler(tmp_path_factory) -> Path:
    return _tiny_bert(tmp_path_factory.mktemp("tiny_bert_no_pooler"), pooler=False)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    """A 2-layer BERT sequence classifier with one output (random weights, seeded)."""
    return _tiny_bert(tmp_path_factory.mktemp("tiny_ce"), pooler=True, cross_encoder=True)


@pytest.fixture(scope="session")
def minilm():
    """The embedded all-MiniLM-L6-v2, loaded once for the session."""
    from semsearch import TransformerEmbedder

    return TransformerEmbedder()


DOCS = [
    {"_id": "cats", "title": "Cats", "text": "Cats are small furry pets that purr and chase mice.", "colour": "grey"},
    {"_id": "cars", "title": "Cars", "text": "A car is a motor vehicle with four wheels used for road transport."},
    {"_id": "bread", "title": "Bread", "text": "Bread is baked from flour, water and yeast in a hot oven."},
    {"_id": "volcano", "title": "Volcanoes", "text": "A volcano erupts molten lava, ash and gases from the earth."},
    {"_id": "chess", "title": "Chess", "text": "Chess is a board game for two players with kings, queens and pawns."},
    {"_id": "piano", "title": "Piano", "text": "The piano is a musical instrument played by pressing keys."},
]


@pytest.fixture()
def corpus_file(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


def one_line_error(result, pattern: str) -> None:
    """A CLI result that failed as user errors must: exit status 2, one line on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semsearch: error: "), result.stderr
    assert "Traceback" not in result.output
    assert pattern in lines[0], lines[0]


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster for the session (started on first use), or a skip where ray is not installed."""
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'semsearch[ray]'")
    started = not ray.is_initialized()
    if started:  # two CPUs: one embedding actor, one left for Ray's read tasks. Workers import the test
        # embedders from this folder (Ray does not give them the driver's sys.path).
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})  # as a quiet (-q) CLI run starts it
    yield ray
    if started:
        ray.shutdown()


SPREAD_TEXTS = ["the cat sat on the mat", "a dog barked at the moon while birds sang in tall green trees",
                "rivers flow to the sea", "people read books about science history and art", "x"]
PAIRS = [(q, d) for q in ("cat", "the sea", "books about art", "a dog at the moon") for d in SPREAD_TEXTS]


@pytest.fixture(scope="session")
def spread_cross_encoder(tiny_cross_encoder, tmp_path_factory):
    """The tiny cross-encoder with its head pointed along the pooled outputs' main direction of variation:
    its random head scores every pair about the same (std 3e-5), which no agreement test could use."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_cross_encoder)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_cross_encoder).eval()
    with torch.no_grad():
        enc = tok([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, return_tensors="pt")
        pooled = model.bert(**enc).pooler_output
        centred = pooled - pooled.mean(0)
        direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
        scale = 1 / (centred @ direction).std()
        model.classifier.weight.copy_(scale * direction[None])
        model.classifier.bias.fill_(float(-(pooled.mean(0) @ direction) * scale))
    folder = tmp_path_factory.mktemp("spread_ce")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def index_recorded_as(model, corpus_file, path, **embedder_fields) -> dict:
    """An fp32 index of ``corpus_file`` at ``path`` whose manifest then claims ``embedder_fields`` (e.g. as if
    built with ``--backend onnx``); returns that manifest, for further edits."""
    from semsearch import SearchEngine, TransformerEmbedder, read_corpus

    SearchEngine.build(read_corpus(corpus_file), path, embedder=TransformerEmbedder(model, precision="fp32"),
                       progress=False)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["embedder"].update(embedder_fields)
    (path / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@pytest.fixture(scope="module")
def hash_index(tmp_path_factory) -> Path:
    """An index of 40 small documents (``serve_helpers.serve_docs``) built with the fake embedder, shared by
    a module's tests (the server's tests: pass ``embedders={name: HashEmbedder()}``)."""
    from fakes import HashEmbedder
    from serve_helpers import serve_docs

    from semsearch import SearchEngine

    path = tmp_path_factory.mktemp("serve") / "docs"
    SearchEngine.build(serve_docs(), path, embedder=HashEmbedder(), progress=False).close()
    return path


@pytest.fixture()
def fresh_hash_index(tmp_path) -> Path:
    """The same index, built for one test (one that writes to it)."""
    from fakes import HashEmbedder
    from serve_helpers import serve_docs

    from semsearch import SearchEngine

    path = tmp_path / "docs"
    SearchEngine.build(serve_docs(), path, embedder=HashEmbedder(), progress=False).close()
    return path

