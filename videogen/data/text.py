"""Text tokenizer: a sentencepiece model trained from a dataset's captions, saved beside the experiment.

BPE with byte fallback: caption words become whole pieces (a unigram model on a ~50-word vocabulary
caps itself and splits words into letters), and any prompt — unknown words, other scripts, emoji —
still encodes, as UTF-8 bytes, instead of mapping to <unk>.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import sentencepiece as spm

from videogen.errors import shorten

log = logging.getLogger("videogen.data")

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_FILENAME = "text_tokenizer.model"
MIN_VOCAB_SIZE = 300  # 256 byte pieces + the specials + some words


def train_text_tokenizer(captions: Iterable[str], path: str | os.PathLike, *, vocab_size: int = 512) -> Path:
    """Trains a BPE sentencepiece model on `captions` and writes it to `path` (atomically).

    vocab_size counts the 256 byte pieces and 4 specials; with few distinct words the model stops
    earlier (hard_vocab_limit=False), so the same setting works for the world and for real captions.
    """
    captions = [c.strip().lower() for c in captions if c and c.strip()]
    if not captions:
        raise ValueError(
            "train_text_tokenizer: no captions given; pass the dataset's captions (a non-empty list)."
        )
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size={vocab_size}: must be >= {MIN_VOCAB_SIZE} (256 byte pieces + specials + some words)."
        )
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        hard_vocab_limit=False,
        character_coverage=1.0,
        normalization_rule_name="identity",
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        num_threads=1,
        split_digits=True,
        minloglevel=2,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(model.getvalue())
    os.replace(tmp, path)  # a crash never leaves a half-written model behind
    return path


class TextTokenizer:
    """Encodes prompts to fixed-length id arrays: [BOS] pieces [EOS] then PAD, truncated with a warning."""

    def __init__(self, path: str | os.PathLike, max_length: int = 32):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Text tokenizer model {path} not found: train one with "
                "`videogen train-text-tokenizer --out DIR` or pass the path of an existing "
                f"sentencepiece model ({MODEL_FILENAME} in the experiment's workdir)."
            )
        self.path = path
        self.max_length = int(max_length)
        self._sp = spm.SentencePieceProcessor(model_file=str(path))
        self._warned: set[str] = set()

    # sentencepiece processors are not picklable; grain threads/processes get a fresh one.
    def __getstate__(self):
        return {"path": self.path, "max_length": self.max_length}

    def __setstate__(self, state):
        self.__init__(state["path"], state["max_length"])

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def pieces(self, text: str) -> list[str]:
        return self._sp.encode(text.strip().lower(), out_type=str)

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Returns ids int32 [max_length] and mask bool [max_length] (True on real tokens)."""
        ids = [BOS_ID] + self._sp.encode(text.strip().lower()) + [EOS_ID]
        if len(ids) > self.max_length:
            if text not in self._warned and len(self._warned) < 100:
                self._warned.add(text)
                # A sampler cannot change the model's text length, so the line only says what is lost; the
                # prompt is quoted shortened (a pasted page would fill the terminal).
                log.warning(
                    "Prompt truncated from %d to %d tokens, the most this model reads (its text.max_length "
                    "at training); the rest is ignored: %s",
                    len(ids),
                    self.max_length,
                    shorten(text),
                )
            ids = ids[: self.max_length - 1] + [EOS_ID]
        out = np.full(self.max_length, PAD_ID, np.int32)
        out[: len(ids)] = ids
        return out, out != PAD_ID

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, masks = zip(*(self.encode(t) for t in texts))
        return np.stack(ids), np.stack(masks)

    def decode(self, ids) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1) if int(i) not in (PAD_ID, BOS_ID, EOS_ID)]
        return self._sp.decode(ids)
