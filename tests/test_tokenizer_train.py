"""Tests for the tokenizer trainer (tokenizer/train.py), its metrics and evaluation (tokenizer/evaluate.py).

The training tests share one compiled step: every run below uses the same model/quantizer/loss config
(only steps, checkpoint interval and eval settings differ, which are not part of the compiled
program), so XLA:CPU compiles the step once per session. A 16x16x9 world, batch 8 on the 8-device
test mesh, a 2-stage width-8 autoencoder without res blocks.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from scipy import ndimage
from workdirs import tensorboard_tags, tiny_tokenizer_config

from tokenizer import evaluate as E
from tokenizer import train as T
from tokenizer.model import Autoencoder
from tokenizer.quantizers import make_quantizer
from videogen.data.sources import build_source
from videogen.training.mesh import make_mesh

CONFIG = "experiments/tokenizer_world.py"
ROOT = Path(__file__).resolve().parents[1]


def small_config(**overrides):
    """The tiny variant shrunk to 16x16x9 clips and a 2-stage width-8 model without res blocks (compression
    2x8x8): XLA:CPU compiles its train step in ~5 s instead of ~13 s for the tiny model."""
    c = tiny_tokenizer_config(
        "batch_size=8",
        # Constant learning rate: a run of N steps is then a prefix of any longer run (resume test).
        "optim.lr=3e-3",
        "optim.warmup_steps=0",
        "optim.min_lr_ratio=1.0",
        "eval.every=0",
        "eval.num_clips=16",
        "eval.batch_size=8",
        "eval.num_samples=4",
        "eval.data.num_clips=16",
        "log_every=5",
        "quiet=True",
        # Plain L2: the thresholds below were set on it (with the tiny config's edge weighting, recon_loss
        # fell to 0.80x in 30 steps, not below it); tests/test_tokenizer_losses.py covers edge weighting.
        "loss.edge_weight=0.0",
    )
    T.apply_overrides(c, [f"{k}={v}" for k, v in overrides.items()])
    return c


# ----------------------------------------------------------------------------- metrics


def _pair():
    """A fixed uint8 video pair [2, 3, 16, 20, 3]: random pixels, and a blocky (smooth) clip; + noise."""
    rng = np.random.default_rng(123)
    x = rng.integers(0, 256, size=(2, 3, 16, 20, 3)).astype(np.uint8)
    coarse = rng.integers(0, 256, size=(3, 4, 5, 3))
    x[1] = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.uint8)
    y = np.clip(x.astype(np.int64) + rng.integers(-40, 41, size=x.shape), 0, 255).astype(np.uint8)
    return x, y


def _ssim_scipy(x, y, data_range=255.0):
    """Reference: scipy Gaussian filtering (reflect) then cropping the border, as skimage does."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    f = lambda a: ndimage.gaussian_filter(a, sigma=1.5, truncate=3.5)  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s[5:-5, 5:-5].mean()


def test_psnr_ssim_identical_and_known_values():
    x, y = _pair()
    assert np.all(np.asarray(E.psnr(x, x)) == 100.0)  # capped, not inf
    np.testing.assert_allclose(np.asarray(E.ssim(x, x)), 1.0, atol=1e-6)
    # PSNR from its definition.
    mse = ((x.astype(np.float64) - y) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(np.asarray(E.psnr(x, y)), 10 * np.log10(255**2 / mse), rtol=1e-5)
    # Constant frames: SSIM reduces to the luminance term (2ab + C1) / (a^2 + b^2 + C1).
    a, b = np.full((1, 16, 16, 3), 100.0), np.full((1, 16, 16, 3), 140.0)
    c1 = (0.01 * 255) ** 2
    np.testing.assert_allclose(
        np.asarray(E.ssim(a, b)), (2 * 100 * 140 + c1) / (100**2 + 140**2 + c1), rtol=1e-5
    )
    with pytest.raises(ValueError, match="at least 11x11"):
        E.ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))


def test_ssim_matches_scipy_reference_and_skimage():
    x, y = _pair()
    got = np.asarray(E.ssim(x, y))  # per clip: mean over frames
    ref = [
        np.mean(
            [np.mean([_ssim_scipy(x[b, t, ..., c], y[b, t, ..., c]) for c in range(3)]) for t in range(3)]
        )
        for b in range(2)
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # skimage 0.26 structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    # data_range=255, channel_axis=-1), averaged over the 3 frames (computed once, not a dependency).
    np.testing.assert_allclose(got, [0.9515291096223714, 0.8721049669244652], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(E.psnr(x, y)), [21.14165551629563, 21.080825142511955], rtol=1e-5)


# ----------------------------------------------------------------------------- config


def test_config_variants_and_overrides():
    tiny = T.load_config(str(ROOT / CONFIG) + ":tiny")
    default = T.load_config(str(ROOT / CONFIG))
    assert (tiny.data.resolution, tiny.data.num_frames) == (32, 17)
    assert (default.data.resolution, default.data.num_frames) == (64, 17)
    # tiny: 4x4x4, so that 32x32 clips get the 8x8 token grid per latent frame that 64x64 gets from 4x8x8.
    for c, compression in ((tiny, (4, 4, 4)), (default, (4, 8, 8))):
        ae = T.autoencoder_config(c)
        assert ae.compression == compression and ae.code_dim == c.quantizer.lfq.num_bits
        assert c.data.resolution // ae.compression[1] == 8
        T.check_input_shape(ae, c.data.num_frames, c.data.resolution, c.data.resolution)
    T.apply_overrides(
        tiny,
        [
            "--config.steps=7",
            "optim.lr=1",
            "--config.model.channel_multipliers=[1,2]",
            "model.temporal_downsample=(True,)",
            "model.spatial_downsample=[True]",
            "--config.model.dtype=bfloat16",
            "--config.quantizer.kind=fsq",
            "--config.quantizer.fsq.levels=(5,5,5)",
            "quantizer.lfq.max_entropy_group_bits=8",
        ],
    )
    assert tiny.steps == 7 and tiny.optim.lr == 1.0 and isinstance(tiny.optim.lr, float)
    assert tiny.model.channel_multipliers == (1, 2) and tiny.model.dtype == "bfloat16"
    assert T.quantizer_kwargs(tiny) == {"kind": "fsq", "levels": [5, 5, 5]}
    ae = T.autoencoder_config(tiny)
    assert ae.code_dim == 3 and ae.compression == (2, 8, 8) and ae.dtype == "bfloat16"
    with pytest.raises(KeyError, match="unknown key 'optim.lrr'"):
        T.apply_overrides(tiny, ["--config.optim.lrr=1"])
    with pytest.raises(ValueError, match="--config.KEY=VALUE"):
        T.apply_overrides(tiny, ["--config.steps"])
    with pytest.raises(ValueError, match="unknown variant"):
        T.load_config(str(ROOT / CONFIG) + ":huge")


# ----------------------------------------------------------------------------- evaluation


def test_evaluate_untrained_tokenizer_on_a_split(tmp_path):
    c = small_config()
    model = Autoencoder(T.autoencoder_config(c), rngs=nnx.Rngs(0))
    q = make_quantizer(**T.quantizer_kwargs(c))
    source = build_source(T.eval_data_spec(c), "test")
    mesh = make_mesh({"data": -1})
    # 13 clips with batches of 8: the second batch is padded, padding must not count.
    m = E.evaluate_tokenizer(
        model, q, source, batch_size=8, mesh=mesh, num_clips=13, num_samples=3, sample_path=tmp_path / "s.gif"
    )
    assert m["num_clips"] == 13
    tokens_per_clip = 5 * 2 * 2  # 9 frames -> 5 latent frames, 16 px / 8 -> 2x2
    assert m["tokens"] == 13 * tokens_per_clip
    assert 0.0 < m["usage"] <= 1.0 and m["used_codes"] == round(m["usage"] * q.codebook_size)
    assert 1.0 <= m["perplexity"] <= m["used_codes"] + 1e-6
    assert 0.0 <= m["judge_all_correct"] <= 1.0 and np.isfinite(m["psnr"]) and -1.0 <= m["ssim"] <= 1.0
    assert (tmp_path / "s.gif").stat().st_size > 0 and (tmp_path / "s.mp4").stat().st_size > 0


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def run30(tmp_path_factory):
    """30 steps with checkpoints every 5 (all kept), evaluation at the end."""
    workdir = tmp_path_factory.mktemp("tok30")
    config = small_config(steps=30, ckpt_every=5, max_to_keep=10)
    return workdir, config, T.train(config, workdir)


def test_evaluate_cli_renders_as_many_world_clips_as_asked(run30):
    # The config's eval source holds 16 clips; --num-clips 24 must evaluate 24, not quietly stop at 16.
    workdir, _, _ = run30
    m = E.main(["--workdir", str(workdir), "--num-clips", "24", "--samples", "0", "--no-judge"])
    assert m["num_clips"] == 24 and m["tokens"] == 24 * 5 * 2 * 2 and m["step"] == 30


def _logged(workdir, kind="train"):
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind]


def test_train_end_to_end_loss_decreases(run30):
    workdir, config, final = run30
    train_logs = _logged(workdir)
    assert [r["step"] for r in train_logs] == [5, 10, 15, 20, 25, 30]
    first, last = train_logs[0], train_logs[-1]
    assert last["recon_loss"] < 0.8 * first["recon_loss"], (first["recon_loss"], last["recon_loss"])
    assert last["loss"] < first["loss"] and last["psnr"] > first["psnr"] + 1.0
    assert final["step"] == 30 and final["data_step"] == 30 and final["resumed_from"] is None
    for key in (
        "eval/psnr",
        "eval/ssim",
        "eval/usage",
        "eval/perplexity",
        "eval/judge_all_correct",
        "s_per_step",
        "train/lr",
        "train/steps_per_sec",
        "train/q/perplexity",
    ):
        assert key in final and np.isfinite(final[key]), key
    assert 0.0 < final["eval/usage"] <= 1.0 and 0.0 <= final["eval/judge_all_correct"] <= 1.0
    assert final["train/lr"] == pytest.approx(3e-3)
    # Artifacts: TensorBoard events, samples, resolved config, checkpoints every 5 steps.
    tags = tensorboard_tags(workdir)
    for tag in (
        "train/loss",
        "train/q/perplexity",
        "eval/psnr",
        "eval/ssim",
        "eval/usage",
        "eval/perplexity",
    ):
        assert (tag, 30, "simple_value") in tags, tag
    assert ("eval/reconstructions", 30, "image") in tags
    for suffix in (".gif", ".mp4", ".png"):
        assert (workdir / "samples" / f"step_000030{suffix}").is_file(), suffix
    assert json.loads((workdir / "config.json").read_text())["steps"] == 30
    assert T.latest_step(workdir) == 30
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [
        5,
        10,
        15,
        20,
        25,
        30,
    ]


def test_load_tokenizer_encode_decode(run30):
    workdir, config, final = run30
    model, q, cfg = T.load_tokenizer(workdir)
    assert cfg.steps == 30 and q.codebook_size == 64
    source = build_source(T.eval_data_spec(cfg), "test")
    video = np.stack([source[i]["video"] for i in range(2)])  # [2, 9, 16, 16, 3] uint8
    ids = T.encode_video(model, q, video)
    assert ids.shape == (2, 5, 2, 2) and ids.dtype == np.int32
    assert int(ids.min()) >= 0 and int(ids.max()) < 64
    recon = T.decode_indices(model, q, ids)
    assert recon.shape == video.shape and recon.dtype == np.uint8
    # Same as the evaluation path (quantizer straight-through value == indices_to_codes).
    ref, ref_ids, _, _ = E.reconstruct(model, q, video)
    np.testing.assert_array_equal(np.asarray(ids), ref_ids)
    assert np.abs(np.asarray(recon).astype(int) - ref.astype(int)).max() <= 1
    # Single clips work too.
    assert T.encode_video(model, q, video[0]).shape == (5, 2, 2)
    # EMA and raw params differ (EMA is what load_tokenizer returns by default).
    raw, _, _ = T.load_tokenizer(workdir, ema=False)
    k_ema = model.encoder.conv_in.conv.kernel[...]
    k_raw = raw.encoder.conv_in.conv.kernel[...]
    assert not np.allclose(np.asarray(k_ema), np.asarray(k_raw))


def test_resume_continues_from_checkpoint_and_pipeline_position(run30, tmp_path):
    workdir30, _, _ = run30
    first = T.train(small_config(steps=10, ckpt_every=5, max_to_keep=3), tmp_path)
    assert first["step"] == 10 and first["data_step"] == 10
    second = T.train(small_config(steps=15, ckpt_every=5, max_to_keep=3), tmp_path)
    assert second["resumed_from"] == 10 and second["start_step"] == 10 and second["data_start_step"] == 10
    assert second["step"] == 15 and second["data_step"] == 15
    assert [r["step"] for r in _logged(tmp_path)] == [5, 10, 15]  # the log continues, no step repeated
    pipe = json.loads((tmp_path / "checkpoints" / "15" / "pipeline" / "metadata").read_text())
    assert pipe["step"] == 15
    # 10 steps + 5 resumed steps == the first 15 steps of an uninterrupted run (constant lr, same data order):
    # params, optimizer moments and EMA all came back, and the data continued at batch 10.
    resumed, _, _ = T.load_tokenizer(tmp_path, ema=False)
    straight, _, _ = T.load_tokenizer(workdir30, step=15, ema=False)
    a = jax.tree.leaves(nnx.state(resumed, nnx.Param))
    b = jax.tree.leaves(nnx.state(straight, nnx.Param))
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    ema_r, _, _ = T.load_tokenizer(tmp_path)
    ema_s, _, _ = T.load_tokenizer(workdir30, step=15)
    for x, y in zip(
        jax.tree.leaves(nnx.state(ema_r, nnx.Param)), jax.tree.leaves(nnx.state(ema_s, nnx.Param))
    ):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


def test_vq_bfloat16_run_saves_and_resumes_quantizer_state(tmp_path):
    """VQ keeps state outside the params (EMA codebook, counts, a typed PRNG key): it is checkpointed too."""
    cfg = dict(
        steps=3,
        ckpt_every=3,
        **{
            "quantizer.kind": "vq",
            "quantizer.vq.codebook_size": 32,
            "quantizer.vq.code_dim": 4,
            "model.dtype": "bfloat16",
        },
    )
    T.train(small_config(**cfg), tmp_path)
    _, q3, _ = T.load_tokenizer(tmp_path)
    assert jax.dtypes.issubdtype(q3.restart_rng.key[...].dtype, jax.dtypes.prng_key)
    assert int(q3.restart_rng.count[...]) == 3  # one restart draw per step
    assert not np.allclose(np.asarray(q3.ema_count[...]), 1.0)  # EMA statistics moved away from their init
    second = T.train(small_config(**{**cfg, "steps": 4}), tmp_path)
    assert second["resumed_from"] == 3 and second["step"] == 4
    model, q4, config = T.load_tokenizer(tmp_path)
    assert int(q4.restart_rng.count[...]) == 4 and config.model.dtype == "bfloat16"
    assert np.isfinite(second["train/loss"]) and 0.0 < second["eval/usage"] <= 1.0


def test_fsdp_shards_what_divides_and_replicates_the_rest(tmp_path):
    """conv_out -> fsdp on a data 2 x fsdp 4 mesh: widths 4 divides are sharded; the ones it does not (the
    pixel MLP's 3 outputs, LFQ's 6 code channels) stay replicated instead of failing; training runs."""
    c = small_config(steps=2, ckpt_every=2, **{"mesh.data": 2, "mesh.fsdp": 4})
    T.apply_overrides(c, ["logical_axis_rules=(('conv_in', None), ('conv_out', 'fsdp'), ('norm', None))"])
    mesh = T.make_mesh(c)
    tx, _ = T.make_optimizer(c)
    _, shardings = T.state_shardings(c, mesh, tx)
    abstract = T.abstract_state(c, mesh, tx, shardings)
    pairs = list(zip(jax.tree.leaves(abstract["params"]), jax.tree.leaves(shardings["params"])))
    sharded = [a.shape for a, s in pairs if "fsdp" in str(s.spec)]
    odd = [a.shape for a, s in pairs if a.shape and a.shape[-1] % 4]
    assert sharded and odd, (sharded, odd)
    assert all("fsdp" not in str(s.spec) for a, s in pairs if a.shape and a.shape[-1] % 4)
    m = T.train(c, tmp_path)
    assert m["step"] == 2 and np.isfinite(m["train/loss"])


def test_l1_run_keeps_the_last_n_checkpoints(tmp_path):
    """loss.recon=l1 trains (the loss falls), and max_to_keep=2 leaves only the two newest checkpoints."""
    c = small_config(steps=8, ckpt_every=2, max_to_keep=2, log_every=2, **{"loss.recon": "l1"})
    m = T.train(c, tmp_path)
    logs = _logged(tmp_path)
    assert m["step"] == 8 and logs[-1]["recon_loss"] < logs[0]["recon_loss"], logs
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [6, 8]
