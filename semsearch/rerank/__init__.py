"""Stage 2, reranking: a cross-encoder reads (query, document) pairs and reorders the first stage's top hits.

- :mod:`.reranker`: :class:`~semsearch.Reranker` (one scoring method, ``score``), ``rerank`` on hits.
- :mod:`.blend`: blending its order with the first stage's; checking, cross-fitted on judged queries, that
  the reranker helps at all (weight 1, the first stage's order, when it does not); fitting that for an index.
- :mod:`.training_data`: what a reranker learns from: judged queries, or pseudo-queries from a corpus.
- :mod:`.mining`, :mod:`.train`, :mod:`.card`: :func:`~semsearch.train_reranker`, semsearch's own cross-encoder:
  hard negatives and passages from the index, training with its check, the folder and model card it writes.
"""
