"""The exported runtimes' tokenizer (tokenizers only) gives what transformers' gives, on texts and pairs."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.encode.tokenizer import FastTokenizer

TEXTS = ["the cat sat on the mat", "A dog barked at the MOON!", "x", "Ünïcödé, émojis 🐈 and tabs\there",
         "rivers flow to the sea " * 40, "   leading and trailing spaces   ", "numbers 3.14, 2,686 and 100%"]
SECOND = ["books about science", "a", "the sea " * 60, "birds sang in tall green trees", "?", "mat", "art"]


@pytest.fixture(params=["tiny", "minilm"])
def hf_tokenizer(request, tiny_bert):
    from transformers import AutoTokenizer

    if request.param == "tiny":
        return AutoTokenizer.from_pretrained(str(tiny_bert))
    from semsearch.encode.models import DEFAULT_MODEL, model_folder

    return AutoTokenizer.from_pretrained(str(model_folder(DEFAULT_MODEL)))


@pytest.mark.parametrize("max_length", [8, 32, 64])
def test_batches_of_texts_and_pairs_match_transformers(hf_tokenizer, max_length, tmp_path):
    settings = FastTokenizer.from_hugging_face(hf_tokenizer).save(tmp_path)
    fast = FastTokenizer.load(tmp_path, settings)  # as an exported runtime loads it
    for args in ((TEXTS,), (TEXTS, SECOND)):
        want = hf_tokenizer(*[list(a) for a in args], padding=True, truncation=True, max_length=max_length,
                            return_tensors="np")
        got = fast(*args, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
            assert got[key].dtype == np.int64


def test_token_counts_match_transformers(hf_tokenizer):
    fast = FastTokenizer.from_hugging_face(hf_tokenizer)
    options = dict(truncation=False, return_attention_mask=False, return_token_type_ids=False)
    assert fast(TEXTS, **options)["input_ids"] == hf_tokenizer(TEXTS, verbose=False, **options)["input_ids"]
    assert fast(TEXTS, SECOND, **options)["input_ids"] == hf_tokenizer(TEXTS, SECOND, verbose=False,
                                                                       **options)["input_ids"]


def test_padding_without_truncation_is_refused(hf_tokenizer):
    with pytest.raises(ValueError, match="pads and truncates together"):
        FastTokenizer.from_hugging_face(hf_tokenizer)(TEXTS, padding=True)
