"""Builds any data source from a config dict, so trainers and tools name data the same way.

    {"kind": "world", "resolution": 64, "num_frames": 17, "max_objects": 2, "seed": 0, "num_clips": 100000}
    {"kind": "tfds", "name": "ucf101/ucf101_1_256", "data_dir": "~/tensorflow_datasets"}
    {"kind": "folder", "root": "my_videos/", "fps": 8.0}

`resolution` and `num_frames` (and `split`) apply to every kind: all sources yield clips of the same
shape, {"video": uint8 [T, R, R, 3], "caption": str, ...}.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Mapping
from typing import Any

from videogen.data import world
from videogen.data.folder import FolderSource
from videogen.data.tfds_source import TfdsSource
from videogen.errors import UsageError

logger = logging.getLogger("videogen.data")

KINDS = ("world", "tfds", "folder")
# The built-in world's splits; tfds and folder sources map "train"/"test" to their own.
_WORLD_ONLY = {
    "max_objects",
    "min_objects",
    "object_count_weights",
    "caption_order",
    "seed",
    "held_out",
    "num_clips",
}
# How training clips are mixed, not what the world is: eval sets (and the judged prompts) keep the world's
# natural mix so that figures stay comparable across training mixes, unless eval.data names them.
TRAINING_MIX_KEYS = ("object_count_weights",)


@functools.cache
def spec_keys() -> frozenset[str]:
    """Every key a data spec of some kind may hold (what config overrides of ``data`` may add)."""
    params = set(inspect.signature(TfdsSource.__init__).parameters) | set(
        inspect.signature(FolderSource.__init__).parameters
    )
    fields = {f.name for f in world.dataclasses.fields(world.WorldConfig)}
    return frozenset((params | fields | {"kind", "num_clips", "render_frames", "split"}) - {"self"})


def judged_spec(data: Mapping[str, Any]) -> dict:
    """``data`` without its training-mix entries: the spec eval sets and judged prompts are drawn from."""
    return {k: v for k, v in data.items() if k not in TRAINING_MIX_KEYS}


def eval_spec(data: Mapping[str, Any], eval_data: Mapping[str, Any] | None = None) -> dict:
    """A trainer's eval source spec: its ``data`` spec with the ``eval.data`` entries on top.

    The shipped configs size their world eval set there (``{"num_clips": 256}``); those world-only entries
    are dropped when ``data`` is a TFDS or folder source, so switching a config's data to real videos needs
    no change to its eval section; a ``split`` in ``data`` is the training split's and is dropped too. A folder has no splits: unless ``eval.data`` names another ``root`` the
    eval clips are training clips, and a warning says so."""
    spec = judged_spec(data)
    extra = dict(eval_data or {})
    kind = spec.get("kind", "world")
    if kind != "world":
        extra = {k: v for k, v in extra.items() if k not in _WORLD_ONLY}
    # A TFDS spec's own split (e.g. "train[:90%]") names the training data: the eval reads the trainer's eval
    # split (config.eval.split) unless eval.data names one.
    spec.pop("split", None)
    spec.update(extra)
    if kind == "folder" and spec.get("root") == data.get("root"):
        logger.warning(
            "eval reads the training folder %s (a folder source has no splits): set eval.data.root "
            '(--config.eval.data=\'{"root": "DIR"}\') to a folder of held-out videos for an honest eval.',
            spec.get("root"),
        )
    return spec


def captions(source, n: int) -> list[str]:
    """The captions of ``source``'s first ``n`` clips (fewer if it has fewer); the built-in world gives them
    without rendering."""
    n = min(int(n), len(source))
    if isinstance(source, world.WorldSource):
        return [world.sample_clip(source.cfg, source.split, i).caption for i in range(n)]
    return [str(source[i]["caption"]) for i in range(n)]


def build_source(spec: Mapping[str, Any], split: str = "train"):
    """The source `spec` describes (see the module docstring), for `split`."""
    spec = dict(spec)
    kind = spec.pop("kind", "world")
    resolution = int(spec.pop("resolution", 64))
    num_frames = int(spec.pop("num_frames", 17))
    # Long renders for long-video training: the world draws clips for num_frames and renders render_frames;
    # other sources simply cut clips of render_frames frames.
    render_frames = spec.pop("render_frames", None)
    if render_frames is not None and kind != "world":
        num_frames = int(render_frames)
    if kind == "world":
        num_clips = int(spec.pop("num_clips", 100_000 if split == "train" else 1_000))
        held_out = spec.pop("held_out", None)
        if isinstance(held_out, str):
            held_out = world.parse_held_out(held_out)
        cfg_fields = {"resolution": resolution, "num_frames": num_frames, **spec}
        if held_out is not None:
            cfg_fields["held_out"] = tuple(tuple(tuple(kv) for kv in c) for c in held_out)
        try:
            cfg = world.WorldConfig(**cfg_fields)
        except TypeError as e:
            raise UsageError(
                f"data spec {dict(kind=kind, **spec)}: {e}; world fields are "
                f"{[f.name for f in world.dataclasses.fields(world.WorldConfig)]} + num_clips."
            ) from e
        except ValueError as e:  # the world's own range checks (resolution, objects, held-out combinations)
            raise UsageError(f"data spec: {e}") from e
        try:
            return world.WorldSource(cfg, split, num_clips, render_frames=render_frames)
        except ValueError as e:  # an unknown split, render_frames below num_frames
            raise UsageError(f"data spec: {e}") from e
    if kind == "tfds":
        extra = sorted(set(spec) & _WORLD_ONLY)
        if extra:
            raise UsageError(f"data spec: {extra} only apply to kind='world'.")
        if "name" not in spec:
            raise UsageError("data spec kind='tfds' needs 'name', e.g. 'ucf101/ucf101_1_256'.")
        return TfdsSource(
            spec.pop("name"),
            split=spec.pop("split", split),
            num_frames=num_frames,
            resolution=resolution,
            **spec,
        )
    if kind == "folder":
        if "root" not in spec:
            raise UsageError("data spec kind='folder' needs 'root', the folder of videos.")
        return FolderSource(spec.pop("root"), num_frames=num_frames, resolution=resolution, **spec)
    raise UsageError(f"data spec kind={kind!r}: must be one of {KINDS}.")
