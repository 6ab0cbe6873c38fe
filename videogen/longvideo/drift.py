"""Drift of long generated videos on the built-in world, window by window, against exact ground truth.

The world renders any clip for any number of frames (bounces included), so a generated video of ``N``
frames for a world caption can be compared with the true continuation of that clip. Per clip the whole
video is tracked once with the judge's tracker (:func:`videogen.eval.judge.track_objects`, all 8 palette
colours), then cut into windows of 17 frames (consecutive windows share one frame) and scored:

* ``judge`` -- per window and object: colour found (present in >= half the frames), shape (the judge's
  template vote), size (the judge's area rule) and motion (the judge's ``classify_motion`` of the track
  against the same classification of the true track; windows where the truth itself is not one clear
  motion -- a directional object hitting a wall -- only check the rest); a window is correct when every
  object is and no other colour is clearly present. The score is the % of (clip, window) pairs correct,
  the judge's all-correct over time.
* ``persistence`` -- % of frames in which every object of the clip is present exactly once and no other
  colour object appears (identity kept: nothing vanishes, duplicates or appears); ``identity`` adds
  that each present object's shape and size class are still the true ones.
* ``bounces`` -- every wall bounce of the true trajectories (a velocity reversal) is a case; it is obeyed
  when the generated track, 3 frames before and after it, moves the true way on that axis (both
  directions, each by > 0.5 % of R) and turns within 10 % of R of the true turning point. % obeyed.
  ``spurious_reversals`` counts generated reversals (a sign flip of the 3-frame displacement on an axis,
  both legs > 2 % of R) with no true bounce within 3 frames, per object and 100 frames.
* ``position_error`` -- mean distance of the tracked centre from the true one, in units of R.
* ``fvd`` (optional, ``fvd=True``) -- FVD (videogen/eval/fvd.py, I3D) between the generated windows and the
  true windows at the same time, over the clips (16 frames of each window; needs >= 2 clips and is
  biased upwards below a few hundred: compare windows with each other, not with published numbers).

Outputs (:func:`write_report`): ``drift.json`` (every window's numbers, a summary and the issue's checks:
last windows' judge score within 5 points of the first window's, persistence >= 95 %, bounces >= 90 %) and
``drift.png`` (the metrics against time, drawn with PIL).

One command (generation + measurement): ``videogen continue --workdir runs/lm --drift --length-factor 16
--num 32 --out runs/long`` or ``python experiments/long_video.py measure ...``; ``--truth`` measures the
ground-truth renders themselves (the scorer's sanity check: 100 / 100 / 100).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from videogen.data import world
from videogen.data.captions import COLOUR_NAMES, SHAPES
from videogen.eval import fvd as fvd_lib
from videogen.eval import judge

__all__ = [
    "ClipDrift",
    "bounce_events",
    "measure_clip",
    "measure_videos",
    "plot",
    "summarize",
    "write_report",
    "truth_videos",
    "world_prompts",
]

WINDOW = 17
BOUNCE_SPAN = 3  # frames before/after a bounce that are checked
BOUNCE_POS_TOL = 0.10  # x R
MOVE_JITTER = 0.005  # x R
SPURIOUS_LEG = 0.02  # x R


@dataclasses.dataclass
class ClipDrift:
    """Per-frame and per-window results of one clip."""

    persistence: np.ndarray  # [N] bool
    identity: np.ndarray  # [N] bool
    position_error: np.ndarray  # [N] float, mean over objects (x R; NaN where an object is absent)
    windows: list[dict]  # per window: start, end, correct, objects...
    bounces: list[dict]  # per true bounce: frame, object, axis, obeyed
    spurious: int
    num_frames: int
    num_objects: int


def world_prompts(
    resolution: int,
    num: int,
    *,
    split: str = "test",
    seed: int = 0,
    num_frames: int = 17,
    max_objects: int = 2,
    min_objects: int = 1,
    caption_order: str = "drawn",
) -> list[world.ClipSpec]:
    """The clips whose captions are the prompts (the evaluation split by default), written as the LM's
    training captions were (``caption_order``)."""
    cfg = world.WorldConfig(
        resolution=resolution,
        num_frames=num_frames,
        seed=seed,
        min_objects=min_objects,
        max_objects=max_objects,
        caption_order=caption_order,
    )
    return [world.sample_clip(cfg, split, i) for i in range(num)]


def truth_videos(specs: Sequence[world.ClipSpec], num_frames: int) -> np.ndarray:
    return np.stack([world.render(s, num_frames) for s in specs])


def bounce_events(positions: np.ndarray) -> list[tuple[int, int, int]]:
    """``[(frame, object, axis)]``: frames where an object's true velocity on an axis reverses
    (``positions [N, K, 2]``); the frame is the one closest to the wall (the turning point)."""
    v = np.diff(positions, axis=0)  # [N-1, K, 2]
    out = []
    for k in range(positions.shape[1]):
        for a in range(2):
            s = np.sign(np.round(v[:, k, a], 6))
            for t in range(1, len(s)):
                if s[t] != 0 and s[t - 1] != 0 and s[t] != s[t - 1]:
                    out.append((t, k, a))
    return out


def _size_class(shape: str, area: float, resolution: int) -> str:
    small = world.shape_area(shape, world.SIZE_FRACTION["small"] * resolution)
    large = world.shape_area(shape, world.SIZE_FRACTION["large"] * resolution)
    return "small" if area < math.sqrt(small * large) else "large"


def _observe(video: np.ndarray, spec: world.ClipSpec, truth: np.ndarray, window: int) -> dict:
    """What the judge's tracker sees in a video of ``spec``: per-frame presence / identity, per-window labels,
    per true bounce whether the track obeys it, and the frames of clear reversals."""
    n, R = video.shape[0], spec.resolution
    tracks = judge.track_objects(video, COLOUR_NAMES)
    named = [o.colour for o in spec.objects]
    others = [c for c in COLOUR_NAMES if c not in named]
    present = np.stack([tracks[c].present & (tracks[c].count == 1) for c in named])  # [K, N]
    extra = np.zeros(n, bool)
    for c in others:
        extra |= tracks[c].present
    same = np.zeros((len(named), n), bool)
    err = np.full((len(named), n), np.nan)
    for k, obj in enumerate(spec.objects):
        tr = tracks[obj.colour]
        scores = np.where(np.isnan(tr.shape_scores), np.inf, tr.shape_scores)
        shape_ok = np.argmin(scores, axis=1) == SHAPES.index(obj.shape)
        size_ok = np.array([_size_class(obj.shape, a, R) == obj.size for a in tr.area])
        same[k] = present[k] & shape_ok & size_ok
        err[k] = np.where(tr.present, np.linalg.norm(tr.centre - truth[:, k], axis=-1) / R, np.nan)
    windows = []
    for s in range(0, max(n - window, 0) + 1, window - 1):
        sl = slice(s, min(s + window, n))
        labels = []
        for obj in spec.objects:
            tr = tracks[obj.colour]
            p = tr.present[sl]
            if p.mean() < 0.5:
                labels.append(None)
                continue
            shape = SHAPES[int(np.nanargmin(np.nanmean(tr.shape_scores[sl][p], axis=0)))]
            labels.append(
                (
                    shape,
                    _size_class(shape, float(np.median(tr.area[sl][p])), R),
                    judge.classify_motion(tr.centre[sl], p, R, tr.edges[sl]),
                )
            )
        windows.append(
            {
                "start": s,
                "end": sl.stop,
                "labels": labels,
                "extra": [c for c in others if tracks[c].present[sl].mean() > 0.5],
            }
        )
    d = BOUNCE_SPAN
    bounces = []
    for t, k, a in bounce_events(truth):
        if t - d < 0 or t + d >= n:
            continue
        c = tracks[spec.objects[k].colour].centre[t - d : t + d + 1, a]
        tr_ = truth[t - d : t + d + 1, k, a]
        before, after = c[d] - c[0], c[-1] - c[d]
        wall = np.nanmax(c) - tr_.max() if tr_[d] > tr_[0] else np.nanmin(c) - tr_.min()
        ok = bool(
            np.isfinite(c).all()
            and np.sign(before) == np.sign(tr_[d] - tr_[0])
            and np.sign(after) == np.sign(tr_[-1] - tr_[d])
            and min(abs(before), abs(after)) > MOVE_JITTER * R
            and abs(wall) <= BOUNCE_POS_TOL * R
        )
        bounces.append(((t, k, a), ok))
    reversals = set()
    for k, obj in enumerate(spec.objects):
        c = tracks[obj.colour].centre
        for a in range(2):
            for t in range(d, n - d):
                before, after = c[t, a] - c[t - d, a], c[t + d, a] - c[t, a]
                if (
                    np.isfinite(before)
                    and np.isfinite(after)
                    and min(abs(before), abs(after)) > SPURIOUS_LEG * R
                    and np.sign(before) != np.sign(after)
                ):
                    reversals.add((t, k, a))
    return {
        "present": present,
        "extra": extra,
        "same": same,
        "err": err,
        "windows": windows,
        "bounces": bounces,
        "reversals": reversals,
    }


def measure_clip(
    video: np.ndarray, spec: world.ClipSpec, *, window: int = WINDOW, truth_video: np.ndarray | None = None
) -> ClipDrift:
    """Scores one generated video ``[N, R, R, 3]`` of clip ``spec`` against its true continuation.

    The true continuation is rendered (or ``truth_video``) and observed with the same tracker, and the
    generated video is held to what the tracker sees there: an object occluded in the truth need not be
    visible, a window whose true motion the tracker cannot name is not checked for motion, a bounce the
    tracker does not see in the truth is not a case. So ground truth scores 100 on everything (tested).
    """
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[1] != spec.resolution or video.shape[-1] != 3:
        raise ValueError(
            f"video must be [N, {spec.resolution}, {spec.resolution}, 3] for this clip, got {video.shape}."
        )
    n = video.shape[0]
    truth = world.metadata(spec, n)["positions"][:, : len(spec.objects)].astype(np.float64)  # [N, K, 2]
    tv = world.render(spec, n) if truth_video is None else np.asarray(truth_video)[:n]
    with warnings.catch_warnings():  # all-NaN slices where an object is absent are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        gen, ref = _observe(video, spec, truth, window), _observe(tv, spec, truth, window)
    persistence = (gen["present"] | ~ref["present"]).all(0) & (~gen["extra"] | ref["extra"])
    identity = persistence & (gen["same"] | ~ref["same"]).all(0)
    windows = []
    for g, r in zip(gen["windows"], ref["windows"]):
        objs = []
        for obj, gl, rl in zip(spec.objects, g["labels"], r["labels"]):
            if rl is None:  # not visible in the truth either
                ok = True
            else:
                ok = gl is not None and gl[:2] == rl[:2] and (rl[2] is None or gl[2] == rl[2])
            objs.append({"colour": obj.colour, "seen": gl, "truth": rl, "correct": bool(ok)})
        extra = [c for c in g["extra"] if c not in r["extra"]]
        windows.append(
            {
                "start": g["start"],
                "end": g["end"],
                "correct": all(o["correct"] for o in objs) and not extra,
                "extra": extra,
                "objects": objs,
            }
        )
    seen_truth = {ev for ev, ok in ref["bounces"] if ok}
    bounces = [
        {"frame": int(t), "object": int(k), "axis": "xy"[a], "obeyed": ok}
        for (t, k, a), ok in gen["bounces"]
        if (t, k, a) in seen_truth
    ]
    d = BOUNCE_SPAN
    spurious = sum(
        1
        for (t, k, a) in gen["reversals"]
        if not any((u, k, a) in ref["reversals"] for u in range(t - d, t + d + 1))
    )
    pos_err = np.array([np.nanmean(col) if np.isfinite(col).any() else np.nan for col in gen["err"].T])
    return ClipDrift(persistence, identity, pos_err, windows, bounces, spurious, n, len(spec.objects))


def _pct(x) -> float | None:
    x = np.asarray(x, np.float64)
    return None if x.size == 0 else float(100.0 * x.mean())


def measure_videos(
    videos: Sequence[np.ndarray],
    specs: Sequence[world.ClipSpec],
    *,
    window: int = WINDOW,
    fvd: bool = False,
    fvd_batch_size: int = 8,
) -> dict:
    """Per-window figures over clips (see the module docstring) -> a JSON-ready dict."""
    if len(videos) != len(specs):
        raise ValueError(f"{len(videos)} videos for {len(specs)} clips.")
    if not videos:
        raise ValueError("no videos to measure.")
    clips = [measure_clip(v, s, window=window) for v, s in zip(videos, specs)]
    n = min(c.num_frames for c in clips)
    rows = []
    for w, ref in enumerate(clips[0].windows):
        s, e = ref["start"], ref["end"]
        if e > n:
            break
        events = [b for c in clips for b in c.bounces if s <= b["frame"] < e]
        rows.append(
            {
                "window": w,
                "start": s,
                "end": e,
                "judge": _pct([c.windows[w]["correct"] for c in clips]),
                "persistence": _pct(np.concatenate([c.persistence[s:e] for c in clips])),
                "identity": _pct(np.concatenate([c.identity[s:e] for c in clips])),
                "position_error": float(np.nanmean(np.concatenate([c.position_error[s:e] for c in clips])))
                if any(np.isfinite(c.position_error[s:e]).any() for c in clips)
                else None,
                "bounce_cases": len(events),
                "bounces": _pct([b["obeyed"] for b in events]),
            }
        )
    if fvd and len(videos) >= 2:
        truth = truth_videos(specs, n)
        for r in rows:
            s, e = r["start"], r["start"] + 16
            if e <= n:
                gen = np.stack([np.asarray(v)[s:e] for v in videos])
                r["fvd"] = fvd_lib.fvd_from_videos(gen, truth[:, s:e], batch_size=fvd_batch_size)
    all_bounces = [b["obeyed"] for c in clips for b in c.bounces]
    frames_objects = sum(c.num_frames * c.num_objects for c in clips)
    result = {
        "num_clips": len(clips),
        "num_frames": n,
        "window": window,
        "windows": rows,
        "overall": {
            "persistence": _pct(np.concatenate([c.persistence[:n] for c in clips])),
            "identity": _pct(np.concatenate([c.identity[:n] for c in clips])),
            "bounce_cases": len(all_bounces),
            "bounces": _pct(all_bounces),
            "spurious_reversal_frames_per_100_object_frames": 100.0
            * sum(c.spurious for c in clips)
            / max(frames_objects, 1),
        },
        "clips": [
            {
                "windows_correct": [w["correct"] for w in c.windows],
                "bounces": c.bounces,
                "spurious_reversals": c.spurious,
            }
            for c in clips
        ],
    }
    result["summary"] = summarize(result)
    return result


def summarize(result: dict, *, last: int = 2) -> dict:
    """The issue's checks: last ``last`` windows' judge score within 5 points of the first window's,
    persistence >= 95 %, bounces obeyed >= 90 % (None where there is nothing to check)."""
    rows = result["windows"]
    first = rows[0]["judge"] if rows else None
    tail = [r["judge"] for r in rows[-last:]] if rows else []
    last_score = float(np.mean(tail)) if tail else None
    ov = result["overall"]
    return {
        "first_window_judge": first,
        "last_windows_judge": last_score,
        "judge_drop": None if first is None else first - last_score,
        "checks": {
            "judge_within_5_points": None if first is None else bool(first - last_score <= 5.0),
            "persistence_ge_95": None if ov["persistence"] is None else bool(ov["persistence"] >= 95.0),
            "bounces_ge_90": None if ov["bounces"] is None else bool(ov["bounces"] >= 90.0),
        },
    }


# ------------------------------------------------------------------------------------------------ plot


def plot(result: dict, path: str | Path, *, title: str = "") -> Path:
    """PNG of the per-window metrics against the window's start frame (PIL; no matplotlib needed)."""
    rows = result["windows"]
    series = [
        ("judge", "judge all-correct %", (220, 60, 60)),
        ("persistence", "persistence %", (40, 140, 60)),
        ("identity", "identity %", (40, 90, 230)),
        ("bounces", "bounces obeyed %", (235, 150, 30)),
    ]
    panels = [("percent", [s for s in series if any(r.get(s[0]) is not None for r in rows)], (0.0, 100.0))]
    if any(r.get("position_error") is not None for r in rows):
        panels.append(
            ("position error (x R)", [("position_error", "position error / R", (120, 60, 200))], None)
        )
    if any(r.get("fvd") is not None for r in rows):
        panels.append(("FVD", [("fvd", "FVD", (60, 60, 60))], None))
    W, ph, ml, mr, mt, mb = 760, 260, 70, 200, 40, 40
    img = Image.new("RGB", (W, mt + len(panels) * (ph + mb) + 10), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.text(
        (ml, 10),
        title or f"drift over {result['num_frames']} frames, {result['num_clips']} clips",
        fill="black",
        font=font,
    )
    xs = [r["start"] for r in rows]
    x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
    x1 = x1 if x1 > x0 else x0 + 1
    for i, (name, ss, yr) in enumerate(panels):
        top = mt + i * (ph + mb)
        left, right, bottom = ml, W - mr, top + ph
        vals = [r.get(k) for k, _, _ in ss for r in rows if r.get(k) is not None]
        lo, hi = yr if yr else (0.0, max(vals) * 1.1 if vals and max(vals) > 0 else 1.0)
        d.rectangle([left, top, right, bottom], outline="black")
        for f in np.linspace(0, 1, 5):
            y = bottom - f * (bottom - top)
            d.line([left - 4, y, left, y], fill="black")
            d.text((5, y - 6), f"{lo + f * (hi - lo):.3g}", fill="black", font=font)
            if yr:
                d.line([left, y, right, y], fill=(225, 225, 225))
        for xv in xs:
            x = left + (xv - x0) / (x1 - x0) * (right - left)
            d.line([x, bottom, x, bottom + 4], fill="black")
        d.text((left, bottom + 8), f"window start frame ({x0} .. {x1})", fill="black", font=font)
        d.text((left + 4, top + 4), name, fill="black", font=font)
        for j, (key, label, colour) in enumerate(ss):
            pts = [
                (
                    left + (r["start"] - x0) / (x1 - x0) * (right - left),
                    bottom - (r[key] - lo) / (hi - lo or 1) * (bottom - top),
                )
                for r in rows
                if r.get(key) is not None
            ]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            for x, y in pts:
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            d.line([right + 10, top + 12 + 16 * j, right + 30, top + 12 + 16 * j], fill=colour, width=3)
            d.text((right + 35, top + 6 + 16 * j), label, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_report(result: dict, out_dir: str | Path, *, title: str = "") -> tuple[Path, Path]:
    """``drift.json`` and ``drift.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = out / "drift.json"
    js.write_text(json.dumps(result, indent=1, default=lambda x: x.item() if hasattr(x, "item") else str(x)))
    return js, plot(result, out / "drift.png", title=title)
