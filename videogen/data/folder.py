"""A data source over a folder of the user's own captioned videos.

Layout::

    my_videos/
      captions.jsonl        # optional: {"file": "cats/a.mp4", "caption": "a cat jumps"}
      cats/a.mp4
      cats/b.webm
      cats/b.txt            # optional sidecar caption for b.webm
      dogs/c.gif

Every file is cut into non-overlapping clips of ``num_frames`` frames at the
target ``fps`` (clip ``k`` starts at ``k * num_frames / fps`` seconds), resized
so its short side is ``resolution`` and centre-cropped to a square. Each item
is decoded on demand with ffmpeg, so the index is the only thing built up
front: one ~30 ms probe per file, run in parallel, nothing cached on disk.

Example:
    >>> src = FolderSource("my_videos", num_frames=17, resolution=64, fps=8)
    >>> item = src[0]
    >>> item["video"].shape, item["caption"]
    ((17, 64, 64, 3), 'a cat jumps')
"""

from __future__ import annotations

import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from videogen.data.video_io import VIDEO_EXTENSIONS, VideoReadError, probe_video, read_video
from videogen.errors import UsageError

__all__ = ["FolderSource", "CAPTIONS_FILENAME", "video_files"]

logger = logging.getLogger("videogen.data")

CAPTIONS_FILENAME = "captions.jsonl"

# A clip may come back a little short when the container duration (which the
# index trusts) overstates the video stream, e.g. audio that runs longer. Up to
# this fraction of missing frames is padded by repeating the last frame; more
# than that means the file changed or is damaged, and is an error.
_MAX_PAD_FRACTION = 0.125


def _scan(root: Path) -> list[Path]:
    """Video files under ``root``, recursively, sorted by relative path.

    Follows symlinked directories (datasets are often symlinked in) while
    guarding against link cycles. Hidden files and directories (names starting
    with ".") are skipped: they are editor/OS debris such as macOS ``._x.mp4``.
    """
    found: list[Path] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink cycle or a second link to the same dir
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                found.append(Path(dirpath) / name)
    # Sort on the relative POSIX path so the order (and hence every clip index)
    # is identical across machines and filesystems.
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def video_files(root: str | os.PathLike) -> list[Path]:
    """The video files a FolderSource over ``root`` would probe (before any is opened)."""
    return _scan(Path(root))


def _normalize_rel(name: str, root: Path) -> str:
    """Maps a ``file`` entry of captions.jsonl to a root-relative POSIX path."""
    p = Path(name)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(root.resolve())
        except ValueError:
            return p.as_posix()  # outside root: will simply match nothing
    return Path(os.path.normpath(p)).as_posix()


def _load_captions_jsonl(path: Path, root: Path) -> dict[str, str]:
    """Parses ``{"file": ..., "caption": ...}`` lines; errors name the line number."""
    captions: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines (e.g. a trailing newline) are harmless
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(
                    f"{path}:{lineno}: invalid JSON ({err.msg}): {line.strip()[:200]!r}"
                ) from None
            if not isinstance(entry, dict):
                raise UsageError(f"{path}:{lineno}: expected a JSON object, got {type(entry).__name__}.")
            if not isinstance(entry.get("file"), str) or not isinstance(entry.get("caption"), str):
                raise UsageError(
                    f'{path}:{lineno}: each line needs string fields "file" and "caption", '
                    f'e.g. {{"file": "clips/a.mp4", "caption": "a dog runs"}}; got keys {sorted(entry)}.'
                )
            rel = _normalize_rel(entry["file"], root)
            if rel in captions:
                raise UsageError(
                    f"{path}:{lineno}: duplicate caption for {rel!r} (first given on line {first_line[rel]})."
                )
            captions[rel] = entry["caption"].strip()
            first_line[rel] = lineno
    return captions


class FolderSource:
    """Random-access, deterministic, picklable source of captioned clips from a folder.

    Each item is ``{"video": uint8 [num_frames, resolution, resolution, 3],
    "caption": str, "source": str (file path), "start_time": float (seconds)}``.

    Captions, in order of precedence: an entry in ``captions.jsonl`` (in
    ``root``, or the file given as ``captions``; its ``file`` fields are paths
    relative to ``root``), a sidecar ``<video stem>.txt`` next to the video,
    then ``default_caption``.

    Files that ffmpeg cannot read, or that are shorter than one clip
    (``num_frames / fps`` seconds), are skipped; ``self.skipped`` maps each such
    path to the reason.

    The object holds only paths, strings and small numpy arrays, so it pickles
    cheaply into grain workers; every ``__getitem__`` starts its own ffmpeg.

    Attributes:
        root: The scanned folder.
        files: Usable video files (str paths), sorted.
        skipped: ``{path: reason}`` for files that were left out.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        num_frames: int = 17,
        resolution: int = 64,
        fps: float = 8.0,
        captions: str | os.PathLike | None = None,
        clips_per_video: int | None = None,
        default_caption: str | None = None,
    ):
        """Scans ``root`` and builds the clip index.

        Args:
            root: Folder searched recursively for .mp4 .webm .gif .mov .mkv .avi.
            num_frames: Frames per clip.
            resolution: Output side length; short side scaled to it, centre crop.
            fps: Frame rate that clips are resampled to.
            captions: A JSONL caption file to use instead of ``root/captions.jsonl``.
            clips_per_video: At most this many clips per file, evenly spread
                over its length (None: every non-overlapping clip).
            default_caption: Caption for files that have no other caption.

        Raises:
            FileNotFoundError: ``root`` or ``captions`` does not exist.
            ValueError: A malformed captions file, a usable video without a
                caption, or no usable clip at all.
        """
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"FolderSource: video folder not found (or not a directory): {self.root}")
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}.")
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
            raise ValueError(f"resolution must be an int >= 1, got {resolution!r}.")
        if not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}.")
        if clips_per_video is not None and (
            not isinstance(clips_per_video, (int, np.integer)) or clips_per_video < 1
        ):
            raise ValueError(f"clips_per_video must be None or an int >= 1, got {clips_per_video!r}.")
        self.num_frames = int(num_frames)
        self.resolution = int(resolution)
        self.fps = float(fps)
        self.clips_per_video = None if clips_per_video is None else int(clips_per_video)
        self.default_caption = default_caption

        # ---- captions.jsonl (optional)
        if captions is not None:
            captions_path: Path | None = Path(captions)
            if not captions_path.is_file():
                raise FileNotFoundError(f"FolderSource: captions file not found: {captions_path}")
        else:
            captions_path = self.root / CAPTIONS_FILENAME
            if not captions_path.is_file():
                captions_path = None
        jsonl = _load_captions_jsonl(captions_path, self.root) if captions_path else {}
        self.captions_path = None if captions_path is None else str(captions_path)

        # ---- probe every candidate once (in parallel: each probe is an ffmpeg
        # subprocess, so threads overlap them without GIL contention).
        candidates = _scan(self.root)
        workers = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            probes = list(pool.map(self._safe_probe, candidates))

        clip_seconds = self.num_frames / self.fps
        self.skipped: dict[str, str] = {}
        num_unreadable = num_short = 0
        files: list[str] = []
        file_captions: list[str] = []
        clip_file: list[int] = []
        clip_start: list[float] = []
        missing: list[Path] = []
        matched_jsonl: set[str] = set()
        for path, info in zip(candidates, probes):
            if isinstance(info, str):
                self.skipped[str(path)] = f"unreadable: {info}"
                num_unreadable += 1
                continue
            # ffmpeg's fps filter yields round(duration * fps) frames; clip k
            # needs frames [k*N, (k+1)*N). The epsilon absorbs float error in
            # durations like 2.125 s * 8 fps.
            n_clips = int(math.floor((info["duration"] * self.fps + 1e-6) / self.num_frames))
            if n_clips < 1:
                self.skipped[str(path)] = (
                    f"too short: {info['duration']:.2f} s < {clip_seconds:.2f} s "
                    f"({self.num_frames} frames at {self.fps:g} fps)"
                )
                num_short += 1
                continue
            rel = path.relative_to(self.root).as_posix()
            caption = self._find_caption(path, rel, jsonl)
            if caption is None:
                caption = self.default_caption
            if caption is None:
                missing.append(path)
                continue
            matched_jsonl.add(rel)
            ks = np.arange(n_clips)
            if self.clips_per_video is not None and n_clips > self.clips_per_video:
                # Evenly spread over the file rather than the first k clips, so
                # long videos contribute their middle and end too.
                ks = np.unique(np.linspace(0, n_clips - 1, self.clips_per_video).round().astype(int))
            file_id = len(files)
            files.append(str(path))
            file_captions.append(caption)
            clip_file.extend([file_id] * len(ks))
            clip_start.extend(float(k) * clip_seconds for k in ks)

        if missing:
            first = missing[0]
            rel = first.relative_to(self.root).as_posix()
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            jsonl_target = self.captions_path or str(self.root / CAPTIONS_FILENAME)
            raise UsageError(
                f"FolderSource: no caption for {first}{more}. Fix it either way: "
                f'(1) add a line {{"file": "{rel}", "caption": "..."}} to {jsonl_target}, or '
                f"(2) put the caption in a sidecar text file {first.with_suffix('.txt')}. "
                "(Or pass default_caption=... to use one caption for uncaptioned files.)"
            )
        unmatched = sorted(set(jsonl) - matched_jsonl)
        if unmatched:
            logger.warning(
                "FolderSource: %d entries in %s match no usable video (first: %r)",
                len(unmatched), self.captions_path, unmatched[0],
            )  # fmt: skip

        self.files: list[str] = files
        self._file_captions: list[str] = file_captions
        self._clip_file = np.asarray(clip_file, dtype=np.int64)  # [num_clips]
        self._clip_start = np.asarray(clip_start, dtype=np.float64)  # [num_clips] seconds

        # Each file left out has its reason in the debug log, which the command lines show with -v.
        for path, reason in self.skipped.items():
            logger.debug("FolderSource: skipped %s: %s", path, reason)

        if len(self._clip_file) == 0:  # the error below says everything the summary line would
            found = (
                f"found {len(candidates)} video file(s)"
                if candidates
                else "found no files with a supported extension"
            )
            raise UsageError(
                f"FolderSource: no usable clips under {self.root}: {found}; "
                f"skipped {num_unreadable} unreadable and {num_short} too short. "
                f"Each video must be readable by ffmpeg, have one of the extensions "
                f"{' '.join(VIDEO_EXTENSIONS)}, and last at least "
                f"{clip_seconds:.3g} s (num_frames={self.num_frames} at fps={self.fps:g}). "
                "Each file's reason: -v on the command line, or FolderSource.skipped."
            )

        # Files left out are worth a line a user sees (WARNING).
        logger.log(
            logging.WARNING if self.skipped else logging.INFO,
            "FolderSource %s: %d videos usable, %d clips; skipped: %d unreadable, %d too short%s",
            self.root, len(files), len(self._clip_file), num_unreadable, num_short,
            " (each file's reason: -v on the command line, or FolderSource.skipped)" if self.skipped else "",
        )  # fmt: skip

    # ------------------------------------------------------------------ #

    @staticmethod
    def _safe_probe(path: Path) -> dict | str:
        """probe_video, with failures returned as a reason string (threads can't raise usefully)."""
        try:
            return probe_video(path)
        except (VideoReadError, OSError) as err:
            return str(err)

    @staticmethod
    def _find_caption(path: Path, rel: str, jsonl: dict[str, str]) -> str | None:
        if rel in jsonl and jsonl[rel]:
            return jsonl[rel]
        sidecar = path.with_suffix(".txt")
        if sidecar.is_file():
            text = sidecar.read_text(encoding="utf-8").strip()
            if text:  # an empty sidecar is treated as missing, not as caption ""
                return text
        return None

    # ------------------------------------------------------------------ #

    def __len__(self) -> int:
        return int(self._clip_file.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Decodes clip ``i``.

        Returns:
            ``{"video": uint8 [num_frames, resolution, resolution, 3],
            "caption": str, "source": str, "start_time": float}``.

        Raises:
            IndexError: ``i`` out of range.
            VideoReadError: The file disappeared or became unreadable after
                indexing, or is much shorter than its header said.
        """
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"FolderSource indices must be integers, got {type(i).__name__}.")
        n = len(self)
        idx = int(i) + n if i < 0 else int(i)
        if not 0 <= idx < n:
            raise IndexError(f"FolderSource index {i} out of range for {n} clips.")
        file_id = int(self._clip_file[idx])
        path = self.files[file_id]
        start = float(self._clip_start[idx])
        try:
            video = read_video(
                path, fps=self.fps, size=self.resolution, max_frames=self.num_frames, start_time=start
            )  # [t <= num_frames, R, R, 3]
        except FileNotFoundError:
            raise VideoReadError(
                f"Cannot read video {path}: file disappeared after FolderSource indexed it"
            ) from None
        t = video.shape[0]
        if t < self.num_frames:
            missing = self.num_frames - t
            if missing > max(1, int(self.num_frames * _MAX_PAD_FRACTION)):
                raise VideoReadError(
                    f"Cannot read video {path}: clip at {start:.3f} s gave {t} of "
                    f"{self.num_frames} frames (file changed or truncated since indexing?)"
                )
            # Container durations can overstate the video stream by a frame or
            # two; repeating the last frame keeps the clip shape fixed.
            video = np.concatenate([video, np.repeat(video[-1:], missing, axis=0)])
        return {
            "video": video,
            "caption": self._file_captions[file_id],
            "source": path,
            "start_time": start,
        }

    def __repr__(self) -> str:
        return (
            f"FolderSource(root={str(self.root)!r}, videos={len(self.files)}, clips={len(self)}, "
            f"num_frames={self.num_frames}, resolution={self.resolution}, fps={self.fps:g}, "
            f"skipped={len(self.skipped)})"
        )
