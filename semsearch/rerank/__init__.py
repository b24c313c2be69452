"""Stage 2, reranking: a cross-encoder reads (query, document) pairs and reorders the first stage's top hits.

- :mod:`.reranker`: :class:`~semsearch.Reranker` (one scoring method, ``score``), ``rerank`` on hits.
- :mod:`.blend`: blending its order with the first stage's, and fitting that blend for an index.
- :mod:`.train`: :func:`~semsearch.train_reranker`, semsearch's own cross-encoder from judged queries.
"""
