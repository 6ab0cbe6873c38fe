"""The kind of damage a tokenizer does to a clip, to check that the judge survives it.

Each function maps uint8 [T, H, W, 3] → uint8 [T, H, W, 3] and is deterministic given its rng.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def blur(video: np.ndarray, sigma: float = 0.8) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(sigma))) for f in video])


def noise(video: np.ndarray, rng: np.random.Generator, std: float = 8.0) -> np.ndarray:
    return (
        np.clip(video.astype(np.float32) + rng.normal(0, std, video.shape), 0, 255).round().astype(np.uint8)
    )


def jpeg(video: np.ndarray, quality: int = 40) -> np.ndarray:
    """8×8 block artefacts and chroma subsampling, through a real JPEG round trip per frame."""
    out = []
    for frame in video:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(out)


def colour_shift(video: np.ndarray, rng: np.random.Generator, max_shift: float = 12.0) -> np.ndarray:
    """A constant per-channel offset on non-black pixels and a slight per-channel gain."""
    offset = rng.uniform(-max_shift, max_shift, 3).astype(np.float32)
    gain = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    x = video.astype(np.float32)
    lit = (x.max(-1, keepdims=True) > 0).astype(np.float32)
    return np.clip(x * gain + offset * lit, 0, 255).round().astype(np.uint8)


def tokenizer_like(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All four at once at moderate strength: roughly what a decent tokenizer's reconstruction looks like."""
    return jpeg(noise(colour_shift(blur(video, 0.7), rng, 8.0), rng, 5.0), quality=50)


KINDS = {
    "blur": lambda v, rng: blur(v),
    "noise": lambda v, rng: noise(v, rng),
    "jpeg": lambda v, rng: jpeg(v),
    "colour_shift": lambda v, rng: colour_shift(v, rng),
    "all": tokenizer_like,
}
