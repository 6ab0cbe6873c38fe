"""Video files <-> token code files, and tokenizer evaluation: `videogen encode / decode / eval-tokenizer`.

    videogen encode --tokenizer runs/tokenizer --input clip.mp4 --output clip.npz
    videogen encode --tokenizer runs/tokenizer --input long.webm --output long.npz --frames 17 --resize 32 --clips
    videogen decode --tokenizer runs/tokenizer --input clip.npz --output clip.mp4      # or .gif / .npy
    videogen eval-tokenizer --workdir runs/tokenizer --split heldout --num-clips 256 --out heldout.json [--rfvd]

Inputs: any video ffmpeg reads (mp4, gif, webm, mov, ...) or a ``.npy`` of uint8 ``[T, H, W, 3]`` (or
``[N, T, H, W, 3]``: N clips). The causal tokenizer with compression ``(ct, cs, cs)`` takes ``1 + ct*k``
frames whose height and width are multiples of ``cs``; a video that does not fit is refused with its
shape and the options that make it fit:

* ``--frames N``  keep N frames (from ``--start``); ``--frames auto`` = the most that fit (``1 + ct*k``);
* ``--resize R``  scale the short side to R and centre-crop R x R (R a multiple of cs);
* ``--crop``      centre-crop height and width down to multiples of cs (no scaling);
* ``--clips``     cut the whole video into consecutive clips of ``--frames`` frames -> codes ``[N, t, h, w]``;
* ``--fps F``     resample in time first (video files only).

Codes file (``.npz``; every entry a plain array, strings as numpy unicode, so it loads with
``np.load(path, allow_pickle=False)``):

======================  =============================================================================
``codes``               int32 ``[t, h, w]`` (one clip) or ``[N, t, h, w]`` (``--clips``, or an N-clip .npy)
``format``              ``"videogen-codes"``; ``version``: 1
``codebook_size``       int; every code lies in ``[0, codebook_size)``
``compression``         int ``[ct, cs, cs]``
``tokenizer_config``    JSON of the tokenizer's ``model`` and ``quantizer`` config (architecture, code layout)
``config_hash``         sha256 (16 hex) of ``tokenizer_config``
``weights_hash``        sha256 (16 hex) of every weight and quantizer-state array used to encode
``tokenizer_workdir``   absolute path of the workdir it was encoded with; ``tokenizer_step``, ``ema``
``source``              the input file; ``source_frames``, ``source_height``, ``source_width``,
                        ``source_fps`` (0 = unknown, e.g. .npy): the input as it was
``fps``                 frame rate of the encoded frames (after ``--fps``); ``start``: first frame kept
``frames``, ``height``, ``width``: one encoded clip's pixel shape (what decode returns)
======================  =============================================================================

Decoding checks ``config_hash`` and ``weights_hash`` against the tokenizer it is given and refuses codes
from another one, naming both (and the ``--step`` to use when only the checkpoint differs).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from PIL import Image

from tokenizer import api as tok_api
from tokenizer import evaluate as eval_lib
from videogen import checks
from videogen.data import video_io
from videogen.errors import UsageError
from videogen.eval import fvd as fvd_lib
from videogen.training import mesh as mesh_lib

FORMAT = "videogen-codes"
VERSION = 1
VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov", ".mkv", ".avi", ".m4v")
_ENCODE_CHUNK = 8  # clips per encoder / decoder call


class CodesError(UsageError):
    """A codes file or an input video that cannot be used as asked (the message says why and how)."""


# ============================================================================================
# Which tokenizer made these codes
# ============================================================================================


def _canonical_json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


def _plain(x: Any) -> Any:
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def weights_hash(model, quantizer) -> str:
    """sha256 (16 hex) over every array of the autoencoder and quantizer state (names, dtypes, shapes, bytes).

    PRNG-key leaves (VQ's restart key) are left out: they change nothing about encoding or decoding.
    """
    h = hashlib.sha256()
    for prefix, module in (("autoencoder", model), ("quantizer", quantizer)):
        leaves, _ = jax.tree_util.tree_flatten_with_path(nnx.state(module))
        for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
            if not hasattr(leaf, "dtype") or jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                continue
            arr = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
            h.update(f"{prefix}{jax.tree_util.keystr(path)}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update(arr.tobytes())
    return h.hexdigest()[:16]


class LoadedTokenizer:
    """A trained tokenizer from its workdir plus what identifies it in codes files."""

    def __init__(self, workdir: str | os.PathLike, *, step: int | None = None):
        self.workdir = Path(workdir).resolve()
        self.model, self.quantizer, self.config = tok_api.load_tokenizer(self.workdir, step=step)
        self.step = int(tok_api.latest_step(self.workdir) if step is None else step)
        self.compression = tuple(int(c) for c in self.model.config.compression)
        self.codebook_size = int(self.quantizer.codebook_size)
        # how it computes (dtype, remat, conv_impl), not what: free to change on a resume, so not the identity
        model = {
            k: v for k, v in _plain(self.config.model).items() if k not in tok_api.COMPUTE_ONLY_MODEL_KEYS
        }
        self.config_json = _canonical_json(
            {"model": model, "quantizer": tok_api.quantizer_kwargs(self.config)}
        )
        self.config_hash = hashlib.sha256(self.config_json.encode()).hexdigest()[:16]
        self.weights_hash = weights_hash(self.model, self.quantizer)
        self.resolution = int(self.config.data.resolution)
        self.num_frames = int(self.config.data.num_frames)

    def describe(self) -> str:
        return (
            f"{self.workdir} (step {self.step}, config hash {self.config_hash}, weights hash "
            f"{self.weights_hash}, {self.codebook_size} codes)"
        )

    def identity(self) -> dict:
        return {
            "codebook_size": self.codebook_size,
            "compression": np.asarray(self.compression, np.int32),
            "tokenizer_config": self.config_json,
            "config_hash": self.config_hash,
            "weights_hash": self.weights_hash,
            "tokenizer_workdir": str(self.workdir),
            "tokenizer_step": self.step,
            "ema": True,
        }

    def encode(self, clips: np.ndarray) -> np.ndarray:
        """uint8 ``[N, T, H, W, 3]`` -> int32 ``[N, t, h, w]`` (tokenizer.api.encode_video, in chunks)."""
        out = [
            np.asarray(tok_api.encode_video(self.model, self.quantizer, clips[i : i + _ENCODE_CHUNK]))
            for i in range(0, len(clips), _ENCODE_CHUNK)
        ]
        return np.concatenate(out).astype(np.int32)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int ``[N, t, h, w]`` -> uint8 ``[N, T, H, W, 3]`` (tokenizer.api.decode_indices, in chunks)."""
        out = [
            np.asarray(tok_api.decode_indices(self.model, self.quantizer, codes[i : i + _ENCODE_CHUNK]))
            for i in range(0, len(codes), _ENCODE_CHUNK)
        ]
        return np.concatenate(out)


# ============================================================================================
# Codes files
# ============================================================================================


def save_codes(path: str | os.PathLike, codes: np.ndarray, meta: dict) -> Path:
    """Writes ``codes`` and ``meta`` (str / int / float / bool / array values) to an ``.npz``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise CodesError(f"{path}: the codes file must end in .npz.")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "codes": np.asarray(codes, np.int32),
        "format": np.asarray(FORMAT),
        "version": np.asarray(VERSION),
    }
    for k, v in meta.items():
        arr = np.asarray(v)
        if arr.dtype == object:
            raise TypeError(f"metadata {k!r} is not a plain array: {v!r}")
        arrays[k] = arr
    np.savez(path, **arrays)
    return path


def load_codes(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """``(codes int32 [N, t, h, w], metadata dict of python scalars / arrays)`` from a codes ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    if not zipfile.is_zipfile(path):  # what np.load would report about anything else points the wrong way
        raise CodesError(
            f"{path} is not a videogen codes file (an .npz written by `videogen encode`)"
            + (
                f"; decode reads codes, and {path.suffix} is a video: encode it first"
                if path.suffix.lower() in VIDEO_SUFFIXES
                else ""
            )
            + "."
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except ValueError as err:  # object arrays need pickle: not a file this module wrote
        raise CodesError(f"{path} is not a videogen codes file ({err}).") from None
    if "codes" not in data or str(data.get("format", "")) != FORMAT:
        raise CodesError(
            f"{path} is not a videogen codes file (written by `videogen encode`): it has entries "
            f"{sorted(data)}."
        )
    if int(data["version"]) > VERSION:
        raise CodesError(
            f"{path} has codes format version {int(data['version'])}; this videogen reads up to {VERSION}."
        )
    codes = data.pop("codes")
    meta = {k: (v.item() if v.ndim == 0 else v) for k, v in data.items()}
    if codes.ndim == 3:
        codes = codes[None]
        meta["single"] = True
    elif codes.ndim == 4:
        meta["single"] = False
    else:
        raise CodesError(f"{path}: codes must be [t, h, w] or [N, t, h, w], got shape {codes.shape}.")
    if not np.issubdtype(codes.dtype, np.integer):
        raise CodesError(f"{path}: codes must be integers, got {codes.dtype}.")
    return codes.astype(np.int32), meta


def _identity(config_json: str | None) -> str | None:
    """A codes file's tokenizer config without the compute-only model keys, canonical: files written before
    ``dtype`` and ``remat`` left the hash still carry them, and must still match."""
    try:
        config = json.loads(config_json)
        model = {k: v for k, v in config["model"].items() if k not in tok_api.COMPUTE_ONLY_MODEL_KEYS}
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    return _canonical_json({**config, "model": model})


def check_same_tokenizer(meta: dict, tok: LoadedTokenizer, path: str | os.PathLike) -> None:
    """Raises a CodesError naming both tokenizers when the codes were made by another one."""
    theirs = (
        f"{meta.get('tokenizer_workdir', '?')} (step {meta.get('tokenizer_step', '?')}, config hash "
        f"{meta.get('config_hash', '?')}, weights hash {meta.get('weights_hash', '?')}, "
        f"{meta.get('codebook_size', '?')} codes)"
    )
    if (
        _identity(meta.get("tokenizer_config")) != _identity(tok.config_json)
        or int(meta.get("codebook_size", -1)) != tok.codebook_size
    ):
        raise CodesError(
            f"{path} was encoded by a different tokenizer: {theirs}; --tokenizer is "
            f"{tok.describe()}. Decode with --tokenizer {meta.get('tokenizer_workdir', '?')}."
        )
    if meta.get("weights_hash") != tok.weights_hash:
        hint = f"--tokenizer {meta.get('tokenizer_workdir', '?')} --step {meta.get('tokenizer_step', '?')}"
        raise CodesError(
            f"{path} was encoded by a tokenizer with the same architecture but other weights: "
            f"{theirs}; --tokenizer is {tok.describe()}. Its codes mean different things here; "
            f"decode with {hint}."
        )


# ============================================================================================
# Making a video fit the tokenizer
# ============================================================================================


def largest_fitting_frames(num_frames: int, ct: int) -> int:
    """The largest ``1 + ct*k <= num_frames`` (0 when num_frames < 1)."""
    return 0 if num_frames < 1 else 1 + ((num_frames - 1) // ct) * ct


def _resize_short_side_crop(video: np.ndarray, size: int) -> np.ndarray:
    """Short side -> ``size`` (bicubic, antialiased; PIL), then the centre ``size x size``: as read_video(size=)."""
    t, h, w, _ = video.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        video = np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BICUBIC)) for f in video])
    return _centre_crop(video, size, size)


def _centre_crop(video: np.ndarray, h: int, w: int) -> np.ndarray:
    top, left = (video.shape[-3] - h) // 2, (video.shape[-2] - w) // 2
    return video[..., top : top + h, left : left + w, :]


def _parse_frames(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise CodesError(f"--frames must be a number of frames or 'auto', got {value!r}.") from None
    if n < 1:
        raise CodesError(f"--frames must be >= 1, got {n}.")
    return n


def fit_clips(
    video: np.ndarray,
    tok_compression: tuple[int, int, int],
    *,
    name: str,
    frames=None,
    start: int = 0,
    resize: int | None = None,
    crop: bool = False,
    clips: bool = False,
    trained_resolution: int | None = None,
) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` (or ``[N, T, H, W, 3]``) -> ``[N, T', H', W', 3]`` that the tokenizer takes.

    Applies ``start`` / ``frames`` / ``clips`` in time and ``resize`` / ``crop`` in space (resize already
    done by ffmpeg for video files is a no-op here). Raises a CodesError naming ``name``, its shape and the
    options that fix it when the result would not fit.
    """
    ct, cs, _ = tok_compression
    batch = video if video.ndim == 5 else video[None]
    n_in, t, h, w, _ = batch.shape
    frames = _parse_frames(frames) if isinstance(frames, str) or frames is None else int(frames)
    if start < 0 or start >= t:
        raise CodesError(f"{name}: --start {start} is outside its {t} frames.")
    avail = t - start
    if frames == "auto":
        frames = largest_fitting_frames(avail, ct)
    if clips and frames is None:
        raise CodesError(
            f"{name}: --clips needs --frames (the length of each clip, 1 + {ct}k, e.g. "
            f"{largest_fitting_frames(min(avail, 17), ct)})."
        )
    if clips and n_in > 1:
        raise CodesError(f"{name}: --clips cuts one video into clips; this input already holds {n_in} clips.")
    if clips and (frames - 1) % ct:
        raise CodesError(
            f"{name}: --clips --frames {frames}: each clip must have 1 + {ct}k frames; use --frames "
            f"{largest_fitting_frames(frames, ct)} (or {largest_fitting_frames(frames, ct) + ct})."
        )
    if frames is not None and frames > avail:
        raise CodesError(
            f"{name}: --frames {frames} but it has only {avail} frames from frame {start}; use "
            f"--frames {largest_fitting_frames(avail, ct)} (or --frames auto)."
        )
    # Spatial fitting first (cheap on fewer frames would be nicer, but clips need every frame anyway).
    if resize is not None:
        if resize % cs:
            raise CodesError(
                f"{name}: --resize {resize} is not a multiple of the spatial compression {cs}; use "
                f"{max(cs, (resize // cs) * cs)} or {(resize // cs + 1) * cs}."
            )
        if (h, w) != (resize, resize):
            batch = np.stack([_resize_short_side_crop(v, resize) for v in batch])
    elif crop:
        nh, nw = (h // cs) * cs, (w // cs) * cs
        if nh < cs or nw < cs:
            raise CodesError(
                f"{name}: {h}x{w} frames are smaller than the spatial compression {cs}; use --resize "
                f"{trained_resolution or cs}."
            )
        batch = _centre_crop(batch, nh, nw)
    # Time.
    if clips:
        k = avail // frames
        batch = batch[0, start : start + k * frames].reshape((k, frames) + batch.shape[2:])
    elif frames is not None:
        batch = batch[:, start : start + frames]
    elif start:
        batch = batch[:, start:]
    _, t2, h2, w2, _ = batch.shape
    problems, fixes = [], []
    if (t2 - 1) % ct:
        problems.append(f"the frame count must be 1 + {ct}k")
        fixes.append(f"--frames {largest_fitting_frames(t2, ct)} (the most that fit; or --frames auto)")
    if h2 % cs or w2 % cs or min(h2, w2) < cs:
        problems.append(f"height and width must be multiples of {cs}")
        r = (
            trained_resolution
            if trained_resolution and trained_resolution % cs == 0
            else max(cs, min(h2, w2) // cs * cs)
        )
        fixes.append(
            f"--resize {r} (short side to {r}, centre crop {r}x{r}"
            + (
                f"; the tokenizer was trained at {trained_resolution}x{trained_resolution}"
                if trained_resolution
                else ""
            )
            + ")"
        )
        if h2 >= cs and w2 >= cs:
            fixes.append(f"--crop (centre crop to {h2 // cs * cs}x{w2 // cs * cs})")
    if problems:
        raise CodesError(
            f"{name}: video of {t2} frames of {h2}x{w2} (T x H x W = {t2}x{h2}x{w2}) does not fit the "
            f"tokenizer's compression {ct}x{cs}x{cs}: {' and '.join(problems)}. Fix: "
            + "; ".join(fixes)
            + "."
        )
    return np.ascontiguousarray(batch)


def check_input_suffix(path: str | os.PathLike) -> None:
    """A CodesError unless ``path`` is a video file or a ``.npy`` (by its name)."""
    suffix = Path(path).suffix.lower()
    if suffix != ".npy" and suffix not in VIDEO_SUFFIXES:
        raise CodesError(
            f"{path}: unsupported input {suffix or '(no suffix)'}; use a video "
            f"({', '.join(VIDEO_SUFFIXES)}) or a .npy of uint8 [T, H, W, 3]."
        )


def read_input(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    resize: int | None = None,
    max_frames: int | None = None,
) -> tuple[np.ndarray, dict]:
    """uint8 ``[T, H, W, 3]`` or ``[N, T, H, W, 3]`` from a video file or ``.npy`` + what the source was.

    Video files are resampled to ``fps`` and resized (short side to ``resize``, centre crop) by ffmpeg.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        video = checks.npy_video(path, "--input")
        if video.dtype != np.uint8 or video.ndim not in (4, 5) or video.shape[-1] != 3:
            raise CodesError(
                f"{path}: a .npy input must be uint8 [T, H, W, 3] or [N, T, H, W, 3], got "
                f"{video.dtype} {video.shape}."
            )
        if fps is not None:
            raise CodesError(f"{path}: --fps resamples video files; a .npy has no timestamps.")
        info = {
            "source_frames": video.shape[-4],
            "source_height": video.shape[-3],
            "source_width": video.shape[-2],
            "source_fps": 0.0,
        }
        return video, info
    check_input_suffix(path)
    probe = video_io.probe_video(path)
    video = video_io.read_video(path, fps=fps, size=resize, max_frames=max_frames)
    info = {
        "source_frames": probe["num_frames"],
        "source_height": probe["height"],
        "source_width": probe["width"],
        "source_fps": float(probe["fps"]),
    }
    if max_frames is None and fps is None:
        info["source_frames"] = int(video.shape[0])  # decoded everything: the exact count
    return video, info


# ============================================================================================
# Commands
# ============================================================================================


def encode_file(
    tok: LoadedTokenizer,
    input_path,
    output_path,
    *,
    frames=None,
    start: int = 0,
    resize: int | None = None,
    crop: bool = False,
    clips: bool = False,
    fps: float | None = None,
) -> tuple[np.ndarray, dict]:
    """Reads ``input_path``, fits it to ``tok``, encodes and writes the codes file; returns (codes, meta)."""
    input_path = Path(input_path)
    frames = _parse_frames(frames) if isinstance(frames, str) else frames
    max_frames = start + frames if isinstance(frames, int) and not clips else None
    video, info = read_input(input_path, fps=fps, resize=resize, max_frames=max_frames)
    batch = fit_clips(
        video,
        tok.compression,
        name=str(input_path),
        frames=frames,
        start=start,
        resize=resize,
        crop=crop,
        clips=clips,
        trained_resolution=tok.resolution,
    )
    codes = tok.encode(batch)
    single = video.ndim == 4 and not clips
    out_fps = float(fps) if fps is not None else (info["source_fps"] or 8.0)
    meta = {
        **tok.identity(),
        "source": str(input_path),
        **info,
        "fps": out_fps,
        "start": int(start),
        "frames": batch.shape[1],
        "height": batch.shape[2],
        "width": batch.shape[3],
    }
    save_codes(output_path, codes[0] if single else codes, meta)
    return codes, meta


def decode_file(
    tok: LoadedTokenizer, input_path, output_path, *, fps: float | None = None, check: bool = True
) -> np.ndarray:
    """Reads a codes file, checks it was made by ``tok``, decodes and writes ``output_path`` (mp4/gif/npy).

    Several clips go to one ``.npy`` as ``[N, T, H, W, 3]``, or one after another into an mp4/GIF.
    """
    codes, meta = load_codes(input_path)
    if check:
        check_same_tokenizer(meta, tok, input_path)
    if codes.min() < 0 or codes.max() >= tok.codebook_size:
        raise CodesError(
            f"{input_path}: codes lie in [{codes.min()}, {codes.max()}], outside the codebook "
            f"[0, {tok.codebook_size})."
        )
    videos = tok.decode(codes)
    output_path = Path(output_path)
    suffix = output_path.suffix.lower()
    if suffix not in (".mp4", ".gif", ".npy"):
        raise CodesError(
            f"{output_path}: unsupported output {suffix or '(no suffix)'}; use .mp4, .gif or .npy."
        )
    fps = float(fps if fps is not None else meta.get("fps") or 8.0)
    if suffix == ".npy":
        output_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(output_path, videos[0] if meta["single"] else videos, allow_pickle=False)
    else:
        video_io.write_video(output_path, videos.reshape((-1,) + videos.shape[2:]), fps=fps)
    return videos[0] if meta["single"] else videos


def encode_command(args) -> None:
    # Everything a user typed is checked before the tokenizer loads (the command line reports a UsageError).
    _parse_frames(args.frames)
    checks.input_file(args.input, "--input")
    check_input_suffix(args.input)
    checks.output_file(args.output, "--output", (".npz",))
    checks.trained_workdir(args.tokenizer, "--tokenizer", expect="tokenizer", step=args.step)
    tok = LoadedTokenizer(args.tokenizer, step=args.step)
    t0 = time.perf_counter()
    codes, meta = encode_file(
        tok,
        args.input,
        args.output,
        frames=args.frames,
        start=args.start,
        resize=args.resize,
        crop=args.crop,
        clips=args.clips,
        fps=args.fps,
    )
    n, t, h, w = codes.shape
    print(
        f"Wrote {args.output}: {n} clip{'s' * (n != 1)} of {meta['frames']}x{meta['height']}x{meta['width']} "
        f"pixels -> codes [{n}, {t}, {h}, {w}] of {tok.codebook_size} ({time.perf_counter() - t0:.1f} s; "
        f"tokenizer {tok.describe()})"
    )


def decode_command(args) -> None:
    checks.input_file(args.input, "--input")
    load_codes(args.input)  # not a codes file: said before the tokenizer loads
    checks.output_file(args.output, "--output", (".mp4", ".gif", ".npy"))
    checks.trained_workdir(args.tokenizer, "--tokenizer", expect="tokenizer", step=args.step)
    tok = LoadedTokenizer(args.tokenizer, step=args.step)
    videos = decode_file(tok, args.input, args.output, fps=args.fps)
    print(f"Wrote {args.output}: video {list(videos.shape)} uint8")


def evaluate(
    workdir,
    *,
    split: str | None = None,
    num_clips: int | None = None,
    batch_size: int | None = None,
    step: int | None = None,
    judge: bool = True,
    samples: int = 0,
    rfvd: bool = False,
    sample_path=None,
) -> dict:
    """tokenizer.evaluate.evaluate_split on a workdir's eval source (+ rFVD of reconstructions vs originals:
    I3D features of each clip's first 16 frames, as ``videogen eval`` computes it)."""
    mesh = mesh_lib.make_mesh({"data": -1})
    model, quantizer, config = tok_api.load_tokenizer(workdir, step=step, mesh=mesh)
    step = tok_api.latest_step(workdir) if step is None else step
    split = split or config.eval.split
    feature_fn = None
    if rfvd:
        if config.data.num_frames < fvd_lib.MIN_FRAMES:
            raise CodesError(
                f"rFVD needs clips of at least {fvd_lib.MIN_FRAMES} frames (I3D); this tokenizer's "
                f"data has {config.data.num_frames}."
            )
        if int(num_clips or config.eval.num_clips) < 2:
            raise CodesError("rFVD needs at least 2 clips (--num-clips).")
        feature_fn = fvd_lib.i3d_feature_fn()  # a batch of clips at a time
    metrics = eval_lib.evaluate_split(
        model,
        quantizer,
        config,
        split,
        num_clips=num_clips,
        batch_size=batch_size,
        mesh=mesh,
        judge=judge,
        num_samples=samples,
        sample_path=sample_path,
        feature_fn=feature_fn,
    )
    return {
        "workdir": str(Path(workdir).resolve()),
        "split": split,
        "step": int(step),
        "ema": True,
        "codebook_size": int(quantizer.codebook_size),
        **metrics,
    }


def eval_tokenizer_command(args) -> None:
    workdir = Path(args.workdir)
    checks.trained_workdir(workdir, "--workdir", expect="tokenizer", step=args.step)
    if args.out:
        checks.output_file(args.out, "--out")
    sample_path = Path(args.samples_out) if args.samples_out else None
    if sample_path:
        checks.output_file(sample_path, "--samples-out", (".gif",))
    metrics = evaluate(
        workdir,
        split=args.split,
        num_clips=args.num_clips,
        batch_size=args.batch_size,
        step=args.step,
        judge=not args.no_judge,
        samples=args.samples if sample_path else 0,
        rfvd=args.rfvd,
        sample_path=sample_path,
    )
    text = json.dumps(metrics, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)


_ENCODE_HELP = """Encodes a video file with a trained tokenizer into a codes file (.npz).

The tokenizer takes 1 + ct*k frames whose height and width are multiples of cs (its compression ct x cs x cs,
read from the tokenizer's config: 4x8x8 for experiments/tokenizer_world.py, 4x4x4 for its :tiny variant); a
video that does not fit is refused with the options that make it fit:
--frames N|auto, --start S, --resize R, --crop, --clips (cut into consecutive clips), --fps F."""


def add_commands(sub) -> None:
    """Registers `encode`, `decode` and `eval-tokenizer` on an argparse sub-parser collection."""
    p = sub.add_parser(
        "encode",
        help="video file (mp4/gif/webm/npy) -> token codes (.npz) with a trained tokenizer",
        description=_ENCODE_HELP,
    )
    p.add_argument("--tokenizer", required=True, help="tokenizer workdir (config.json + checkpoints/)")
    p.add_argument(
        "--input", required=True, help="video file or .npy of uint8 [T, H, W, 3] / [N, T, H, W, 3]"
    )
    p.add_argument("--output", required=True, help="codes file (.npz)")
    p.add_argument(
        "--frames",
        help="keep this many frames (1 + 4k for 4x temporal compression) or 'auto' (the most that fit)",
    )
    p.add_argument("--start", type=checks.nonnegative_int, default=0, help="first frame to keep")
    p.add_argument(
        "--resize",
        type=checks.positive_int,
        help="short side to this many pixels, then centre crop to a square",
    )
    p.add_argument(
        "--crop",
        action="store_true",
        help="centre-crop height and width to multiples of the spatial compression",
    )
    p.add_argument("--clips", action="store_true", help="cut the whole video into clips of --frames frames")
    p.add_argument(
        "--fps",
        type=checks.positive_float,
        help="resample the video to this frame rate first (video files only)",
    )
    p.add_argument("--step", type=checks.nonnegative_int, help="tokenizer checkpoint step (default: latest)")
    p.set_defaults(func=encode_command)

    p = sub.add_parser("decode", help="token codes (.npz from `videogen encode`) -> video (mp4/gif/npy)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer workdir that encoded them")
    p.add_argument("--input", required=True, help="codes file (.npz)")
    p.add_argument("--output", required=True, help=".mp4, .gif or .npy (exact uint8 array)")
    p.add_argument(
        "--fps", type=checks.positive_float, help="frame rate of the output (default: the encoded video's)"
    )
    p.add_argument("--step", type=checks.nonnegative_int, help="tokenizer checkpoint step (default: latest)")
    p.set_defaults(func=decode_command)

    p = sub.add_parser(
        "eval-tokenizer",
        help="PSNR, SSIM, code usage, perplexity, judge (and rFVD) of a "
        "trained tokenizer on an evaluation split",
    )
    p.add_argument("--workdir", required=True, help="tokenizer workdir")
    p.add_argument("--split", help="test | heldout | train (default: the config's eval split)")
    p.add_argument("--num-clips", type=checks.positive_int, help="default: the config's eval.num_clips")
    p.add_argument("--batch-size", type=checks.positive_int, help="default: the config's eval.batch_size")
    p.add_argument("--step", type=checks.nonnegative_int, help="checkpoint step (default: latest)")
    p.add_argument("--out", help="also write the metrics JSON here")
    p.add_argument("--no-judge", action="store_true", help="skip the world judge on reconstructions")
    p.add_argument(
        "--rfvd",
        action="store_true",
        help="also rFVD (I3D) of reconstructions vs originals; ~2 s per clip on a CPU core pair",
    )
    p.add_argument(
        "--samples",
        type=checks.nonnegative_int,
        default=8,
        help="original|reconstruction pairs for --samples-out",
    )
    p.add_argument("--samples-out", help="write a .gif (+ .mp4) grid of original|reconstruction pairs here")
    p.set_defaults(func=eval_tokenizer_command)
