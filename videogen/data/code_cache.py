"""Training codes encoded once per tokenizer, so the LM's train step runs no tokenizer and renders nothing.

The LM trains on a frozen tokenizer's codes. Without a cache every step renders (or reads) a batch of
clips and encodes it; with ``config.code_cache.num_clips = N`` the first ``N`` clips of the training
source are encoded once into an ``.npz`` and the LM's input pipeline shuffles and repeats those (the same
seeded, resumable pipeline, over codes instead of pixels). The file sits in the tokenizer's workdir
(``code_cache/``; the LM workdir if that is read-only), so every LM trained on that tokenizer and data
reuses it; its name and contents carry the tokenizer's weights hash and the data spec, and a cache made
by another tokenizer, or for other data, is refused, never silently used.

File (``np.load(path, allow_pickle=False)``): ``codes`` int16 ``[N, t, h, w]``, ``captions`` unicode
``[N]``, ``weights_hash``, ``data_spec`` (canonical JSON), ``num_clips``, ``format``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from videogen.data.pipeline import SkippingSource
from videogen.errors import UsageError

FORMAT = "videogen-code-cache-1"


def _canonical(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def cache_file_name(data_spec: dict, num_clips: int, weights_hash: str) -> str:
    data_hash = hashlib.sha256(_canonical(data_spec).encode()).hexdigest()[:12]
    return f"train-{data_hash}-{weights_hash}-{int(num_clips)}.npz"


class CodesSource:
    """Random-access source of cached codes: items ``{"codes": int32 [t, h, w], "caption": str, "index"}``."""

    def __init__(self, codes: np.ndarray, captions: np.ndarray):
        self.codes, self.captions = codes, captions

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        return {
            "codes": self.codes[index].astype(np.int32),
            "caption": str(self.captions[index]),
            "index": index,
        }

    def __repr__(self) -> str:
        return f"CodesSource({len(self)} clips, grid {self.codes.shape[1:]})"


def _check(meta: dict, path: Path, *, weights_hash: str, data_spec: str, num_clips: int) -> None:
    if str(meta.get("format")) != FORMAT:
        raise UsageError(
            f"{path} is not a videogen code cache; delete it or set --config.code_cache.path elsewhere."
        )
    if str(meta["weights_hash"]) != weights_hash:
        raise UsageError(
            f"{path} holds codes of another tokenizer (weights hash {meta['weights_hash']}, this one "
            f"{weights_hash}): its codes mean different things here. Delete it, or point "
            "--config.code_cache.path at a new file."
        )
    if str(meta["data_spec"]) != data_spec or int(meta["num_clips"]) != num_clips:
        raise UsageError(
            f"{path} caches {int(meta['num_clips'])} clips of data {meta['data_spec']}, not "
            f"{num_clips} of {data_spec}. Delete it, or point --config.code_cache.path at a new file."
        )


def load_or_build(
    source,
    encode: Callable[[np.ndarray], np.ndarray],
    *,
    num_clips: int,
    batch_size: int,
    data_spec: dict,
    weights_hash: str,
    directory: str | os.PathLike,
    fallback_directory: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> tuple[CodesSource, Path]:
    """The cached codes of the first ``num_clips`` items of ``source`` (built and saved if absent).

    ``encode`` maps uint8 ``[batch_size, T, H, W, 3]`` to codes ``[batch_size, t, h, w]`` (the LM's jitted
    encoder, so building compiles nothing new). Unreadable items are skipped (the next good one takes their
    place) and counted. Written atomically: an interrupted build leaves no file.
    """
    num_clips = int(num_clips)
    if num_clips < batch_size:
        raise UsageError(
            f"code_cache.num_clips={num_clips} must be 0 (off) or at least batch_size={batch_size}."
        )
    spec = _canonical(data_spec)
    name = cache_file_name(data_spec, num_clips, weights_hash)
    if path is not None:
        target = Path(path)
    else:
        target = Path(directory) / "code_cache" / name
        if not target.is_file() and not _writable(target.parent):
            target = Path(fallback_directory or directory) / "code_cache" / name
    if target.is_file():
        with np.load(target, allow_pickle=False) as z:
            meta = {k: z[k] for k in z.files}
        _check(
            {k: (v.item() if v.ndim == 0 else v) for k, v in meta.items() if k not in ("codes", "captions")},
            target,
            weights_hash=weights_hash,
            data_spec=spec,
            num_clips=num_clips,
        )
        log(f"[lm] code cache: {num_clips} clips from {target}")
        return CodesSource(meta["codes"], meta["captions"]), target

    reader = SkippingSource(source)
    t0 = time.perf_counter()
    codes, captions = [], []
    for start in range(0, num_clips, batch_size):
        items = [reader[(start + i) % len(reader)] for i in range(batch_size)]
        codes.append(np.asarray(encode(np.stack([it["video"] for it in items])), np.int16))
        captions.extend(str(it.get("caption", "")) for it in items)
    codes_arr = np.concatenate(codes)[:num_clips]
    captions_arr = np.asarray(captions[:num_clips], dtype=str)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:  # a file object: savez would append ".npz" to the temporary name
            np.savez(
                f,
                codes=codes_arr,
                captions=captions_arr,
                format=np.asarray(FORMAT),
                weights_hash=np.asarray(weights_hash),
                data_spec=np.asarray(spec),
                num_clips=np.asarray(num_clips),
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    skipped = f", {reader.num_skipped} unreadable items skipped" if reader.num_skipped else ""
    log(
        f"[lm] code cache: encoded {num_clips} clips in {time.perf_counter() - t0:.0f}s into {target}{skipped}"
    )
    return CodesSource(codes_arr, captions_arr), target


def _writable(directory: Path) -> bool:
    probe = directory
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK)
