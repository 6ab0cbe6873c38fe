"""The built-in world: procedural, captioned, exactly verifiable videos of moving shapes.

Every clip is a pure function of (seed, split, index): objects (colour, shape, size, motion) are drawn
from a numpy Generator seeded with that triple, placed so that the caption is true for the first
`num_frames` frames (directional clips never touch a wall, bouncing clips bounce at least once,
objects never overlap), and rendered anti-aliased on a black canvas. The physics (constant velocity,
elastic reflection at the canvas border) is closed-form, so a clip can be rendered for any number of
frames: that is the ground truth for long-video continuation.

Geometry, in pixels of an R×R canvas, for an object of nominal radius r = size_fraction·R:
  circle: radius r; square: half-side r·√π/2 (the circle's area); triangle: upright equilateral with
  circumradius 1.4·r, centred on its centroid. An object's position is its centre (centroid).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from videogen.data import captions as captions_lib
from videogen.data.captions import COLOUR_NAMES, COLOURS, DIRECTIONS, MOTIONS, SHAPES, SIZES, ObjectPhrase

MAX_OBJECTS = 3
SPLITS: tuple[str, ...] = ("train", "test", "heldout")
SIZE_FRACTION = {"small": 0.10, "large": 0.18}
SQUARE_HALF_SIDE = math.sqrt(math.pi) / 2  # × r: same area as the circle
TRIANGLE_CIRCUMRADIUS = 1.4  # × r
# Speeds as fractions of R per frame.
DIRECTION_SPEED = (0.02, 0.035)
BOUNCE_SPEED = (0.04, 0.06)
# Bouncing clips hit the wall at least this many frames after the start and before the end.
BOUNCE_MARGIN_FRAMES = 3
# Gap kept between objects' bounding circles, as a fraction of R, so blur does not mix them.
OBJECT_GAP = 0.05

# Attribute combinations that the train (and test) splits never contain and every heldout clip contains.
DEFAULT_HELD_OUT: tuple[tuple[tuple[str, str], ...], ...] = (
    (("colour", "orange"), ("shape", "square")),
    (("colour", "cyan"), ("shape", "circle")),
    (("shape", "triangle"), ("motion", "bounce-vertical")),
)
_ATTRIBUTE_VALUES = {"colour": COLOUR_NAMES, "shape": SHAPES, "size": SIZES, "motion": MOTIONS}


CAPTION_ORDERS = ("drawn", "left_to_right")


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """What the world renders. Every field can be set from the command line (`key=value`)."""

    resolution: int = 64  # R: canvas R×R, a multiple of 8
    num_frames: int = 17  # T: clip length the caption describes
    min_objects: int = 1
    max_objects: int = 2  # up to MAX_OBJECTS
    # Relative weights of min_objects..max_objects objects per clip. () = a uniform draw per placement try,
    # and since crowded canvases fail placement more often, fewer objects than uniform (a third of 32-px
    # clips have two). Given, the count is drawn once per clip and kept through the retries, so the mix is
    # exact: (1, 2) -> two thirds two-object clips. A training choice: eval sets keep the natural mix.
    object_count_weights: tuple[float, ...] = ()
    # Order of the objects' phrases in the caption: 'drawn' (the order they were placed in: unrelated to
    # where they are) or 'left_to_right' (by x at frame 0), which ties each phrase to a place on the canvas.
    caption_order: str = "drawn"
    seed: int = 0
    held_out: tuple[tuple[tuple[str, str], ...], ...] = DEFAULT_HELD_OUT

    def __post_init__(self):
        if self.resolution % 8 or self.resolution < 16:
            raise ValueError(
                f"WorldConfig.resolution={self.resolution}: must be a multiple of 8 and >= 16 "
                "(e.g. 32, 64, 128, 256)."
            )
        if self.num_frames < 1:
            raise ValueError(f"WorldConfig.num_frames={self.num_frames}: must be >= 1.")
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise ValueError(
                f"WorldConfig objects: need 1 <= min_objects ({self.min_objects}) <= max_objects "
                f"({self.max_objects}) <= {MAX_OBJECTS}."
            )
        weights = self.object_count_weights
        if not isinstance(weights, (list, tuple, type(None))):
            raise ValueError(
                f"WorldConfig.object_count_weights={weights!r} must be a list of weights, one per object count, "
                "e.g. --config.data.object_count_weights=[1,2]."
            )
        weights = tuple(weights or ())  # from JSON or an override: a list; None = not set
        object.__setattr__(self, "object_count_weights", weights)
        counts = self.max_objects - self.min_objects + 1
        if weights and (
            len(weights) != counts
            or not all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in weights)
            or not sum(weights) > 0
        ):
            raise ValueError(
                f"WorldConfig.object_count_weights={weights}: give {counts} non-negative finite weights, one "
                f"per object count {self.min_objects}..{self.max_objects}, not all zero (e.g. (1, 2))."
            )
        if self.caption_order not in CAPTION_ORDERS:
            raise ValueError(
                f"WorldConfig.caption_order={self.caption_order!r}: use one of {CAPTION_ORDERS}."
            )
        for combo in self.held_out:
            for key, value in combo:
                if key not in _ATTRIBUTE_VALUES or value not in _ATTRIBUTE_VALUES[key]:
                    raise ValueError(
                        f"WorldConfig.held_out: unknown attribute {key}={value}; keys are "
                        f"{list(_ATTRIBUTE_VALUES)} with values {_ATTRIBUTE_VALUES}."
                    )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["held_out"] = [[list(kv) for kv in combo] for combo in self.held_out]
        # Fields added later appear only when set, so the default world's JSON (and the TFDS builder names
        # hashed from it) stay as they were.
        for name in _OMITTED_AT_DEFAULT:
            if getattr(self, name) == _FIELD_DEFAULTS[name]:
                del d[name]
        if "object_count_weights" in d:
            d["object_count_weights"] = list(self.object_count_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> WorldConfig:
        d = dict(d)
        if "held_out" in d:
            d["held_out"] = tuple(tuple(tuple(kv) for kv in combo) for combo in d["held_out"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(WorldConfig)}
_OMITTED_AT_DEFAULT = ("object_count_weights", "caption_order")


def parse_held_out(text: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """'colour=orange,shape=square;shape=triangle,motion=bounce-vertical' → WorldConfig.held_out."""
    combos = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        pairs = []
        for kv in part.split(","):
            if "=" not in kv:
                raise ValueError(f"held_out entry {kv!r} in {text!r}: write key=value, e.g. 'colour=orange'.")
            key, value = (s.strip() for s in kv.split("=", 1))
            pairs.append((key, value))
        combos.append(tuple(pairs))
    return tuple(combos)


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str
    size: str
    motion: str
    start: tuple[float, float]  # (x, y) centre at frame 0, pixels
    velocity: tuple[float, float]  # pixels per frame
    mentioned_size: bool = True  # whether the caption says the size

    def matches(self, combo) -> bool:
        return all(getattr(self, key) == value for key, value in combo)

    def radius(self, resolution: int) -> float:
        return SIZE_FRACTION[self.size] * resolution


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    resolution: int
    num_frames: int
    objects: tuple[ObjectSpec, ...]
    caption: str


# ---------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------
def shape_extents(shape: str, r: float) -> tuple[float, float, float, float]:
    """(left, right, top, bottom) offsets of the shape's bounding box from its centre, pixels."""
    if shape == "circle":
        return (-r, r, -r, r)
    if shape == "square":
        h = SQUARE_HALF_SIDE * r
        return (-h, h, -h, h)
    c = TRIANGLE_CIRCUMRADIUS * r
    return (-c * math.sqrt(3) / 2, c * math.sqrt(3) / 2, -c, c / 2)


def shape_area(shape: str, r: float) -> float:
    if shape in ("circle", "square"):
        return math.pi * r * r
    c = TRIANGLE_CIRCUMRADIUS * r
    return 3 * math.sqrt(3) / 4 * c * c


def bounding_radius(shape: str, r: float) -> float:
    return {
        "circle": r,
        "square": SQUARE_HALF_SIDE * r * math.sqrt(2),
        "triangle": TRIANGLE_CIRCUMRADIUS * r,
    }[shape]


def signed_distance(shape: str, r: float, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Signed distance (pixels, negative inside) from offsets (dx, dy) to the shape's outline."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - SQUARE_HALF_SIDE * r
    c = TRIANGLE_CIRCUMRADIUS * r
    s3 = math.sqrt(3) / 2
    # Max over the three edge half-planes; exact inside, a close bound outside (fine for 1-px AA).
    return np.maximum(dy - c / 2, np.maximum(-s3 * dx - dy / 2 - c / 2, s3 * dx - dy / 2 - c / 2))


def coverage(shape: str, r: float, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of pixels at offsets (dx, dy) from the shape's centre."""
    return np.clip(0.5 - signed_distance(shape, r, dx, dy), 0.0, 1.0)


def position_range(obj: ObjectSpec, resolution: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x_lo, x_hi), (y_lo, y_hi)): where the centre can be without the shape leaving the canvas."""
    left, right, top, bottom = shape_extents(obj.shape, obj.radius(resolution))
    return (-left, resolution - right), (-top, resolution - bottom)


def _reflect(p0: float, v: float, lo: float, hi: float, t: np.ndarray) -> np.ndarray:
    """Closed-form elastic reflection in [lo, hi]: a triangle wave of the free motion."""
    length = hi - lo
    if length <= 0:
        return np.full(t.shape, (lo + hi) / 2)
    u = np.mod(p0 - lo + v * t, 2 * length)
    return lo + np.where(u <= length, u, 2 * length - u)


def trajectory(obj: ObjectSpec, resolution: int, num_frames: int, start_frame: int = 0) -> np.ndarray:
    """Centre positions [num_frames, 2] (x, y) for frames start_frame … start_frame+num_frames-1."""
    t = np.arange(start_frame, start_frame + num_frames, dtype=np.float64)
    (x_lo, x_hi), (y_lo, y_hi) = position_range(obj, resolution)
    x = _reflect(obj.start[0], obj.velocity[0], x_lo, x_hi, t)
    y = _reflect(obj.start[1], obj.velocity[1], y_lo, y_hi, t)
    return np.stack([x, y], axis=-1)


# ---------------------------------------------------------------------------------------------------
# Sampling clips
# ---------------------------------------------------------------------------------------------------
def _place(rng, shape, size, motion, resolution, num_frames):
    """Draws (start, velocity) so that the motion word is true over num_frames, or None if impossible."""
    obj = ObjectSpec("red", shape, size, motion, (0.0, 0.0), (0.0, 0.0))
    (x_lo, x_hi), (y_lo, y_hi) = position_range(obj, resolution)
    steps = max(num_frames - 1, 1)
    if motion == "still":
        return (float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))), (0.0, 0.0)
    if motion in DIRECTIONS:
        dx, dy = DIRECTIONS[motion]
        norm = math.hypot(dx, dy)
        speed = rng.uniform(*DIRECTION_SPEED) * resolution
        vx, vy = speed * dx / norm, speed * dy / norm
        # Shrink the speed if the whole path would not fit (long clips): never let it touch a wall.
        fit = min(
            (x_hi - x_lo) / (abs(vx) * steps) if vx else np.inf,
            (y_hi - y_lo) / (abs(vy) * steps) if vy else np.inf,
        )
        if fit < 1:
            vx, vy = vx * fit * 0.98, vy * fit * 0.98
        if math.hypot(vx, vy) * steps < 0.1 * resolution:
            return None  # too slow to be seen moving
        start = []
        for v, lo, hi in ((vx, x_lo, x_hi), (vy, y_lo, y_hi)):
            travel = v * steps
            a, b = (lo, hi - travel) if travel >= 0 else (lo - travel, hi)
            start.append(float(rng.uniform(a, b)))
        return (start[0], start[1]), (float(vx), float(vy))
    # Bouncing: the wall is met between BOUNCE_MARGIN_FRAMES and steps - BOUNCE_MARGIN_FRAMES frames in.
    speed = rng.uniform(*BOUNCE_SPEED) * resolution
    sign = 1.0 if rng.random() < 0.5 else -1.0
    horizontal = motion == "bounce-horizontal"
    lo, hi = (x_lo, x_hi) if horizontal else (y_lo, y_hi)
    first, last = BOUNCE_MARGIN_FRAMES * speed, (steps - BOUNCE_MARGIN_FRAMES) * speed
    dist_hi = min(last, hi - lo)
    if dist_hi <= first:
        return None
    dist = rng.uniform(first, dist_hi)  # distance to the wall it heads for
    p = hi - dist if sign > 0 else lo + dist
    other_lo, other_hi = (y_lo, y_hi) if horizontal else (x_lo, x_hi)
    q = float(rng.uniform(other_lo, other_hi))
    if horizontal:
        return (float(p), q), (sign * speed, 0.0)
    return (q, float(p)), (0.0, sign * speed)


def _draw_attributes(rng, forced: dict | None):
    attrs = {
        "shape": str(rng.choice(SHAPES)),
        "size": str(rng.choice(SIZES)),
        "motion": str(rng.choice(MOTIONS)),
    }
    if forced:
        attrs.update({k: v for k, v in forced.items() if k != "colour"})
    return attrs


def sample_clip(cfg: WorldConfig, split: str, index: int) -> ClipSpec:
    """The clip `index` of `split`: deterministic from (cfg.seed, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: the built-in world has splits {SPLITS}.")
    if split == "heldout" and not cfg.held_out:
        raise ValueError(
            "split='heldout' needs WorldConfig.held_out to list at least one attribute combination."
        )
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index])
    R, T = cfg.resolution, cfg.num_frames
    fixed_count = None
    if cfg.object_count_weights:
        p = np.asarray(cfg.object_count_weights, np.float64)
        fixed_count = cfg.min_objects + int(rng.choice(len(p), p=p / p.sum()))
    for _ in range(1000):
        n = fixed_count or int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        colours = [str(c) for c in rng.choice(COLOUR_NAMES, size=n, replace=False)]
        forced = None
        if split == "heldout":
            forced = dict(cfg.held_out[int(rng.integers(len(cfg.held_out)))])
            if "colour" in forced and forced["colour"] not in colours:
                colours[0] = forced["colour"]
        objects: list[ObjectSpec] = []
        paths: list[np.ndarray] = []
        ok = True
        for k in range(n):
            attrs = _draw_attributes(rng, forced if k == 0 else None)
            placed = None
            for _ in range(30):
                placement = _place(rng, attrs["shape"], attrs["size"], attrs["motion"], R, T)
                if placement is None:
                    break
                obj = ObjectSpec(
                    colours[k],
                    attrs["shape"],
                    attrs["size"],
                    attrs["motion"],
                    *placement,
                    mentioned_size=bool(rng.random() >= captions_lib.SIZE_OMIT_PROB),
                )
                path = trajectory(obj, R, T)
                rad = bounding_radius(obj.shape, obj.radius(R))
                if all(
                    np.min(np.linalg.norm(path - other, axis=-1))
                    >= rad + bounding_radius(o.shape, o.radius(R)) + OBJECT_GAP * R
                    for o, other in zip(objects, paths)
                ):
                    placed = obj
                    break
            if placed is None:
                ok = False
                break
            objects.append(placed)
            paths.append(path)
        if not ok:
            continue
        matches = [any(o.matches(c) for c in cfg.held_out) for o in objects]
        if split in ("train", "test") and any(matches):
            continue
        if split == "heldout" and not matches[0]:
            continue
        if cfg.caption_order == "left_to_right":  # objects (and so their phrases) from left to right
            objects = sorted(objects, key=lambda o: (o.start[0], o.start[1]))
        phrases = [
            ObjectPhrase(o.colour, o.shape, o.size if o.mentioned_size else None, o.motion) for o in objects
        ]
        return ClipSpec(R, T, tuple(objects), captions_lib.write_caption(phrases, rng))
    raise RuntimeError(
        f"Could not place objects for clip {index} of {split} with {cfg}: the canvas is too "
        "small or the clip too long for these motions. Use a larger resolution, fewer "
        "objects (max_objects) or fewer frames."
    )


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------
def render(spec: ClipSpec, num_frames: int | None = None, start_frame: int = 0) -> np.ndarray:
    """Renders frames [start_frame, start_frame + num_frames) of a clip: uint8 [T, R, R, 3].

    num_frames defaults to the clip's own length; any length works (physics continues past it).
    """
    T = spec.num_frames if num_frames is None else num_frames
    R = spec.resolution
    canvas = np.zeros((T, R, R, 3), np.float32)
    centres = np.arange(R, dtype=np.float32) + 0.5  # pixel centres
    for obj in spec.objects:
        path = trajectory(obj, R, T, start_frame).astype(np.float32)  # [T, 2]
        r = obj.radius(R)
        # Only the bounding box around the object is touched: rendering cost ∝ object area, not R².
        left, right, top, bottom = shape_extents(obj.shape, r)
        for t in range(T):
            x0 = max(int(path[t, 0] + left) - 1, 0)
            x1 = min(int(path[t, 0] + right) + 2, R)
            y0 = max(int(path[t, 1] + top) - 1, 0)
            y1 = min(int(path[t, 1] + bottom) + 2, R)
            dx = centres[None, x0:x1] - path[t, 0]
            dy = centres[y0:y1, None] - path[t, 1]
            cov = coverage(obj.shape, r, dx, dy)[..., None]  # [h, w, 1]
            patch = canvas[t, y0:y1, x0:x1]
            canvas[t, y0:y1, x0:x1] = patch * (1 - cov) + np.asarray(COLOURS[obj.colour], np.float32) * cov
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


def metadata(spec: ClipSpec, num_frames: int | None = None, start_frame: int = 0) -> dict[str, np.ndarray]:
    """Ground truth as fixed-shape arrays: positions [T, MAX_OBJECTS, 2] (NaN where absent),
    attributes [MAX_OBJECTS, 4] (colour, shape, size, motion ids; -1 where absent)."""
    T = spec.num_frames if num_frames is None else num_frames
    positions = np.full((T, MAX_OBJECTS, 2), np.nan, np.float32)
    attributes = np.full((MAX_OBJECTS, 4), -1, np.int32)
    for k, obj in enumerate(spec.objects):
        positions[:, k] = trajectory(obj, spec.resolution, T, start_frame)
        attributes[k] = (
            COLOUR_NAMES.index(obj.colour),
            SHAPES.index(obj.shape),
            SIZES.index(obj.size),
            MOTIONS.index(obj.motion),
        )
    return {"positions": positions, "attributes": attributes, "num_objects": np.int32(len(spec.objects))}


class WorldSource:
    """Random-access source of the built-in world (grain's `RandomAccessDataSource` protocol).

    Items: {"video": uint8 [T, R, R, 3], "caption": str, "index": int, "positions": float32
    [T, MAX_OBJECTS, 2], "attributes": int32 [MAX_OBJECTS, 4], "num_objects": int32}.

    ``render_frames`` (default ``cfg.num_frames``): render that many frames of each clip instead. The
    clip (objects, caption) is still drawn for ``cfg.num_frames``, so the caption describes the first
    ``cfg.num_frames`` frames and the physics (bounces included) simply continues: the long renders that
    long-video training cuts windows from (``config.data.render_frames`` in the LM trainer).
    """

    def __init__(
        self,
        cfg: WorldConfig,
        split: str = "train",
        num_clips: int = 100_000,
        render_frames: int | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: the built-in world has splits {SPLITS}.")
        if render_frames is not None and int(render_frames) < cfg.num_frames:
            raise ValueError(
                f"WorldSource render_frames={render_frames} must be >= num_frames={cfg.num_frames} "
                "(the clip length the caption describes); leave it None to render num_frames."
            )
        self.cfg, self.split, self.num_clips = cfg, split, int(num_clips)
        self.render_frames = cfg.num_frames if render_frames is None else int(render_frames)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < self.num_clips:
            raise IndexError(f"WorldSource index {index} out of range [0, {self.num_clips}).")
        spec = sample_clip(self.cfg, self.split, index)
        T = self.render_frames
        return {"video": render(spec, T), "caption": spec.caption, "index": index, **metadata(spec, T)}

    def __repr__(self) -> str:
        return f"WorldSource({self.cfg}, split={self.split!r}, num_clips={self.num_clips})"
