"""Video I/O for the whole project: decode, probe, encode, and preview sheets.

Every video in ``videogen`` is a ``numpy.uint8`` array of shape ``[T, H, W, 3]``
(time, height, width, RGB). This module is the only place that talks to ffmpeg.

Decoding goes through the static ffmpeg binary that ``imageio-ffmpeg`` bundles
(``imageio_ffmpeg.get_ffmpeg_exe()``), so it does not depend on a system ffmpeg
and reads the same set of containers/codecs on every machine: mp4, webm, gif,
mov, mkv, avi and anything else that ffmpeg understands. Resampling in time
(``fps=``) and the resize + centre crop (``size=``) are done inside the ffmpeg
filter graph, so full-resolution frames never reach Python.

Encoding: MP4 (H.264 / yuv420p via ffmpeg), GIF (via Pillow) and ``.npy``
(exact, for tests and caches). ``contact_sheet`` and ``gif_grid`` build the
previews that ``make data`` and the sampling scripts write.

Example:
    >>> video = read_video("clip.mp4", fps=8, size=64, max_frames=17)
    >>> video.shape, video.dtype
    ((17, 64, 64, 3), dtype('uint8'))
    >>> write_video("out.gif", video, fps=8)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from videogen.errors import UsageError

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoReadError",
    "read_video",
    "read_whole_video",
    "probe_video",
    "write_mp4",
    "write_gif",
    "write_npy",
    "write_video",
    "contact_sheet",
    "gif_grid",
]

logger = logging.getLogger("videogen.data.video_io")

# Containers that the readers (and FolderSource) accept. Lower-case, with dot.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm", ".gif", ".mov", ".mkv", ".avi")

# Seconds that one probe may take before the file is declared unreadable. A
# probe only parses the header and decodes one frame (~30 ms), so this only
# trips on pathological inputs (e.g. a stalled network mount).
_PROBE_TIMEOUT_S = 60.0


class VideoReadError(UsageError):
    """A video file exists but ffmpeg cannot read it (corrupt, truncated, no video stream).

    The message names the file and carries the relevant part of ffmpeg's log.
    A ``UsageError`` (so a ``ValueError``): callers that only catch ``ValueError``
    still see bad inputs as bad values rather than as crashes, and the command
    lines report it in one line.
    """


# A video may decode a little shorter than its container's duration says (an
# audio track that runs longer, rounding of duration * fps): this fraction of
# the claimed frames may be missing before read_whole_video calls the file
# truncated (the same allowance FolderSource pads).
_MISSING_FRAMES_FRACTION = 0.125


# imageio-ffmpeg logs a WARNING on every read whose output size differs from
# the source size ("The frame size for reading ... is different from the source
# frame size ..."). With ``size=`` that is exactly what we ask for, so the
# warning is noise; drop only that message, leave the rest of its logging alone.
class _DropResizeWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "is different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_DropResizeWarning())


def _imageio_ffmpeg():
    """imageio-ffmpeg (it ships the ffmpeg binary, ~70 MB), imported on the first video read or mp4 write, so
    that the trainers, the sampler's GIF/.npy outputs and the benchmarks run on hosts without it (an offline
    GPU node that was given only the wheels it needs, experiments/gpu_check.sh)."""
    try:
        import imageio_ffmpeg  # deferred and optional: see the docstring
    except ImportError as e:
        raise ImportError(
            "reading videos and writing mp4 need the imageio-ffmpeg package, which ships ffmpeg: "
            "`pip install imageio-ffmpeg` (GIF and .npy outputs work without it)"
        ) from e
    return imageio_ffmpeg


@contextlib.contextmanager
def _spawning_ffmpeg():
    """Scope for starting ffmpeg. JAX warns on every ``os.fork()`` once its threads run ("... will likely lead
    to a deadlock"); subprocess forks only to ``exec`` ffmpeg at once, which that deadlock cannot reach, so
    the warning is silenced here -- and only here, where the fork is ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


# --------------------------------------------------------------------------- #
# Validation helpers
# --------------------------------------------------------------------------- #


def _check_video(video: Any, name: str = "video") -> np.ndarray:
    """Returns ``video`` as a uint8 ``[T, H, W, 3]`` ndarray or raises a clear error.

    ``np.asarray`` lets JAX arrays and lists through; dtype is never converted
    silently because a float video in [0, 1] cast to uint8 would be all zeros.
    """
    arr = np.asarray(video)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            hint = "if it holds values in [0, 1], convert with `(x*255).round().astype(np.uint8)`"
        else:
            hint = "convert with `np.clip(x, 0, 255).astype(np.uint8)`"
        raise TypeError(f"{name} must have dtype uint8 with values 0..255, got {arr.dtype}; {hint}.")
    if arr.ndim != 4 or arr.shape[-1] != 3:
        hint = ""
        if arr.ndim == 3:
            hint = " (a single frame? add a time axis with x[None])"
        elif arr.ndim == 4 and arr.shape[-1] == 4:
            hint = " (RGBA? drop alpha with x[..., :3])"
        elif arr.ndim == 4 and arr.shape[-1] == 1:
            hint = " (grayscale? use np.repeat(x, 3, axis=-1))"
        elif arr.ndim == 4 and arr.shape[1] == 3:
            hint = " (channels-first? use x.transpose(0, 2, 3, 1))"
        raise ValueError(f"{name} must have shape [T, H, W, 3], got {arr.shape}{hint}.")
    if min(arr.shape[:3]) < 1:
        raise ValueError(f"{name} must have T, H, W >= 1, got shape {arr.shape}.")
    return arr


def _check_videos(videos: Any, name: str = "videos") -> list[np.ndarray]:
    """Accepts a ``[N, T, H, W, 3]`` array or a sequence of ``[T, H, W, 3]`` clips."""
    if isinstance(videos, np.ndarray) or hasattr(videos, "__array__"):
        arr = np.asarray(videos)
        if arr.ndim == 4:
            raise ValueError(
                f"{name} must be a list of [T, H, W, 3] clips or one [N, T, H, W, 3] "
                f"array, got a single clip of shape {arr.shape}; wrap it as [clip]."
            )
        if arr.ndim != 5:
            raise ValueError(f"{name} as an array must have shape [N, T, H, W, 3], got {arr.shape}.")
        clips = list(arr)
    else:
        clips = list(videos)
    if not clips:
        raise ValueError(f"{name} is empty; pass at least one clip.")
    return [_check_video(v, f"{name}[{i}]") for i, v in enumerate(clips)]


def _check_fps(fps: Any) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise TypeError(f"fps must be a positive number, got {fps!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}.")
    return value


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}.")
    return int(value)


def _existing_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"Video file not found: {p}")
    if p.is_dir():
        raise IsADirectoryError(f"Expected a video file, got a directory: {p}")
    return p


def _prepare_output(path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


# --------------------------------------------------------------------------- #
# ffmpeg log handling
# --------------------------------------------------------------------------- #

# Lines of ffmpeg's banner (version/build configuration) carry no information
# about *why* a file failed and are several KB long; they are cut from errors.
_BANNER_PREFIXES = ("ffmpeg version", "built with", "configuration:", "lib", "copyright")


def _ffmpeg_message(log: str, max_lines: int = 4) -> str:
    """Extracts the last few meaningful lines of an ffmpeg stderr log."""
    if "=== stderr ===" in log:  # imageio-ffmpeg's wrapper around the real log
        log = log.split("=== stderr ===", 1)[1]
    lines = []
    for line in log.replace("\r", "\n").splitlines():
        s = line.strip()
        if not s or s.lower().startswith(_BANNER_PREFIXES) or s.startswith("frame="):
            continue
        lines.append(s)
    # Errors are at the end of the log; the header (streams, metadata) before.
    msg = " | ".join(lines[-max_lines:])
    return msg[:800] if msg else "(ffmpeg printed no message)"


def _input_section(log: str) -> str:
    """The part of ``ffmpeg -i`` output that describes the input file."""
    for marker in ("Stream mapping:", "Output #0"):
        if marker in log:
            log = log.split(marker, 1)[0]
    return log


_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_SIZE_RE = re.compile(r",\s(\d+)x(\d+)(?=[\s,\[]|$)")
_FPS_RE = re.compile(r"([\d.]+)(k?)\s+fps\b")
_TBR_RE = re.compile(r"([\d.]+)(k?)\s+tbr\b")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees")
_FRAME_COUNT_RE = re.compile(r"frame=\s*(\d+)")


def _parse_rate(match: re.Match | None) -> float:
    if match is None:
        return 0.0
    value = float(match.group(1))
    return value * 1000.0 if match.group(2) == "k" else value


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #


def probe_video(path: str | os.PathLike) -> dict:
    """Reads a video's metadata and checks that its first frame decodes.

    Costs one short ffmpeg run (~30 ms): the container header is parsed and a
    single frame is decoded, so files with a valid header but an undecodable
    stream are caught here rather than in the middle of training.

    Args:
        path: Video file.

    Returns:
        ``dict(fps=float, num_frames=int, duration=float, width=int, height=int)``.
        ``num_frames`` is estimated as ``round(duration * fps)`` from the
        container header (exact counting needs a full decode). ``width`` and
        ``height`` are the displayed size: for phone videos with rotation
        metadata they are swapped, matching what ``read_video`` returns because
        ffmpeg auto-rotates while decoding.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoReadError: ffmpeg cannot open the file, it has no video stream,
            or its first frame does not decode.
    """
    p = _existing_file(path)
    cmd = [
        _imageio_ffmpeg().get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",  # never let ffmpeg read the terminal (it would eat keystrokes)
        "-i", str(p),
        # ``V`` (capital) skips cover-art "attached pic" streams, which ffmpeg
        # lists as video streams in mp4/mkv files that carry album art.
        "-map", "0:V:0",
        "-frames:v", "1",
        "-f", "null", "-",
    ]  # fmt: skip
    try:
        with _spawning_ffmpeg():
            proc = subprocess.run(cmd, capture_output=True, timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VideoReadError(
            f"Cannot read video {p}: ffmpeg probe timed out after {_PROBE_TIMEOUT_S:.0f} s"
        ) from None
    log = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise VideoReadError(f"Cannot read video {p}: {_ffmpeg_message(log)}")

    header = _input_section(log)
    video_lines = [
        line
        for line in header.splitlines()
        if line.lstrip().startswith("Stream #") and ": Video:" in line and "attached pic" not in line
    ]
    if not video_lines:
        raise VideoReadError(f"Cannot read video {p}: no video stream found")
    stream = video_lines[0]
    frames = [int(m) for m in _FRAME_COUNT_RE.findall(log)]
    if not frames or frames[-1] < 1:
        raise VideoReadError(f"Cannot read video {p}: no decodable frame: {_ffmpeg_message(log)}")

    size = _SIZE_RE.search(stream)
    if size is None:
        raise VideoReadError(f"Cannot read video {p}: could not parse frame size from {stream.strip()!r}")
    width, height = int(size.group(1)), int(size.group(2))
    rotation = _ROTATION_RE.search(header)
    if rotation is not None and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width

    # "fps" is the stream's average frame rate (best for num_frames estimates);
    # "tbr" is ffmpeg's guess at the base rate and is the fallback.
    fps = _parse_rate(_FPS_RE.search(stream)) or _parse_rate(_TBR_RE.search(stream))
    dur = _DURATION_RE.search(header)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0

    if duration > 0 and fps > 0:
        num_frames = max(1, round(duration * fps))
    else:
        # Containers without a duration in the header (raw streams, some
        # browser-recorded webm): count by decoding everything. Slow but rare.
        try:
            with _spawning_ffmpeg():
                num_frames, duration = _imageio_ffmpeg().count_frames_and_secs(str(p))
        except Exception as err:  # RuntimeError with the full ffmpeg log
            raise VideoReadError(f"Cannot read video {p}: {_ffmpeg_message(str(err))}") from None
        if fps <= 0 and duration > 0:
            fps = num_frames / duration
    return dict(
        fps=float(fps),
        num_frames=int(num_frames),
        duration=float(duration),
        width=width,
        height=height,
    )


def read_video(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    size: int | None = None,
    max_frames: int | None = None,
    start_time: float = 0.0,
) -> np.ndarray:
    """Decodes a video file into RGB frames.

    Args:
        path: Any video that ffmpeg reads (mp4, webm, gif, mov, mkv, avi, ...).
        fps: If given, resample to this frame rate with ffmpeg's ``fps`` filter
            (drops/duplicates frames to the nearest timestamp; a ``D``-second
            clip gives about ``round(D * fps)`` frames). None keeps every frame.
        size: If given, scale so the *short* side is ``size`` (aspect ratio
            kept) and centre-crop to ``size x size``. None keeps the source size.
        max_frames: Stop after this many frames. ffmpeg itself stops
            (``-frames:v``), so the rest of the file is never decoded.
        start_time: Seconds to seek before decoding (input-side ``-ss``: fast,
            and frame-accurate because ffmpeg decodes from the previous keyframe
            and drops frames before ``start_time``).

    Returns:
        uint8 array ``[T, H, W, 3]`` (``[T, size, size, 3]`` when ``size`` is given).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoReadError: ffmpeg cannot decode the file, or no frame lies at or
            after ``start_time``.
    """
    p = _existing_file(path)
    filters = []
    if fps is not None:
        # repr keeps full float precision (e.g. 29.97002997) in the filter arg.
        filters.append(f"fps={_check_fps(fps)!r}")
    if size is not None:
        r = _check_positive_int(size, "size")
        # Resample in time first so fewer frames go through the scaler. The
        # scaler keeps aspect ratio and grows until both sides are >= r, i.e.
        # the short side becomes r; crop then takes the centre r x r window.
        filters.append(f"scale={r}:{r}:force_original_aspect_ratio=increase")
        filters.append(f"crop={r}:{r}")
    if max_frames is not None:
        max_frames = _check_positive_int(max_frames, "max_frames")
    start_time = float(start_time)
    if not math.isfinite(start_time) or start_time < 0:
        raise ValueError(f"start_time must be a finite number >= 0, got {start_time}.")

    input_params = ["-nostdin"]
    if start_time > 0:
        input_params += ["-ss", f"{start_time:.6f}"]
    output_params = ["-map", "0:V:0"]
    if filters:
        output_params += ["-vf", ",".join(filters)]
    if max_frames is not None:
        output_params += ["-frames:v", str(max_frames)]

    frames: list[np.ndarray] = []
    gen = _imageio_ffmpeg().read_frames(str(p), input_params=input_params, output_params=output_params)
    try:
        try:
            with _spawning_ffmpeg():  # the generator starts ffmpeg on its first step
                meta = next(gen)
            width, height = meta["size"]
            for buf in gen:
                # [H, W, 3]; frombuffer is zero-copy, np.stack below copies once.
                frames.append(np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3))
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except Exception as err:  # IOError/RuntimeError carrying ffmpeg's log
            raise VideoReadError(f"Cannot read video {p}: {_ffmpeg_message(str(err))}") from None
    finally:
        gen.close()  # stops the ffmpeg subprocess if we left the loop early
    if not frames:
        where = f" at or after start_time={start_time:g} s" if start_time > 0 else ""
        raise VideoReadError(f"Cannot read video {p}: no frames decoded{where}")
    return np.stack(frames)  # [T, H, W, 3]


def read_whole_video(path: str | os.PathLike) -> np.ndarray:
    """Every frame of a video file, as :func:`read_video`, checked against the
    frame count its container claims.

    A file cut short with its header intact (``head -c 2000 clip.mp4``, an
    interrupted copy) still opens and decodes its first frames: without this
    check the rest would silently be missing.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoReadError: unreadable, or clearly fewer frames decode than the
            container claims (both counts named).
    """
    info = probe_video(path)
    video = read_video(path)
    claimed, decoded = int(info["num_frames"]), len(video)
    if claimed - decoded > max(1, _MISSING_FRAMES_FRACTION * claimed):
        raise VideoReadError(
            f"Cannot read video {path} whole: its container claims {claimed} frames "
            f"({info['duration']:.2f} s at {info['fps']:g} fps) but only {decoded} decode; "
            "the file is truncated or damaged"
        )
    return video


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #


def write_mp4(path: str | os.PathLike, video: Any, fps: float = 8, *, crf: int = 18) -> Path:
    """Encodes a clip as H.264 MP4 (libx264, yuv420p) that browsers and players open.

    Args:
        path: Output file (parent directories are created).
        video: uint8 ``[T, H, W, 3]``.
        fps: Frame rate written to the container.
        crf: libx264 constant rate factor (0 lossless .. 51 worst). 18 is close
            to visually lossless and still small for short clips.

    Returns:
        The output path.
    """
    video = _check_video(video)
    fps = _check_fps(fps)
    t, h, w, _ = video.shape
    if h % 2 or w % 2:
        # yuv420p stores chroma at half resolution in both directions, so
        # libx264 refuses odd widths/heights. Pad one edge-replicated row/column
        # (rather than resizing, which would blur every pixel; edge replication
        # instead of black avoids a dark seam bleeding into the chroma).
        video = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = video.shape[1:3]
    p = _prepare_output(path)
    writer = _imageio_ffmpeg().write_frames(
        str(p),
        (int(w), int(h)),  # imageio-ffmpeg asserts Python ints, not numpy ints
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=None,  # we pass -crf ourselves
        output_params=["-crf", str(int(crf))],
        # macro_block_size=1: never let imageio-ffmpeg upscale to a multiple
        # of 16 (its default), so a 32x32 or 20x20 clip stays 32x32 / 20x20.
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    try:
        with _spawning_ffmpeg():
            writer.send(None)  # start ffmpeg
        for frame in video:
            writer.send(np.ascontiguousarray(frame).tobytes())
        writer.close()
    except Exception as err:
        raise OSError(f"ffmpeg failed to write {p}: {_ffmpeg_message(str(err))}") from None
    return p


def write_gif(path: str | os.PathLike, video: Any, fps: float = 8) -> Path:
    """Writes an animated GIF that loops forever (Pillow, per-frame adaptive palette).

    GIF frame delays are whole centiseconds, so 8 fps (12.5 cs) cannot be
    stored exactly. Delays alternate (12, 13, 12, 13 cs ...) so that the
    cumulative time of frame ``i`` is ``round(i * 100 / fps)`` cs and the clip
    duration is right; constant rounding would drift (8 fps would play at 8.33).
    Browsers clamp delays under 2 cs, so fps above 50 plays slower than asked.

    Note:
        Pillow merges consecutive identical frames into one frame with the
        summed delay. Timing is preserved, but a reader that ignores timestamps
        sees fewer frames; read GIFs back with ``read_video(path, fps=...)``.

    Args:
        path: Output file (parent directories are created).
        video: uint8 ``[T, H, W, 3]``.
        fps: Playback frame rate.

    Returns:
        The output path.
    """
    video = _check_video(video)
    fps = _check_fps(fps)
    p = _prepare_output(path)
    ticks = [round(i * 100.0 / fps) for i in range(len(video) + 1)]
    # Pillow takes milliseconds and truncates to centiseconds; max(1, .) keeps
    # every frame visible at absurd frame rates.
    durations = [max(1, b - a) * 10 for a, b in zip(ticks[:-1], ticks[1:])]
    images = [Image.fromarray(frame) for frame in video]
    images[0].save(
        p,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=durations,
        loop=0,  # 0 = loop forever
    )
    return p


def write_npy(path: str | os.PathLike, video: Any) -> Path:
    """Saves the exact array (lossless; for tests and caches) with ``np.save``.

    Args:
        path: Output file. ``np.save`` appends ``.npy`` if missing; the returned
            path is the file actually written.
        video: uint8 ``[T, H, W, 3]``.

    Returns:
        The output path.
    """
    video = _check_video(video)
    p = _prepare_output(path)
    if p.suffix != ".npy":
        p = p.with_name(p.name + ".npy")
    np.save(p, video, allow_pickle=False)
    return p


def write_video(path: str | os.PathLike, video: Any, fps: float = 8) -> Path:
    """Writes a clip, choosing the format from the suffix: ``.mp4``, ``.gif`` or ``.npy``.

    Args:
        path: Output file.
        video: uint8 ``[T, H, W, 3]``.
        fps: Frame rate (ignored for ``.npy``, which stores frames only).

    Returns:
        The output path.

    Raises:
        ValueError: Unsupported suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".mp4":
        return write_mp4(path, video, fps)
    if suffix == ".gif":
        return write_gif(path, video, fps)
    if suffix == ".npy":
        return write_npy(path, video)
    raise ValueError(
        f"Cannot write video to {path}: unsupported suffix {suffix or '(none)'!r}; "
        "use .mp4 (H.264), .gif (animated) or .npy (exact array)."
    )


# --------------------------------------------------------------------------- #
# Previews
# --------------------------------------------------------------------------- #

_GAP = 2  # pixels between cells in sheets and grids
_SHEET_BG = 255  # white page for contact sheets
_GRID_BG = 32  # dark separators in GIF grids (clips are usually dark-ish)
_MAX_CAPTION_LINES = 8


def _word_gap(font: Any) -> str:
    """The spaces drawn between two words: about a third of an em. Pillow's
    default font has a 2-pixel space at its size 10, which on a contact sheet
    reads as no space at all ("videoa", "upand")."""
    space = font.getlength(" ")
    return " " * max(1, math.ceil(font.getlength("m") / 3 / max(space, 1e-6)))


def _wrap_text(text: str, font: Any, max_width: int) -> list[str]:
    """Greedy word wrap measured in pixels; words wider than a line are split."""

    def fits(s: str) -> bool:
        return font.getlength(s) <= max_width

    gap = _word_gap(font)
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line}{gap}{word}" if line else word
            if fits(candidate):
                line = candidate
                continue
            if line:
                lines.append(line)
            # Over-long words (URLs, hashes) are hard-split at the last fitting char.
            while not fits(word) and len(word) > 1:
                cut = next(k for k in range(len(word) - 1, 0, -1) if fits(word[:k]) or k == 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    if len(lines) > _MAX_CAPTION_LINES:
        # Keep sheets bounded for very long prompts; mark the cut.
        lines = lines[:_MAX_CAPTION_LINES]
        last = lines[-1]
        while last and not fits(last + "..."):
            last = last[:-1]
        lines[-1] = last + "..."
    return lines


def _safe_text(font: Any, text: str) -> str:
    """Replaces characters the default font cannot encode (bitmap fallback is latin-1)."""
    try:
        font.getlength(text)
        return text
    except UnicodeError:
        return text.encode("latin-1", errors="replace").decode("latin-1")


def contact_sheet(
    videos: Any,
    captions: Sequence[str] | None = None,
    *,
    frames_per_clip: int = 8,
    path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Lays clips out as a still image: one row per clip, frames evenly spaced in time.

    Args:
        videos: A sequence of uint8 ``[T, H, W, 3]`` clips (lengths and sizes
            may differ; cells take the largest ``H x W``) or one
            ``[N, T, H, W, 3]`` array.
        captions: Optional text per clip, drawn under its row (Pillow's default
            font, wrapped to the row width).
        frames_per_clip: Frames shown per row, at ``linspace(0, T - 1)``. Clips
            shorter than that show every frame once.
        path: If given, the sheet is also written there as PNG.

    Returns:
        uint8 ``[H_sheet, W_sheet, 3]``.
    """
    clips = _check_videos(videos)
    k = _check_positive_int(frames_per_clip, "frames_per_clip")
    if captions is not None:
        captions = [str(c) for c in captions]
        if len(captions) != len(clips):
            raise ValueError(f"Got {len(clips)} clips but {len(captions)} captions.")
    cell_h = max(c.shape[1] for c in clips)
    cell_w = max(c.shape[2] for c in clips)
    sheet_w = _GAP + k * (cell_w + _GAP)

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = measure.textbbox((0, 0), "Ag|", font=font)[3] + 2

    # Lay out captions first: row heights depend on the number of wrapped lines.
    wrapped: list[list[str]] = []
    for i in range(len(clips)):
        if captions is None:
            wrapped.append([])
        else:
            text = _safe_text(font, captions[i])
            wrapped.append(_wrap_text(text, font, sheet_w - 2 * _GAP))
    row_heights = [cell_h + _GAP + (len(w) * line_h + _GAP if w else 0) for w in wrapped]
    sheet_h = _GAP + sum(row_heights)

    sheet = Image.new("RGB", (sheet_w, sheet_h), (_SHEET_BG,) * 3)
    draw = ImageDraw.Draw(sheet)
    y = _GAP
    for clip, lines, row_h in zip(clips, wrapped, row_heights):
        t, h, w, _ = clip.shape
        # Evenly spaced in time, without repeats when the clip is short.
        idx = np.unique(np.linspace(0, t - 1, min(k, t)).round().astype(int))
        for col, f in enumerate(idx):
            # Centre frames that are smaller than the cell.
            x0 = _GAP + col * (cell_w + _GAP) + (cell_w - w) // 2
            sheet.paste(Image.fromarray(clip[f]), (x0, y + (cell_h - h) // 2))
        ty = y + cell_h + _GAP
        for line in lines:
            draw.text((_GAP, ty), line, fill=(0, 0, 0), font=font)
            ty += line_h
        y += row_h
    out = np.asarray(sheet, dtype=np.uint8).copy()  # [H_sheet, W_sheet, 3]
    if path is not None:
        sheet.save(_prepare_output(path), format="PNG")
    return out


def gif_grid(
    videos: Any,
    path: str | os.PathLike,
    *,
    cols: int = 4,
    fps: float = 8,
) -> np.ndarray:
    """Tiles clips of equal shape into one animated GIF (the ``make data`` preview).

    Args:
        videos: A sequence of uint8 ``[T, H, W, 3]`` clips of one shape, or one
            ``[N, T, H, W, 3]`` array.
        path: Output ``.gif`` file.
        cols: Clips per grid row; rows are ``ceil(N / cols)``. Empty cells in
            the last row are filled with the separator colour.
        fps: Playback frame rate.

    Returns:
        The tiled video, uint8 ``[T, rows * (H + 2) + 2, min(cols, N) * (W + 2) + 2, 3]``.
    """
    clips = _check_videos(videos)
    cols = _check_positive_int(cols, "cols")
    shapes = {c.shape for c in clips}
    if len(shapes) != 1:
        raise ValueError(f"gif_grid needs clips of one shape [T, H, W, 3], got {sorted(shapes)}.")
    t, h, w, _ = clips[0].shape
    n = len(clips)
    ncols = min(cols, n)
    nrows = math.ceil(n / ncols)
    grid = np.full(
        (t, _GAP + nrows * (h + _GAP), _GAP + ncols * (w + _GAP), 3), _GRID_BG, dtype=np.uint8
    )  # [T, Hg, Wg, 3]
    for i, clip in enumerate(clips):
        r, c = divmod(i, ncols)
        y0, x0 = _GAP + r * (h + _GAP), _GAP + c * (w + _GAP)
        grid[:, y0 : y0 + h, x0 : x0 + w] = clip
    write_gif(path, grid, fps)
    return grid
