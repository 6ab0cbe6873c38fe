"""The tokenizer's public API: load a trained tokenizer, encode clips to codes, decode codes to clips.

The definitions live in tokenizer/core.py (the tokenizer as a library); this module names the part of it that
callers outside the tokenizer use. Library code (codes files, sampling, evaluation) imports this module or
tokenizer.core, never the trainer (tokenizer/train.py).
"""

from tokenizer.core import (
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
