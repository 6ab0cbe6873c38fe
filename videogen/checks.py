"""Checks of what a user passes on a command line, run before anything expensive (model build, compile,
sampling): flag values (as argparse types), input files, output folders and workdirs. Each failure is a
:class:`videogen.errors.UsageError` that names the flag, the input and the fix.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videogen.data.folder import video_files
from videogen.data.video_io import VIDEO_EXTENSIONS
from videogen.errors import UsageError

# ============================================================================================
# Flag values: argparse types (a bad value is refused while parsing, with the flag's name)
# ============================================================================================


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def probability_mass(text: str) -> float:
    """Nucleus sampling's top-p: in (0, 1]."""
    value = _finite(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1 = off), got {text!r}")
    return value


# ============================================================================================
# Files and folders
# ============================================================================================


def input_file(path: str | Path, what: str) -> Path:
    """An existing, non-empty, readable file (``what`` names it in messages: a flag or 'the video')."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {p}: no such file.")
    if p.is_dir():
        raise UsageError(f"{what} {p} is a folder; pass a file.")
    try:
        with open(p, "rb") as f:
            empty = not f.read(1)
    except OSError as err:
        raise UsageError(f"{what} {p} cannot be read ({err.strerror or err}).") from None
    if empty:
        raise UsageError(f"{what} {p} is empty (0 bytes).")
    return p


def npy_video(path: str | Path, what: str) -> np.ndarray:
    """The array of a ``.npy`` file, refused in words that point the right way: numpy's own message about
    a file it cannot read suggests unpickling it, which is never the fix here."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise UsageError(
            f"{what} {path} is not a plain .npy array (a text file, a pickle, or damaged); video "
            "arrays are uint8 [T, H, W, 3] saved with numpy.save."
        ) from None


def output_folder(path: str | Path, what: str) -> Path:
    """A folder that will be written to: it need not exist yet, but it must be creatable and writable, found
    out now by writing a probe file in it (or in its nearest existing parent) rather than after the work."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} {p} is a file, not a folder; pass a folder (it is created if missing).")
    base = p
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"{what} {p} cannot be created: {base} is a file.")
    try:
        with tempfile.NamedTemporaryFile(dir=base, prefix=".videogen-write-check-"):
            pass
    except OSError as err:
        where = "" if base == p else f" (it would be created in {base})"
        raise UsageError(
            f"{what} {p} is not writable{where}: {err.strerror or err}; pass a folder you can write to."
        ) from None
    return p


def output_file(path: str | Path, what: str, suffixes: Sequence[str] | None = None) -> Path:
    """A file that will be written: not a folder, the right suffix, its folder writable."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {p} is a folder; pass a file name.")
    if suffixes and p.suffix.lower() not in suffixes:
        raise UsageError(
            f"{what} {p}: unsupported output {p.suffix or '(no suffix)'}; use {', '.join(suffixes)}."
        )
    output_folder(p.parent, f"{what} {p}: its folder")
    return p


def video_folder(root: str | Path | None, what: str) -> Path:
    """A folder source's root: an existing folder holding at least one video file (readability is the
    source's own check, one probe per file)."""
    if not root:
        raise UsageError(f"{what} is required for a folder source: the folder of your videos.")
    p = Path(root)
    if not p.exists():
        raise UsageError(f"{what} {p}: no such folder.")
    if not p.is_dir():
        raise UsageError(f"{what} {p} is a file; pass the folder of your videos.")
    if not video_files(p):
        raise UsageError(
            f"{what} {p} holds no video files ({' '.join(VIDEO_EXTENSIONS)}, searched recursively)."
        )
    return p


def data_spec(spec: dict, what: str = "data") -> None:
    """The cheap half of a data source's checks (paths, required fields), before a source is built."""
    kind = spec.get("kind", "world")
    if kind == "folder":
        video_folder(spec.get("root"), f"{what}.root" if what != "--root" else what)
    elif kind == "tfds":
        if not spec.get("name"):
            raise UsageError(f"{what}: a tfds source needs a dataset name, e.g. ucf101/ucf101_1_256.")
        data_dir = spec.get("data_dir")
        if data_dir and not Path(data_dir).is_dir():
            raise UsageError(
                f"{what}: data_dir {data_dir} is not a folder; pass where the dataset was prepared."
            )


# ============================================================================================
# Workdirs
# ============================================================================================

_KIND_NAMES = {"tokenizer": "a tokenizer workdir", "lm": "an LM workdir"}
_TRAINERS = {"tokenizer": "python -m tokenizer.train", "lm": "python -m videogen.train"}
_MODEL_NAMES = {"tokenizer": "a tokenizer", "lm": "an LM"}


def workdir_kind(config: Any) -> str | None:
    """``'lm'`` or ``'tokenizer'`` from a workdir's config.json contents, None for anything else."""
    if not isinstance(config, dict):
        return None
    if "tokenizer_workdir" in config:
        return "lm"
    if "quantizer" in config:
        return "tokenizer"
    return None


def checkpoint_steps(workdir: str | Path) -> list[int]:
    """The steps saved in ``workdir/checkpoints`` (folder names; a save in progress has a longer name)."""
    path = Path(workdir) / "checkpoints"
    if not path.is_dir():
        return []
    return sorted(int(d.name) for d in path.iterdir() if d.is_dir() and d.name.isdigit())


def _wanted(expect: str | None) -> str:
    if expect is None:
        return "the workdir of a trained tokenizer or LM"
    return f"{_KIND_NAMES[expect]} ({_TRAINERS[expect]} --workdir ...)"


def trained_workdir(
    path: str | Path,
    what: str,
    *,
    expect: str | None = None,
    step: int | None = None,
    need_checkpoint: bool = True,
) -> tuple[str, dict]:
    """``(kind, config)`` of a workdir to read: it exists, holds a config.json that parses, is of the
    ``expect``-ed kind ('tokenizer' / 'lm'; None: either) and, with ``need_checkpoint``, has a checkpoint
    (``step`` when given)."""
    p = Path(path)
    want = _wanted(expect)
    if not p.exists():
        raise UsageError(f"{what} {p}: no such folder; pass {want}.")
    if not p.is_dir():
        raise UsageError(f"{what} {p} is a file; pass {want}.")
    config_path = p / "config.json"
    if not config_path.is_file():
        state = "the folder is empty" if not any(p.iterdir()) else "it holds no trained run"
        raise UsageError(f"{what} {p}: config.json not found ({state}); pass {want}.")
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(
            f"{what} {p}: {config_path} is not valid JSON ({err}); the workdir is damaged: restore "
            "its config.json or pass another workdir."
        ) from None
    kind = workdir_kind(config)
    if kind is None:
        raise UsageError(
            f"{what} {p}: {config_path} is neither a tokenizer's config (no 'quantizer') nor an "
            f"LM's (no 'tokenizer_workdir'); pass {want}."
        )
    if expect is not None and kind != expect:
        if kind == "lm":
            hint = f"; this LM was trained on the tokenizer in {config.get('tokenizer_workdir')}"
        else:
            hint = "; a tokenizer workdir is what encode, decode, eval-tokenizer and an LM's training take"
        raise UsageError(f"{what} {p} is {_KIND_NAMES[kind]}, but {what} needs {want}{hint}.")
    if not need_checkpoint:
        return kind, config
    steps = checkpoint_steps(p)
    if not steps:
        raise UsageError(
            f"{what} {p} has no checkpoint in {p / 'checkpoints'} yet: its training has not saved one."
        )
    if step is not None and step not in steps:
        raise UsageError(
            f"--step {step}: {p} has no checkpoint step {step}; its steps are {', '.join(map(str, steps))}."
        )
    return kind, config


def saved_tokenizer_workdir(saved: str, lm_workdir: Path) -> str:
    """The tokenizer an LM workdir's config.json names. LMs trained before the path was saved absolute hold it
    as typed, relative to the folder training ran in (``runs/tok``): that is tried from here, then from the
    LM workdir's parent folders (``runs/lm`` next to ``runs/tok``, sampled from elsewhere)."""
    path = Path(saved)
    if path.is_absolute() or (path / "config.json").is_file():
        return saved
    for base in Path(lm_workdir).resolve().parents:
        if (base / path / "config.json").is_file():
            return str(base / path)
    raise FileNotFoundError(
        f"{Path(lm_workdir) / 'config.json'} names tokenizer_workdir {saved!r}, relative to the "
        f"folder it was trained in, and it is found neither from here ({Path.cwd()}) nor above "
        f'{lm_workdir}: run from that folder, or set "tokenizer_workdir" in that config.json '
        "to the tokenizer's absolute path."
    )


def lm_workdir(path: str | Path, what: str = "--workdir", *, step: int | None = None) -> dict:
    """An LM workdir to sample or evaluate, and the tokenizer workdir its config.json names; its config."""
    _, config = trained_workdir(path, what, expect="lm", step=step)
    saved = config.get("tokenizer_workdir")
    if not saved:
        raise UsageError(
            f"{what} {path}: its config.json names no tokenizer_workdir; the workdir is damaged."
        )
    try:
        tokenizer = Path(saved_tokenizer_workdir(saved, Path(path)))
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    if not (tokenizer / "config.json").is_file():
        state = (
            "no longer exists" if not tokenizer.exists() else "is not a tokenizer workdir (no config.json)"
        )
        raise UsageError(
            f"{what} {path} was trained on the tokenizer in {tokenizer}, which {state}: put it back, "
            f'or set "tokenizer_workdir" in {Path(path) / "config.json"} to where it is now.'
        )
    trained_workdir(tokenizer, f"{what} {path}: its tokenizer", expect="tokenizer")
    return config


def training_workdir(path: str | Path, what: str, kind: str) -> Path:
    """A trainer's --workdir: a folder it can write, new or holding a run of the same ``kind``."""
    p = output_folder(path, what)
    config_path = p / "config.json"
    if config_path.is_file():
        try:
            other = workdir_kind(json.loads(config_path.read_text()))
        except (ValueError, UnicodeDecodeError):
            other = None
        if other is not None and other != kind:
            raise UsageError(
                f"{what} {p} is {_KIND_NAMES[other]}; training {_MODEL_NAMES[kind]} there would "
                "mix two runs: pass another --workdir."
            )
    return p
