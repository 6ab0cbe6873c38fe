"""The LM's code cache: built once, reused for the same tokenizer and data, refused for another."""

import numpy as np
import pytest

from videogen.data import code_cache
from videogen.errors import UsageError


class _Clips:
    def __init__(self, n=12):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"video": np.full((5, 8, 8, 3), i, np.uint8), "caption": f"clip {i}"}


def _encode_counting(calls):
    def encode(video):  # [B, T, H, W, 3] -> [B, 2, 2, 2]: the clip's value as every code
        calls.append(len(video))
        return np.broadcast_to(video[:, :1, :2, :2, 0].reshape(len(video), 1, 2, 2), (len(video), 2, 2, 2))

    return encode


def test_code_cache_is_built_once_and_reused(tmp_path):
    calls = []
    kw = dict(
        num_clips=10,
        batch_size=4,
        data_spec={"kind": "world", "resolution": 8},
        weights_hash="aaaa",
        directory=tmp_path,
        log=lambda m: None,
    )
    src, path = code_cache.load_or_build(_Clips(), _encode_counting(calls), **kw)
    assert len(src) == 10 and calls == [4, 4, 4] and path.parent == tmp_path / "code_cache"
    item = src[7]
    assert item["caption"] == "clip 7" and item["codes"].shape == (2, 2, 2) and (item["codes"] == 7).all()
    again, path2 = code_cache.load_or_build(_Clips(), _encode_counting(calls), **kw)
    assert path2 == path and calls == [4, 4, 4] and (again.codes == src.codes).all()
    assert not list(path.parent.glob("*.tmp"))
    # Another tokenizer or other data gets its own file by default ...
    _, other = code_cache.load_or_build(_Clips(), _encode_counting(calls), **{**kw, "weights_hash": "bbbb"})
    assert other != path
    # ... and an explicit cache file made by another tokenizer, or for other data, is refused.
    with pytest.raises(UsageError, match="another tokenizer"):
        code_cache.load_or_build(
            _Clips(), _encode_counting(calls), **{**kw, "weights_hash": "bbbb", "path": path}
        )
    with pytest.raises(UsageError, match="caches 10 clips"):
        code_cache.load_or_build(
            _Clips(),
            _encode_counting(calls),
            **{**kw, "data_spec": {"kind": "world", "resolution": 16}, "path": path},
        )
    with pytest.raises(UsageError, match="at least batch_size"):
        code_cache.load_or_build(_Clips(), _encode_counting(calls), **{**kw, "num_clips": 2})
