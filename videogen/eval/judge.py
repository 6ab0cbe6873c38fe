"""The judge: did a video of the built-in world do what its caption says?

It knows the world's palette and geometry, so it needs no learned model:
  1. every pixel is assigned to the palette colour it is a scaled copy of (anti-aliased edges are
     darker copies), with that scale as its coverage;
  2. per colour named in the caption and per frame: presence, coverage-weighted centroid and area;
  3. shape: the caption-free template (circle/square/triangle) of the same area and centroid that best
     matches the coverage mask, voted over frames; size: the area against the shape's small/large areas;
  4. motion from the centroid track, strictly (:func:`classify_motion`): "still" stays within a small
     radius; a direction is a straight line at a steady speed over the whole clip (a line fit with small
     residuals, every third of the clip moving the same way at a similar speed, never near standstill);
     a bounce reverses only at the canvas border (the object's edge near the wall), at a steady speed
     between reversals, with no drift along the other axis. The earlier lenient rule (net displacement,
     a reversal anywhere) is kept as :func:`classify_motion_lenient` to compare old and new figures.

`judge_video` returns a `Verdict` per clip; `track_objects` gives the per-frame tracks that long-video
scoring uses (objects vanishing, identity kept, bounces at the border).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from videogen.data import world
from videogen.data.captions import COLOUR_NAMES, COLOURS, DIRECTIONS, SHAPES, parse_caption

_PALETTE = np.asarray([COLOURS[c] for c in COLOUR_NAMES], np.float32)  # [8, 3]
_PALETTE_SQ = np.sum(_PALETTE**2, axis=-1)  # [8]
# Pixels at or above this luminance are part of an object (the dimmest palette colour is ~91).
LIT_LUMA = 20.0
# A pixel this close (RGB distance) to a palette colour is that colour at full coverage.
CORE_DISTANCE = 60.0
# Lit pixels farther than this (pixels) from any core pixel are noise, not part of an object.
CORE_REACH = 3
# An object is present in a frame if its area exceeds this fraction of the smallest object's area.
PRESENCE_FRACTION = 0.3

# Motion, in units of R (the canvas side) or R per frame. The world's slowest directional object moves
# 0.02 R per frame and its slowest bouncing one 0.04 R per frame; sizes are 0.10 / 0.18 R.
STILL_RADIUS = 0.04  # a still object's centre stays this close to its median position
MIN_SPEED = 0.01  # a directional object's fitted speed is at least this (half the slowest in the world)
MIN_BOUNCE_SPEED = 0.02  # each leg of a bounce moves at least this fast
LINE_RESIDUAL = 0.03  # RMS distance of a track (or a bounce leg) from its straight-line fit
SEGMENT_SPEED = (0.5, 2.0)  # each third of a directional track: speed along the fit / fit speed
SEGMENT_ANGLE = 45.0  # degrees a third's velocity may turn from the whole track's
DIRECTION_TOLERANCE = 22.5  # degrees from the named direction
REVERSAL = 0.03  # a turn counts once the track has come back this far from its extreme
LEG_SPEED_RATIO = 1.6  # the legs of a bounce: fastest / slowest
WALL_GAP = 0.04  # at a reversal the object's edge is this close to the wall, plus half a frame's travel
OFF_AXIS_SPAN = 0.04  # a bounce's extent along the other axis


@dataclasses.dataclass
class Track:
    """Per-frame observation of one colour: present [T], centre [T, 2] (x, y; NaN if absent), area [T]."""

    colour: str
    present: np.ndarray
    centre: np.ndarray
    area: np.ndarray
    shape_scores: np.ndarray  # [T, 3] template error per shape (lower is better; NaN if absent)
    count: np.ndarray  # [T] object-sized blobs of this colour (1 when all is well)
    # [T, 4] (left, right, top, bottom) pixel edges of the blob's pixels of coverage >= 0.5 (NaN if absent)
    edges: np.ndarray | None = None


@dataclasses.dataclass
class ObjectVerdict:
    colour: str
    shape: str
    size: str | None
    motion: str
    colour_found: bool
    shape_ok: bool
    size_ok: bool
    motion_ok: bool
    detected_shape: str | None
    detected_size: str | None
    detected_motion: str | None
    # the earlier lenient motion rule's reading (classify_motion_lenient), to compare figures
    detected_motion_lenient: str | None = None

    @property
    def correct(self) -> bool:
        return self.colour_found and self.shape_ok and self.size_ok and self.motion_ok

    @property
    def correct_lenient(self) -> bool:
        return (
            self.colour_found
            and self.shape_ok
            and self.size_ok
            and self.detected_motion_lenient == self.motion
        )


@dataclasses.dataclass
class Verdict:
    caption: str
    objects: list[ObjectVerdict]
    extra_colours: list[str]  # palette colours clearly present that the caption does not name
    tracks: dict[str, Track]
    # named colours drawn as two or more object-sized blobs most of the time (the caption names one object)
    duplicated: list[str] = dataclasses.field(default_factory=list)

    @property
    def all_correct(self) -> bool:
        return all(o.correct for o in self.objects) and not self.extra_colours and not self.duplicated

    @property
    def all_correct_lenient(self) -> bool:
        return all(o.correct_lenient for o in self.objects) and not self.extra_colours and not self.duplicated

    def summary(self) -> dict:
        return {
            "caption": self.caption,
            "all_correct": self.all_correct,
            "extra_colours": self.extra_colours,
            "duplicated": self.duplicated,
            "objects": [dict(dataclasses.asdict(o), correct=o.correct) for o in self.objects],
        }


def _check_video(video: np.ndarray) -> np.ndarray:
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[1] != video.shape[2]:
        raise ValueError(f"judge: video must be [T, R, R, 3] (square frames, RGB); got shape {video.shape}.")
    if video.dtype != np.uint8:
        raise TypeError(
            f"judge: video must be uint8 RGB, got {video.dtype}; convert floats in [0, 1] with "
            "(x * 255).round().astype(np.uint8)."
        )
    return video


_LUMA = np.asarray([0.299, 0.587, 0.114], np.float32)
_PALETTE_LUMA = _PALETTE @ _LUMA  # [8]


def segment(video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Assigns every lit pixel to an object colour.

    Returns labels [T, H, W] (palette colour index, -1 for background) and coverage [T, H, W] in [0, 1].

    Why not per-pixel colour: codecs and tokenizers keep luminance sharp but smear chroma (JPEG's
    4:2:0), so an object's edge pixels lose their hue, and blur mixes the edges of nearby objects.
    So colour is read only where it is unambiguous — "core" pixels within CORE_DISTANCE of a palette
    colour at full strength — and every other lit pixel takes the colour of the nearest core pixel in
    its frame (within CORE_REACH pixels); its coverage is its luminance over that colour's.
    """
    x = video.astype(np.float32)
    luma = x @ _LUMA  # [T, H, W]
    lit = luma >= LIT_LUMA
    # Colour distances only for lit pixels: the black background is most of every frame.
    lit_rgb = x[lit]  # [N, 3]
    distance = np.sqrt(((lit_rgb[:, None, :] - _PALETTE) ** 2).sum(-1))  # [N, 8]
    nearest_lit = np.argmin(distance, axis=-1)
    core_lit = distance[np.arange(len(lit_rgb)), nearest_lit] <= CORE_DISTANCE  # [N]
    if not core_lit.any():
        return np.full(luma.shape, -1, np.int64), np.zeros(luma.shape, np.float32)
    # Grow the core labels into the lit fringe one pixel (8-neighbourhood, within a frame) per step,
    # as uint8 with 0 for "none yet" (palette index + 1), so the max filter runs on 1 byte per pixel.
    grown = np.zeros(luma.shape, np.uint8)
    grown[lit] = np.where(core_lit, nearest_lit + 1, 0)
    for _ in range(CORE_REACH):
        spread = ndimage.grey_dilation(grown, size=(1, 3, 3))
        grown = np.where((grown == 0) & lit, spread, grown)
    labels = grown.astype(np.int64) - 1  # unlit pixels never grow, so they stay -1
    labelled = grown > 0
    cover = np.zeros(luma.shape, np.float32)
    cover[labelled] = np.clip(luma[labelled] / _PALETTE_LUMA[labels[labelled]], 0.0, 1.0)
    return labels, cover


def _template_error(
    blob: np.ndarray,
    box: tuple[slice, slice],
    cover: np.ndarray,
    cx: float,
    cy: float,
    area: float,
    shape: str,
) -> float:
    """Mean absolute difference between a blob's coverage and the equal-area shape at (cx, cy), / area.

    `blob` [H, W] marks the blob's pixels, `box` is their bounding box and `cover` [H, W] the frame's
    coverage; only the box around the blob and its template is compared, since both are zero elsewhere.
    """
    r = math.sqrt(area / world.shape_area(shape, 1.0))
    reach = world.bounding_radius(shape, r) + 2
    H, W = cover.shape
    x0 = int(max(0, min(box[1].start, cx - reach)))
    x1 = int(min(W, max(box[1].stop, cx + reach + 1)))
    y0 = int(max(0, min(box[0].start, cy - reach)))
    y1 = int(min(H, max(box[0].stop, cy + reach + 1)))
    mask = np.where(blob[y0:y1, x0:x1], cover[y0:y1, x0:x1], 0.0)
    dx = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    template = world.coverage(shape, r, dx[None, :], dy)
    return float(np.abs(mask - template).sum() / area)


def track_objects(video: np.ndarray, colours, *, segmentation=None) -> dict[str, Track]:
    """Per-frame presence, centre, area, blob count and shape evidence for each named colour.

    Where a colour has several blobs in a frame, the largest is tracked and `count` says how many
    object-sized ones there were (a duplicate object in a generated video).
    """
    video = _check_video(video)
    T, R = video.shape[0], video.shape[1]
    labels, cover = segment(video) if segmentation is None else segmentation
    per_frame = np.zeros((3, 3, 3), bool)
    per_frame[1] = ndimage.generate_binary_structure(2, 2)  # 8-connected within a frame, never across time
    min_area = min_object_area(R)
    ys, xs = np.mgrid[0:R, 0:R].astype(np.float32) + 0.5
    tracks = {}
    for colour in colours:
        k = COLOUR_NAMES.index(colour)
        present = np.zeros(T, bool)
        count = np.zeros(T, np.int32)
        area = np.zeros(T, np.float32)
        centre = np.full((T, 2), np.nan, np.float32)
        scores = np.full((T, len(SHAPES)), np.nan, np.float32)
        edges = np.full((T, 4), np.nan, np.float32)
        mine = labels == k
        if not mine.any():
            tracks[colour] = Track(colour, present, centre, area, scores, count, edges)
            continue
        components, num = ndimage.label(mine, structure=per_frame)
        # Components never span frames, so one pass over the clip gives every blob's frame, box and area.
        boxes = ndimage.find_objects(components)  # [num] (t, y, x) slices
        blob_areas = np.asarray(ndimage.sum_labels(cover, components, np.arange(1, num + 1)), np.float64)
        frame_of = np.asarray([b[0].start for b in boxes])
        for t in np.unique(frame_of):
            ids = np.flatnonzero(frame_of == t)  # blob indices in this frame (label = index + 1)
            count[t] = int((blob_areas[ids] >= min_area).sum())
            best = int(ids[np.argmax(blob_areas[ids])])
            if blob_areas[best] < min_area:
                continue
            box = boxes[best][1:]
            blob = components[t] == best + 1
            crop = np.where(blob[box], cover[t][box], 0.0)
            a = float(blob_areas[best])
            present[t], area[t] = True, a
            centre[t] = ((crop * xs[box]).sum() / a, (crop * ys[box]).sum() / a)
            for s, shape in enumerate(SHAPES):
                scores[t, s] = _template_error(blob, box, cover[t], centre[t, 0], centre[t, 1], a, shape)
            solid_y, solid_x = np.nonzero(crop >= 0.5)
            if len(solid_x):
                edges[t] = (
                    box[1].start + solid_x.min(),
                    box[1].start + solid_x.max() + 1,
                    box[0].start + solid_y.min(),
                    box[0].start + solid_y.max() + 1,
                )
        tracks[colour] = Track(colour, present, centre, area, scores, count, edges)
    return tracks


def min_object_area(resolution: int) -> float:
    """Blobs smaller than this (pixels of full coverage) are noise, not objects."""
    return PRESENCE_FRACTION * min(
        world.shape_area(s, world.SIZE_FRACTION["small"] * resolution) for s in SHAPES
    )


def _line_fit(t: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares line through ``pts [n, d]`` at times ``t [n]``: (velocity [d], RMS residual)."""
    design = np.stack([np.ones(len(t)), t.astype(np.float64)], axis=1)
    coef, *_ = np.linalg.lstsq(design, pts.astype(np.float64), rcond=None)
    residual = pts - design @ coef
    rms = float(np.sqrt(np.mean(np.sum(residual.reshape(len(t), -1) ** 2, axis=-1))))
    return coef[1], rms


def _angle_between(u: np.ndarray, v: np.ndarray) -> float:
    return abs(math.degrees(math.remainder(math.atan2(u[1], u[0]) - math.atan2(v[1], v[0]), 2 * math.pi)))


def _direction(t: np.ndarray, pts: np.ndarray, R: int) -> str | None:
    """A named direction if the track is a straight line at a steady speed over the whole clip."""
    velocity, rms = _line_fit(t, pts)
    speed = float(np.hypot(*velocity))
    if speed < MIN_SPEED * R or rms > LINE_RESIDUAL * R:
        return None
    # Every third of the clip moves the same way at a similar speed: no stop, no start, no turn.
    for part in np.array_split(np.arange(len(t)), 3):
        if len(part) < 2:
            continue
        v, _ = _line_fit(t[part], pts[part])
        along = float(v @ velocity) / speed
        if not SEGMENT_SPEED[0] * speed <= along <= SEGMENT_SPEED[1] * speed:
            return None
        if _angle_between(v, velocity) > SEGMENT_ANGLE:
            return None
    best = min(DIRECTIONS, key=lambda d: _angle_between(velocity, np.asarray(DIRECTIONS[d], np.float64)))
    if _angle_between(velocity, np.asarray(DIRECTIONS[best], np.float64)) > DIRECTION_TOLERANCE:
        return None
    return best


def _turning_points(p: np.ndarray, threshold: float) -> list[int]:
    """Indices of the extremes of a 1-D track between which it moves more than ``threshold`` (a zigzag
    filter: jitter smaller than the threshold never makes a turn)."""
    turns, heading, high, low = [], 0, 0, 0  # heading: +1 rising, -1 falling, 0 not yet moving
    for i in range(1, len(p)):
        if heading == 0:
            high = i if p[i] > p[high] else high
            low = i if p[i] < p[low] else low
            if p[high] - p[low] > threshold:
                heading = 1 if high > low else -1
                extreme = high if heading == 1 else low
            continue
        if heading * (p[i] - p[extreme]) >= 0:
            extreme = i  # further the same way
        elif abs(p[i] - p[extreme]) > threshold:
            turns.append(extreme)
            heading, extreme = -heading, i
    return turns


def _bounce(t: np.ndarray, pts: np.ndarray, edges: np.ndarray | None, R: int) -> str | None:
    """'bounce-horizontal' / 'bounce-vertical' if the track reverses only at the canvas border, at a steady
    speed between reversals, with no drift along the other axis; else None."""
    for axis, name in ((0, "bounce-horizontal"), (1, "bounce-vertical")):
        other = pts[:, 1 - axis]
        if other.max() - other.min() >= OFF_AXIS_SPAN * R:
            continue
        p = pts[:, axis]
        turns = _turning_points(p, REVERSAL * R)
        if not turns:
            continue
        bounds = [0] + turns + [len(p) - 1]
        speeds = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b - a < 2:
                continue  # a leg of one step: its speed is the turn's, not the leg's
            v, rms = _line_fit(t[a : b + 1], p[a : b + 1, None])
            if rms > LINE_RESIDUAL * R:
                return None
            speeds.append(abs(float(v[0])))
        if not speeds or min(speeds) < MIN_BOUNCE_SPEED * R or max(speeds) > LEG_SPEED_RATIO * min(speeds):
            return None
        if edges is None:
            return None
        # At each turn the object's leading edge is at the wall (within half a frame's travel).
        low, high = (0, 1) if axis == 0 else (2, 3)
        tolerance = WALL_GAP * R + 0.5 * max(speeds)
        for i in turns:
            rising_before = p[i] > p[max(i - 1, 0)] if i > 0 else p[i] > p[i + 1]
            gap = R - edges[i, high] if rising_before else edges[i, low]
            if not np.isfinite(gap) or gap > tolerance:
                return None
        return name
    return None


def classify_motion(
    centre: np.ndarray, present: np.ndarray, resolution: int, edges: np.ndarray | None = None
) -> str | None:
    """'still', a direction, 'bounce-horizontal' / 'bounce-vertical', or None (none of them cleanly).

    ``centre [T, 2]`` and ``present [T]`` as in :class:`Track`; ``edges [T, 4]`` (the track's blob edges)
    places a reversal at a wall: without it no track is a bounce. Thresholds are the module constants.
    """
    t = np.flatnonzero(present)
    if len(t) < 3:
        return None
    pts = np.asarray(centre, np.float64)[t]
    R = resolution
    if np.linalg.norm(pts - np.median(pts, axis=0), axis=-1).max() <= STILL_RADIUS * R:
        return "still"
    bounce = _bounce(t, pts, None if edges is None else np.asarray(edges, np.float64)[t], R)
    return bounce or _direction(t, pts, R)


def classify_motion_lenient(centre: np.ndarray, present: np.ndarray, resolution: int) -> str | None:
    """The judge's motion rule before 2026-12-07: net displacement, a reversal anywhere. Kept to compare
    figures; an object that moves a few frames and stops passes a direction, a mid-canvas turn a bounce."""
    pts = centre[present]
    if len(pts) < 2:
        return None
    span = pts.max(0) - pts.min(0)  # [2]
    still_limit = 0.04 * resolution
    if span.max() < still_limit:
        return "still"
    velocity = np.diff(pts, axis=0)  # [n-1, 2]
    # A reversal: clearly positive and clearly negative steps along one axis (each above the jitter).
    jitter = 0.005 * resolution
    reverses = [
        (velocity[:, a] > jitter).any() and (velocity[:, a] < -jitter).any() and span[a] >= still_limit
        for a in (0, 1)
    ]
    if reverses[0] and not reverses[1] and span[1] < still_limit:
        return "bounce-horizontal"
    if reverses[1] and not reverses[0] and span[0] < still_limit:
        return "bounce-vertical"
    if any(reverses):
        return None
    net = pts[-1] - pts[0]
    angle = math.atan2(net[1], net[0])
    best = min(
        DIRECTIONS,
        key=lambda d: abs(
            math.remainder(angle - math.atan2(DIRECTIONS[d][1], DIRECTIONS[d][0]), 2 * math.pi)
        ),
    )
    return best


def judge_video(video: np.ndarray, caption: str, *, lenient: bool = False) -> Verdict:
    """Scores one clip against its caption (raises CaptionParseError on captions outside the grammar).

    ``lenient=True`` reads motion with the earlier rule (:func:`classify_motion_lenient`), for comparisons."""
    video = _check_video(video)
    R = video.shape[1]
    phrases = parse_caption(caption)
    tracks = track_objects(video, COLOUR_NAMES)
    named = {p.colour for p in phrases}
    # An unnamed colour counts as an extra object only if it is present, object-sized, most of the time.
    extra = [c for c, tr in tracks.items() if c not in named and tr.present.mean() > 0.5]
    verdicts = []
    for p in phrases:
        tr = tracks[p.colour]
        found = bool(tr.present.mean() >= 0.5)
        shape = size = motion = loose = None
        if found:
            shape = SHAPES[int(np.nanargmin(np.nanmean(tr.shape_scores[tr.present], axis=0)))]
            area = float(np.median(tr.area[tr.present]))
            small = world.shape_area(shape, world.SIZE_FRACTION["small"] * R)
            large = world.shape_area(shape, world.SIZE_FRACTION["large"] * R)
            size = "small" if area < math.sqrt(small * large) else "large"
            strict, loose = (
                classify_motion(tr.centre, tr.present, R, tr.edges),
                classify_motion_lenient(tr.centre, tr.present, R),
            )
            motion = loose if lenient else strict
        verdicts.append(
            ObjectVerdict(
                colour=p.colour,
                shape=p.shape,
                size=p.size,
                motion=p.motion,
                colour_found=found,
                shape_ok=shape == p.shape,
                size_ok=p.size is None or size == p.size,
                motion_ok=motion == p.motion,
                detected_shape=shape,
                detected_size=size,
                detected_motion=motion,
                detected_motion_lenient=loose,
            )
        )
    # The world gives each object its own colour, so a named colour seen as several objects is a duplicate.
    duplicated = [
        c
        for c in sorted(named)
        if tracks[c].present.any() and (tracks[c].count[tracks[c].present] >= 2).mean() > 0.5
    ]
    return Verdict(
        caption=caption,
        objects=verdicts,
        extra_colours=extra,
        tracks={c: tracks[c] for c in named},
        duplicated=duplicated,
    )


def score(videos, captions, *, lenient: bool = False) -> dict:
    """Aggregate over clips: fraction fully correct and per-attribute accuracy."""
    return summary([judge_video(v, c, lenient=lenient) for v, c in zip(videos, captions)])


def summary(verdicts: list) -> dict:
    """:func:`score`'s aggregate of verdicts already made (e.g. batch by batch over a dataset)."""
    objs = [o for v in verdicts for o in v.objects]
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    out = {
        "num_clips": len(verdicts),
        "all_correct": mean([v.all_correct for v in verdicts]),
        "colour": mean([o.colour_found for o in objs]),
        "shape": mean([o.shape_ok for o in objs if o.colour_found]),
        "size": mean([o.size_ok for o in objs if o.colour_found]),
        "motion": mean([o.motion_ok for o in objs if o.colour_found]),
        "all_correct_lenient": mean([v.all_correct_lenient for v in verdicts]),
    }
    # Split by how many objects the caption names: a model can draw one object well and bind none of
    # two (every attribute above averages over both kinds of prompt and hides that).
    by_count: dict[int, list[bool]] = {}
    for v in verdicts:
        by_count.setdefault(len(v.objects), []).append(v.all_correct)
    for n, oks in sorted(by_count.items()):
        suffix = "1_object" if n == 1 else f"{n}_objects"
        out[f"all_correct_{suffix}"] = mean(oks)
        out[f"num_clips_{suffix}"] = len(oks)
    out["verdicts"] = verdicts
    return out
