"""Stage 1a, embedding: texts in, float32 vectors out; and how any model runs on the CPU.

- :mod:`.embedder`: :class:`~semsearch.Embedder` (one abstract method, ``embed_batch``) and
  :class:`~semsearch.TransformerEmbedder` (any Hugging Face encoder).
- :mod:`.pooling`: ``mean``, ``cls``, ``pooler`` as plain functions.
- :mod:`.batching`: batches of similar length, results in input order.
- :mod:`.models`: finding a model folder (the embedded default, a folder, the hub) and fingerprinting it.
- :mod:`.runtime`: precision (fp32, bf16, int8) and backend (torch, ONNX Runtime, OpenVINO): export, cache.
- :mod:`.openvino`: the OpenVINO backend, static int8 calibrated on shipped texts.
- :mod:`.agreement`: the once-per-machine check of a fast variant against fp32.

The cross-encoder (:mod:`semsearch.rerank`) runs on the same runtime.
"""
