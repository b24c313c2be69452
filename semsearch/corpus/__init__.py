"""Reading the input: corpus files into :class:`~semsearch.Document`\\ s, and BEIR queries and judgements.

- :mod:`.readers`: JSONL / CSV / TSV / Parquet / txt / a folder of text files / the standard library's
  docstrings (``builtin:python-docs``) → documents; ``read_queries``, ``read_qrels``.
"""
