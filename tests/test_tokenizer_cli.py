"""`videogen encode / decode / eval-tokenizer` (tokenizer/codes.py) on a tokenizer trained for 3 steps.

The tokenizer is the 16x16x9 one of tests/test_tokenizer_train.py (same overrides, so both files share
one compiled train step in a session): compression 2x8x8 -> codes [5, 2, 2], LFQ 6 bits (64 codes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from workdirs import save_initialised_tokenizer, tiny_tokenizer_config

from tokenizer import codes as C
from tokenizer import train as T
from videogen import cli
from videogen.data import video_io, world
from videogen.data.sources import build_source

ROOT = Path(__file__).resolve().parents[1]


def small_config(**overrides):
    c = tiny_tokenizer_config(
        "batch_size=8",
        "optim.lr=3e-3",
        "optim.warmup_steps=0",
        "optim.min_lr_ratio=1.0",
        "eval.every=0",
        "eval.num_clips=8",
        "eval.batch_size=8",
        "eval.num_samples=0",
        "eval.data.num_clips=16",
        "log_every=5",
        "quiet=True",
    )
    T.apply_overrides(c, [f"{k}={v}" for k, v in overrides.items()])
    return c


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    """3 training steps, checkpoints at steps 2 and 3."""
    wd = tmp_path_factory.mktemp("tok")
    T.train(small_config(steps=3, ckpt_every=2), wd)
    assert T.latest_step(wd) == 3
    return wd


@pytest.fixture(scope="module")
def loaded(tok):
    model, q, _ = T.load_tokenizer(tok)
    return model, q


@pytest.fixture(scope="module")
def other_tok(tmp_path_factory) -> Path:
    """Another architecture (LFQ 5 bits): an initialised state saved as tokenizer.train saves it."""
    return save_initialised_tokenizer(
        tmp_path_factory.mktemp("tok_other"), small_config(**{"quantizer.lfq.num_bits": 5})
    )


def _clip(index=0, frames=9, resolution=16) -> np.ndarray:
    src = world.WorldSource(world.WorldConfig(resolution=resolution, num_frames=frames), "test")
    return src[index]["video"]


def _encode(*args):
    cli.main(["encode", *map(str, args)])


def _exit_message(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in argv])
    assert info.value.code == 2
    return capsys.readouterr().err


def test_encode_decode_npy_matches_library(tok, loaded, tmp_path):
    model, q = loaded
    video = _clip(3)
    np.save(tmp_path / "v.npy", video)
    _encode("--tokenizer", tok, "--input", tmp_path / "v.npy", "--output", tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz", allow_pickle=False) as z:
        codes = z["codes"]
        meta = {k: z[k] for k in z.files}
    want = np.asarray(T.encode_video(model, q, video))
    assert codes.dtype == np.int32 and codes.shape == (5, 2, 2)
    np.testing.assert_array_equal(codes, want)
    assert int(meta["codebook_size"]) == 64 and list(meta["compression"]) == [2, 8, 8]
    assert int(meta["source_frames"]) == 9 and int(meta["source_height"]) == int(meta["source_width"]) == 16
    assert int(meta["tokenizer_step"]) == 3 and str(meta["tokenizer_workdir"]) == str(tok.resolve())
    assert json.loads(str(meta["tokenizer_config"]))["quantizer"] == {
        "kind": "lfq",
        **small_config().quantizer.lfq,
    }
    # Decoding gives the library's decode of the same codes, exactly (.npy), and a playable mp4.
    cli.main(
        [
            "decode",
            "--tokenizer",
            str(tok),
            "--input",
            str(tmp_path / "v.npz"),
            "--output",
            str(tmp_path / "r.npy"),
        ]
    )
    recon = np.load(tmp_path / "r.npy", allow_pickle=False)
    assert recon.shape == video.shape and recon.dtype == np.uint8
    np.testing.assert_array_equal(recon, np.asarray(T.decode_indices(model, q, want)))
    cli.main(
        [
            "decode",
            "--tokenizer",
            str(tok),
            "--input",
            str(tmp_path / "v.npz"),
            "--output",
            str(tmp_path / "r.mp4"),
        ]
    )
    assert video_io.read_video(tmp_path / "r.mp4").shape == (9, 16, 16, 3)


def test_encode_video_file_with_fitting_options(tok, loaded, tmp_path, capsys):
    model, q = loaded
    # 12 frames of 32x20 (T x H x W): 12 is not 1 + 2k and 20 is not a multiple of 8.
    gif = video_io.write_gif(tmp_path / "in.gif", _clip(5, frames=12, resolution=32)[:, :, 6:26], fps=8)
    err = _exit_message(
        capsys, ["encode", "--tokenizer", tok, "--input", gif, "--output", tmp_path / "x.npz"]
    )
    assert str(gif) in err and "12x32x20" in err, err
    assert "--frames 11" in err and "--resize 16" in err and "--crop (centre crop to 32x16)" in err, err
    assert not (tmp_path / "x.npz").exists()
    # The suggested fix works, and the codes are the library's on the same decoded, fitted frames.
    _encode("--tokenizer", tok, "--input", gif, "--output", tmp_path / "x.npz", "--frames", "auto", "--crop")
    codes, meta = C.load_codes(tmp_path / "x.npz")
    frames = video_io.read_video(gif)[:11, :, 2:18]
    assert codes.shape == (1, 6, 4, 2) and meta["single"]
    assert (meta["frames"], meta["height"], meta["width"]) == (11, 32, 16)
    np.testing.assert_array_equal(codes[0], np.asarray(T.encode_video(model, q, frames)))
    assert meta["source_frames"] == 12 and (meta["source_height"], meta["source_width"]) == (32, 20)
    assert meta["fps"] == pytest.approx(8.0, rel=0.05)  # GIF delays are whole centiseconds: 12 cs -> 8.33 fps
    # --resize: short side to 16, centre crop 16x16 (ffmpeg); decode to a GIF of that shape.
    _encode(
        "--tokenizer", tok, "--input", gif, "--output", tmp_path / "y.npz", "--frames", "9", "--resize", "16"
    )
    cli.main(
        [
            "decode",
            "--tokenizer",
            str(tok),
            "--input",
            str(tmp_path / "y.npz"),
            "--output",
            str(tmp_path / "y.gif"),
        ]
    )
    assert video_io.read_video(tmp_path / "y.gif").shape == (9, 16, 16, 3)
    # Bad option values say what would work.
    err = _exit_message(
        capsys,
        [
            "encode",
            "--tokenizer",
            tok,
            "--input",
            gif,
            "--output",
            tmp_path / "z.npz",
            "--frames",
            "10",
            "--crop",
        ],
    )
    assert "--frames 9" in err and "1 + 2k" in err, err
    err = _exit_message(
        capsys,
        [
            "encode",
            "--tokenizer",
            tok,
            "--input",
            gif,
            "--output",
            tmp_path / "z.npz",
            "--frames",
            "13",
            "--crop",
        ],
    )
    assert "only 12 frames" in err and "--frames 11" in err, err
    err = _exit_message(
        capsys,
        [
            "encode",
            "--tokenizer",
            tok,
            "--input",
            gif,
            "--output",
            tmp_path / "z.npz",
            "--frames",
            "9",
            "--resize",
            "20",
        ],
    )
    assert "not a multiple of the spatial compression 8" in err and "16 or 24" in err, err
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    err = _exit_message(
        capsys,
        ["encode", "--tokenizer", tok, "--input", tmp_path / "broken.mp4", "--output", tmp_path / "z.npz"],
    )
    assert "Cannot read video" in err and "broken.mp4" in err, err


def test_clips_cut_a_long_video(tok, loaded, tmp_path):
    model, q = loaded
    video = _clip(7, frames=20)
    np.save(tmp_path / "long.npy", video)
    _encode(
        "--tokenizer",
        tok,
        "--input",
        tmp_path / "long.npy",
        "--output",
        tmp_path / "c.npz",
        "--frames",
        "9",
        "--clips",
    )
    codes, meta = C.load_codes(tmp_path / "c.npz")
    assert codes.shape == (2, 5, 2, 2) and not meta["single"]
    want = np.asarray(T.encode_video(model, q, np.stack([video[:9], video[9:18]])))
    np.testing.assert_array_equal(codes, want)
    cli.main(
        [
            "decode",
            "--tokenizer",
            str(tok),
            "--input",
            str(tmp_path / "c.npz"),
            "--output",
            str(tmp_path / "c.npy"),
        ]
    )
    assert np.load(tmp_path / "c.npy", allow_pickle=False).shape == (2, 9, 16, 16, 3)
    # A clip length that does not fit names the clip lengths that do (compression 2 in time: 9 or 11).
    with pytest.raises(C.CodesError, match="each clip must have 1 \\+ 2k frames; use --frames 9 \\(or 11\\)"):
        C.fit_clips(video, (2, 8, 8), name="long.npy", frames=10, clips=True)


def test_decode_refuses_codes_of_another_tokenizer(tok, other_tok, tmp_path, capsys):
    np.save(tmp_path / "v.npy", _clip(1))
    _encode("--tokenizer", tok, "--input", tmp_path / "v.npy", "--output", tmp_path / "v.npz")
    err = _exit_message(
        capsys,
        ["decode", "--tokenizer", other_tok, "--input", tmp_path / "v.npz", "--output", tmp_path / "r.npy"],
    )
    assert "different tokenizer" in err and str(tok.resolve()) in err and str(other_tok.resolve()) in err, err
    assert "64 codes" in err and "32 codes" in err
    assert not (tmp_path / "r.npy").exists()
    # Same architecture, other weights (checkpoint 2 of the same run): refused, with the step to use.
    _encode("--tokenizer", tok, "--input", tmp_path / "v.npy", "--output", tmp_path / "s2.npz", "--step", "2")
    err = _exit_message(
        capsys, ["decode", "--tokenizer", tok, "--input", tmp_path / "s2.npz", "--output", tmp_path / "r.npy"]
    )
    assert "other weights" in err and "--step 2" in err and "step 3" in err, err
    cli.main(
        [
            "decode",
            "--tokenizer",
            str(tok),
            "--step",
            "2",
            "--input",
            str(tmp_path / "s2.npz"),
            "--output",
            str(tmp_path / "r.npy"),
        ]
    )
    assert np.load(tmp_path / "r.npy", allow_pickle=False).shape == (9, 16, 16, 3)


def test_codes_files_are_plain_arrays(tmp_path):
    np.savez(
        tmp_path / "obj.npz", codes=np.zeros((5, 2, 2), np.int32), format=np.asarray([{"a": 1}], dtype=object)
    )
    with pytest.raises(C.CodesError, match="not a videogen codes file"):
        C.load_codes(tmp_path / "obj.npz")
    np.savez(tmp_path / "plain.npz", codes=np.zeros((5, 2, 2), np.int32))
    with pytest.raises(C.CodesError, match="written by `videogen encode`"):
        C.load_codes(tmp_path / "plain.npz")
    with pytest.raises(TypeError, match="not a plain array"):
        C.save_codes(tmp_path / "bad.npz", np.zeros((5, 2, 2)), {"x": {"a": 1}})


def pixel_features(videos) -> np.ndarray:
    """A cheap stand-in for I3D: per-frame channel means and stds ([N, 2 * 3 * T])."""
    x = np.asarray(videos, np.float64) / 255.0
    return np.concatenate(
        [x.mean(axis=(2, 3)).reshape(len(x), -1), x.std(axis=(2, 3)).reshape(len(x), -1)], axis=1
    )


def test_eval_tokenizer_json(tok, loaded, tmp_path, capsys, monkeypatch):
    from videogen.eval import fvd

    embedded = []

    def fake_i3d(videos, **kw):  # I3D on CPU takes ~2 s per clip: a cheap embedding, and what it was given
        embedded.append(np.asarray(videos))
        return pixel_features(videos)

    monkeypatch.setattr(fvd, "i3d_features", fake_i3d)
    out = tmp_path / "m" / "heldout.json"
    cli.main(
        [
            "eval-tokenizer",
            "--workdir",
            str(tok),
            "--split",
            "heldout",
            "--num-clips",
            "6",
            "--out",
            str(out),
            "--rfvd",
        ]
    )
    m = json.loads(out.read_text())
    assert m == json.loads(capsys.readouterr().out)
    for key in (
        "psnr",
        "ssim",
        "usage",
        "used_codes",
        "perplexity",
        "entropy",
        "judge_all_correct",
        "judge_colour",
        "judge_motion",
        "rfvd",
    ):
        # judge_motion averages over the objects whose colour was found: NaN when none was (3-step tokenizer).
        assert np.isfinite(m[key]) or (key == "judge_motion" and m["judge_colour"] == 0), key
    assert m["split"] == "heldout" and m["step"] == 3 and m["num_clips"] == 6 and m["tokens"] == 6 * 20
    assert 0 < m["usage"] <= 1 and 1 <= m["perplexity"] <= m["used_codes"] and m["codebook_size"] == 64
    # rFVD compared the original heldout clips with their reconstructions, batch by batch (one batch of 8:
    # the 6 clips and 2 copies of the last).
    model, q = loaded
    src = build_source(T.eval_data_spec(small_config()), "heldout")
    originals = np.stack([src[i]["video"] for i in range(6)])
    assert len(embedded) == 2 and embedded[0].shape == (8,) + originals.shape[1:]
    np.testing.assert_array_equal(embedded[0][:6], originals)
    recon = np.asarray(T.decode_indices(model, q, T.encode_video(model, q, originals)))
    assert np.abs(embedded[1][:6].astype(int) - recon).max() <= 1
    want = fvd.fvd(pixel_features(embedded[0][:6]), pixel_features(embedded[1][:6]))
    assert m["rfvd"] == pytest.approx(want, rel=1e-6)
    err = _exit_message(capsys, ["eval-tokenizer", "--workdir", tmp_path])
    assert "config.json not found" in err and "a tokenizer workdir" in err, err


def test_eval_tokenizer_renders_more_world_clips_than_the_config_and_refuses_more_than_a_folder_has(
    tok, tmp_path, capsys
):
    # The config's eval world holds 16 clips; the world renders any number, so 24 asked are 24 evaluated.
    m = C.evaluate(tok, num_clips=24, judge=False)
    assert m["num_clips"] == 24
    # A folder has what it has: the config's own eval size (8) is cut to it; an explicit larger ask is refused.
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        video_io.write_mp4(folder / f"v{i}.mp4", _clip(i, frames=9), fps=8)
    wd = tmp_path / "tok_folder"
    import shutil

    shutil.copytree(tok, wd)
    cfg = json.loads((wd / "config.json").read_text())
    cfg["data"] = {"kind": "folder", "root": str(folder), "resolution": 16, "num_frames": 9, "fps": 8.0}
    (wd / "config.json").write_text(json.dumps(cfg))
    m = C.evaluate(wd)
    assert m["num_clips"] == 3 and "judge_all_correct" not in m
    with pytest.raises(ValueError, match="has only 3 clips"):
        C.evaluate(wd, num_clips=5)


def test_codes_still_decode_after_a_compute_only_config_change(tok, tmp_path):
    """remat / dtype / conv_impl change how a tokenizer computes, not what it is: a resume may flip them (it
    rewrites config.json), and codes written before must still decode with that workdir."""
    import shutil

    np.save(tmp_path / "v.npy", _clip(2))
    _encode("--tokenizer", tok, "--input", tmp_path / "v.npy", "--output", tmp_path / "v.npz")
    wd = tmp_path / "tok_remat"
    shutil.copytree(tok, wd)
    cfg = json.loads((wd / "config.json").read_text())
    cfg["model"]["remat"] = not cfg["model"]["remat"]
    cfg["model"]["dtype"] = "bfloat16"
    (wd / "config.json").write_text(json.dumps(cfg))
    cli.main(
        [
            "decode",
            "--tokenizer",
            str(wd),
            "--input",
            str(tmp_path / "v.npz"),
            "--output",
            str(tmp_path / "r.npy"),
        ]
    )
    assert np.load(tmp_path / "r.npy", allow_pickle=False).shape == (9, 16, 16, 3)


def test_trains_on_a_folder_of_uncaptioned_videos(tmp_path, capsys):
    """The shipped config's eval section sizes a world eval set (eval.data.num_clips): with a folder as data the
    trainer must still start (that entry is dropped), read videos without captions, and evaluate what the
    folder has (3 clips, not the config's 8), saying that eval reads the training folder."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        video_io.write_mp4(folder / f"v{i}.mp4", _clip(i, frames=9), fps=8)
    c = small_config(steps=2, **{"eval.every": 2})
    c.data = {"kind": "folder", "root": str(folder), "resolution": 16, "num_frames": 9, "fps": 8.0}
    out = T.train(c, tmp_path / "wd")
    assert out["step"] == 2 and out["eval/num_clips"] == 3, out
    assert "fewer than eval.num_clips=8: evaluating all 3" in capsys.readouterr().out
