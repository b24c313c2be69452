"""Stage 1b, the index: an index folder on disk (vectors, documents, BM25, manifest), and searching it.

- :mod:`.engine`: :class:`~semsearch.SearchEngine`: build / open / add / delete / search / evaluate;
  it composes the others (and calls the reranker of :mod:`semsearch.rerank`).
- :mod:`.layout`: the folder's file names, its writer lock, the checks before writing one.
- :mod:`.build`: writing a new index folder; :mod:`.update`: add, delete, compact, crash-safe.
- :mod:`.vectors`: the FAISS index; :mod:`.store`: the SQLite document store;
  :mod:`.lexical`: the BM25 side; :mod:`.manifest`: ``manifest.json``.
- :mod:`.fusion`: hybrid fusion of dense and BM25 rankings; :mod:`.tune`: fitting it;
  :mod:`.filters`: metadata filters.
"""
