"""Text tokenizer: trained from captions, whole words as pieces, byte fallback, fixed length."""

import copy
import logging
import pickle

import numpy as np
import pytest

from videogen.data import text, world


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    cfg = world.WorldConfig(resolution=32)
    caps = [world.sample_clip(cfg, "train", i).caption for i in range(2000)]
    path = text.train_text_tokenizer(caps, tmp_path_factory.mktemp("tok") / text.MODEL_FILENAME)
    return text.TextTokenizer(path, max_length=24)


def test_caption_words_are_whole_pieces(tokenizer):
    pieces = tokenizer.pieces("the large blue square bounces up and down while a green triangle stays still")
    assert pieces[:4] == ["▁the", "▁large", "▁blue", "▁square"]
    assert len(pieces) == 14  # one piece per word


def test_round_trip_and_fixed_length(tokenizer):
    caption = "a small red circle moves to the left"
    ids, mask = tokenizer.encode(caption)
    assert ids.shape == mask.shape == (24,) and ids.dtype == np.int32
    assert (
        ids[0] == text.BOS_ID
        and ids[mask.sum() - 1] == text.EOS_ID
        and (ids[mask.sum() :] == text.PAD_ID).all()
    )
    assert tokenizer.decode(ids) == caption


def test_any_prompt_encodes_without_unk(tokenizer):
    prompt = "ein großer 🐙 tanzt — 紫色の円"
    ids, mask = tokenizer.encode(prompt[:8])
    assert text.UNK_ID not in ids
    full = text.TextTokenizer(tokenizer.path, max_length=128)
    ids, _ = full.encode(prompt)
    assert text.UNK_ID not in ids and full.decode(ids) == prompt


def test_truncation_warns_once(tokenizer, caplog):
    long = " and ".join(["a red circle moves left"] * 10)
    with caplog.at_level(logging.WARNING, logger="videogen.data"):
        ids, mask = tokenizer.encode(long)
        tokenizer.encode(long)
    assert mask.all() and ids[-1] == text.EOS_ID
    assert sum("truncated" in r.message for r in caplog.records) == 1


def test_batch_and_pickle(tokenizer):
    ids, mask = tokenizer.encode_batch(["a red circle moves left", "the blue box stays still"])
    assert ids.shape == (2, 24)
    assert pickle.dumps(tokenizer)  # serialisable for grain worker processes
    clone = copy.deepcopy(tokenizer)  # rebuilt through the same __getstate__/__reduce__ protocol
    assert np.array_equal(clone.encode("a red circle moves left")[0], ids[0])


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-text-tokenizer"):
        text.TextTokenizer(tmp_path / "missing.model")
    with pytest.raises(ValueError, match="no captions"):
        text.train_text_tokenizer([], tmp_path / "x.model")
