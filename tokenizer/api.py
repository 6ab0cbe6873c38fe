"""The tokenizer's public API: load a trained tokenizer, encode clips to codes, decode codes to clips.

Library code (codes files, sampling, evaluation) imports this module, never the trainer. The definitions
still live in tokenizer/train.py for now; moving them here is issue 25's restructure, and callers of this
module will not change when that happens.
"""

from tokenizer.train import (  # noqa: F401  (re-exported)
    COMPUTE_ONLY_MODEL_KEYS,
    Tokenizer,
    abstract_tokenizer,
    decode_indices,
    encode_video,
    latest_step,
    load_tokenizer,
    quantizer_kwargs,
)

__all__ = [
    "COMPUTE_ONLY_MODEL_KEYS",
    "Tokenizer",
    "abstract_tokenizer",
    "decode_indices",
    "encode_video",
    "latest_step",
    "load_tokenizer",
    "quantizer_kwargs",
]
