"""The sample folders `videogen sample`, `videogen continue` and `make demo` write: each clip as mp4, GIF and .npy
(uint8 ``[T, H, W, 3]``) plus one contact sheet, and the judge's verdicts (judge.json) when the prompts are
captions of the built-in world."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from videogen.data import video_io
from videogen.data.captions import CaptionParseError, parse_caption
from videogen.eval import judge

__all__ = ["judge_samples", "write_samples"]


def _slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "unconditional"


def write_samples(
    videos: np.ndarray, prompts: list[str], out_dir: str | Path, *, fps: float = 8
) -> list[Path]:
    """Writes sample_{i}_{slug}.{mp4,gif,npy} and contact_sheet.png; returns the mp4 paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (video, prompt) in enumerate(zip(videos, prompts)):
        stem = out / f"sample_{i:02d}_{_slug(prompt or '')}"
        paths.append(video_io.write_mp4(stem.with_suffix(".mp4"), video, fps=fps))
        video_io.write_gif(stem.with_suffix(".gif"), video, fps=fps)
        video_io.write_npy(stem.with_suffix(".npy"), video)
    video_io.contact_sheet(
        list(videos), [p or "(unconditional)" for p in prompts], path=out / "contact_sheet.png"
    )
    return paths


def judge_samples(videos, prompts, out_dir: str | Path) -> dict | None:
    """The judge's score when every prompt is a caption of the built-in world, else None."""
    try:
        for p in prompts:
            parse_caption(p)
    except CaptionParseError:
        return None
    result = judge.score(list(videos), list(prompts))
    verdicts = result.pop("verdicts")
    result["clips"] = [v.summary() for v in verdicts]
    Path(out_dir, "judge.json").write_text(json.dumps(result, indent=2))
    return result
