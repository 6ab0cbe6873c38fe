"""Tests for the causal 3D CNN video autoencoder (tokenizer/model.py).

Widths are tiny and most tests share one model and one compiled encode/decode per input shape,
because XLA:CPU compile time dominates here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tokenizer.model import (
    AXIS_NAMES,
    LOGICAL_AXIS_RULES,
    Autoencoder,
    AutoencoderConfig,
    amplify_chroma,
    check_input_shape,
    conv3d_as_matmul,
    depth_to_space,
    param_count,
    space_to_depth,
)

_encode = nnx.jit(lambda m, x: m.encode(x))
_decode = nnx.jit(lambda m, z: m.decode(z))


def _video(shape, seed=0):
    # numpy, not jax.random: XLA:CPU compiles one threefry sampler per shape (seconds each here).
    return jnp.asarray(np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32))


@pytest.fixture(scope="module")
def tiny():
    """patch_size 4, compression 4x8x8, 1 res block per stage, AdaGN decoder, pixel MLPs on both ends
    and chroma preconditioning (so the causality and image tests below cover them too)."""
    cfg = AutoencoderConfig.tiny(pixel_mlp_dim=16, chroma_gain=4.0, conv_impl="matmul")  # the CPU default
    assert cfg.compression == (4, 8, 8)
    return Autoencoder(cfg, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def tiny_video():
    return _video((1, 17, 32, 32, 3))


@pytest.fixture(scope="module")
def tiny_latents(tiny, tiny_video):
    return _encode(tiny, tiny_video)


# ----------------------------------------------------------------------------- the matmul conv path


@pytest.mark.parametrize(
    "frames, kernel, strides, c_in, c_out",
    [
        (19, (3, 3, 3), (1, 1, 1), 8, 16),  # the res-block conv (time already front-padded by 2)
        (19, (3, 3, 3), (2, 1, 1), 8, 8),  # temporal downsample
        (19, (3, 3, 3), (2, 2, 2), 4, 8),  # space and time downsample
        (3, (3, 3, 3), (1, 1, 1), 5, 3),  # one output frame (an image)
        (6, (1, 3, 3), (1, 1, 1), 6, 4),  # temporal_kernel_size=1
        (7, (3, 1, 1), (1, 1, 1), 4, 4),  # no spatial taps
        (9, (2, 4, 4), (1, 2, 2), 3, 5),  # even kernels (asymmetric 'SAME' padding)
    ],
)
def test_conv3d_as_matmul_equals_lax_conv(frames, kernel, strides, c_in, c_out):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, frames, 12, 10, c_in)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal(kernel + (c_in, c_out)).astype(np.float32) / 4)
    kh, kw = kernel[1:]
    pad = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(
            x,
            w,
            strides,
            ((0, 0),) + pad,
            dimension_numbers=("NTHWC", "THWIO", "NTHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )

    ref = lax_conv(x, w)
    got = conv3d_as_matmul(x, w, strides, pad)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    # Gradients too: the trainer differentiates through this path.
    cot = jnp.asarray(rng.standard_normal(ref.shape).astype(np.float32))
    g_ref = jax.grad(lambda x, w: jnp.sum(lax_conv(x, w) * cot), argnums=(0, 1))(x, w)
    g_got = jax.grad(lambda x, w: jnp.sum(conv3d_as_matmul(x, w, strides, pad) * cot), argnums=(0, 1))(x, w)
    for a, b in zip(g_got, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_conv_impls_share_params_and_function(tiny_video):
    """'lax' and 'matmul' build the same parameter tree and compute the same autoencoder, so a checkpoint
    trained with one runs with the other."""
    import dataclasses

    cfg = AutoencoderConfig.tiny(pixel_mlp_dim=16, chroma_gain=4.0)
    models = {
        impl: Autoencoder(dataclasses.replace(cfg, conv_impl=impl), rngs=nnx.Rngs(3))
        for impl in ("lax", "matmul")
    }
    states = {k: nnx.state(m, nnx.Param) for k, m in models.items()}
    assert jax.tree.structure(states["lax"]) == jax.tree.structure(states["matmul"])
    for a, b in zip(jax.tree.leaves(states["lax"]), jax.tree.leaves(states["matmul"])):
        np.testing.assert_array_equal(a, b)
    out = {k: nnx.jit(lambda m, x: m(x))(m, tiny_video) for k, m in models.items()}
    np.testing.assert_allclose(out["matmul"], out["lax"], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="conv_impl"):
        AutoencoderConfig.tiny(conv_impl="cudnn")


# ----------------------------------------------------------------------------- config / shapes


def test_compression_is_reachable_by_config():
    assert AutoencoderConfig().compression == (4, 8, 8)
    assert AutoencoderConfig(patch_size=2).compression == (4, 16, 16)
    five = AutoencoderConfig(
        channel_multipliers=(1, 2, 2, 4, 4), temporal_downsample=(False, False, True, True)
    )
    assert five.compression == (4, 16, 16)
    assert AutoencoderConfig(temporal_downsample=(False, False, False)).compression == (1, 8, 8)
    assert AutoencoderConfig.tiny().compression == (4, 8, 8)
    with pytest.raises(ValueError, match="temporal_downsample has 2 entries but 4 stages"):
        AutoencoderConfig(temporal_downsample=(True, True))
    with pytest.raises(ValueError, match="num_groups=32 does not divide"):
        AutoencoderConfig(channels=8)


def test_shapes_patch4(tiny, tiny_video, tiny_latents):
    assert tiny.latent_shape(17, 32, 32) == (5, 4, 4, 8)
    assert tiny_latents.shape == (1, 5, 4, 4, 8) and tiny_latents.dtype == jnp.float32
    out = _decode(tiny, tiny_latents)
    assert out.shape == tiny_video.shape and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))


def test_shapes_no_patch_4x8x8():
    cfg = AutoencoderConfig(
        channels=4, channel_multipliers=(1, 1, 2, 2), num_res_blocks=0, code_dim=6, num_groups=2
    )
    assert cfg.compression == (4, 8, 8) and cfg.patch_size == 1
    model = Autoencoder(cfg, rngs=nnx.Rngs(1))
    z = _encode(model, _video((1, 17, 32, 32, 3)))
    assert z.shape == (1, 5, 4, 4, 6) == (1,) + model.latent_shape(17, 32, 32)
    assert _decode(model, z).shape == (1, 17, 32, 32, 3)


def test_amplify_chroma_keeps_luma_and_inverts():
    x = _video((2, 3, 4, 4, 3), seed=3)
    y = amplify_chroma(x, 6.0)
    np.testing.assert_allclose(np.mean(y, -1), np.mean(x, -1), atol=1e-6)  # luminance untouched
    np.testing.assert_allclose(
        y - np.mean(y, -1, keepdims=True), 6.0 * (x - np.mean(x, -1, keepdims=True)), atol=1e-5
    )
    np.testing.assert_allclose(amplify_chroma(y, 1 / 6.0), x, atol=1e-5)
    grey = jnp.broadcast_to(x[..., :1], x.shape)
    np.testing.assert_allclose(amplify_chroma(grey, 6.0), grey, atol=1e-5)  # grey pixels have no chroma


def test_space_depth_roundtrip():
    x = _video((2, 3, 8, 12, 3))
    y = space_to_depth(x, 4)
    assert y.shape == (2, 3, 2, 3, 48)
    np.testing.assert_array_equal(depth_to_space(y, 1, 4), x)


# ----------------------------------------------------------------------------- image path and causality


def test_image_is_frame_zero(tiny, tiny_video, tiny_latents):
    image = tiny_video[:, :1]
    z_img = _encode(tiny, image)
    assert z_img.shape == (1, 1, 4, 4, 8)
    np.testing.assert_allclose(z_img, tiny_latents[:, :1], atol=1e-5, rtol=1e-5)
    x_img = _decode(tiny, tiny_latents[:, :1])
    assert x_img.shape == (1, 1, 32, 32, 3)
    np.testing.assert_allclose(x_img, _decode(tiny, tiny_latents)[:, :1], atol=1e-5, rtol=1e-5)


def test_encoder_is_causal(tiny, tiny_video, tiny_latents):
    for j in range(4):
        cut = 4 * j + 1  # frames 0..4j may influence latent frames 0..j
        noise = _video((1, 17 - cut, 32, 32, 3), seed=10 + j)
        perturbed = tiny_video.at[:, cut:].set(noise)
        z = _encode(tiny, perturbed)
        np.testing.assert_allclose(z[:, : j + 1], tiny_latents[:, : j + 1], atol=1e-6, rtol=0)
        # Not vacuous: the next latent frame does see the perturbed frames.
        assert float(jnp.max(jnp.abs(z[:, j + 1] - tiny_latents[:, j + 1]))) > 1e-3


def test_codes_are_causal_and_frame_zero_is_the_image(tiny, tiny_video, tiny_latents):
    """The issue's statement on integer codes (LFQ over the encoder): the codes of latent frames 0..j do not
    change when frames after 4j change, and frame 0's codes are the image's codes."""
    from tokenizer.quantizers import make_quantizer

    lfq = make_quantizer("lfq", num_bits=tiny_latents.shape[-1])
    codes = lambda z: np.asarray(lfq(z, train=False)[1])  # noqa: E731  [B, t, h, w] int32
    ref = codes(tiny_latents)
    assert ref.shape == (1, 5, 4, 4) and len(np.unique(ref)) > 4
    np.testing.assert_array_equal(codes(_encode(tiny, tiny_video[:, :1])), ref[:, :1])
    for j in range(4):
        cut = 4 * j + 1
        perturbed = tiny_video.at[:, cut:].set(_video((1, 17 - cut, 32, 32, 3), seed=30 + j))
        got = codes(_encode(tiny, perturbed))
        np.testing.assert_array_equal(got[:, : j + 1], ref[:, : j + 1])
        assert (got[:, j + 1 :] != ref[:, j + 1 :]).any()  # later codes do see the change


def test_decoder_is_causal(tiny, tiny_latents):
    ref = _decode(tiny, tiny_latents)
    for j in range(4):
        noise = _video(tiny_latents[:, j + 1 :].shape, seed=20 + j)
        out = _decode(tiny, tiny_latents.at[:, j + 1 :].set(noise))
        np.testing.assert_allclose(out[:, : 4 * j + 1], ref[:, : 4 * j + 1], atol=1e-6, rtol=0)
        assert float(jnp.max(jnp.abs(out[:, 4 * j + 1] - ref[:, 4 * j + 1]))) > 1e-3


def test_zero_padding_is_causal_too():
    cfg = AutoencoderConfig.tiny(num_res_blocks=0, temporal_padding="zeros")
    model = Autoencoder(cfg, rngs=nnx.Rngs(3))
    x = _video((1, 9, 16, 16, 3))
    z = _encode(model, x)
    z2 = _encode(model, x.at[:, 5:].set(0.5))
    np.testing.assert_allclose(z2[:, :2], z[:, :2], atol=1e-6, rtol=0)
    assert float(jnp.max(jnp.abs(z2[:, 2] - z[:, 2]))) > 1e-3
    np.testing.assert_allclose(_encode(model, x[:, :1]), z[:, :1], atol=1e-5, rtol=1e-5)


def test_image_config_1x8x8_is_framewise():
    cfg = AutoencoderConfig(
        channels=4,
        channel_multipliers=(1, 2, 2),
        num_res_blocks=1,
        temporal_downsample=(False, False),
        code_dim=4,
        patch_size=2,
        num_groups=2,
        temporal_kernel_size=1,
    )
    assert cfg.compression == (1, 8, 8)
    check_input_shape(cfg, 6, 16, 16)  # any T fits temporal compression 1
    model = Autoencoder(cfg, rngs=nnx.Rngs(2))
    x = _video((1, 3, 16, 16, 3))
    z = _encode(model, x)
    assert z.shape == (1, 3, 2, 2, 4)
    y = _decode(model, z)
    assert y.shape == x.shape
    for f in range(3):  # each frame is coded alone: frame f of the video == frame f as an image
        np.testing.assert_allclose(_encode(model, x[:, f : f + 1]), z[:, f : f + 1], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(_decode(model, z[:, f : f + 1]), y[:, f : f + 1], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- errors


def test_bad_shapes_raise_clear_errors(tiny):
    with pytest.raises(ValueError) as e:
        tiny.check_input_shape(16, 60, 60)
    msg = str(e.value)
    assert "num_frames=16 does not fit temporal compression 4" in msg
    assert "1 + 4k" in msg and "17" in msg
    assert "resolution=60 is not divisible by spatial compression 8" in msg and "64" in msg
    with pytest.raises(ValueError, match=r"width=20 is not divisible by spatial compression 8: use 16 or 24"):
        tiny.check_input_shape(17, 32, 20)
    with pytest.raises(ValueError, match="num_frames=8 .* such as 5 or 9"):
        tiny.latent_shape(8, 32, 32)
    with pytest.raises(ValueError, match="num_frames=16"):
        tiny.encode(jnp.zeros((1, 16, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"video \[B, T, H, W, 3\]"):
        tiny.encode(jnp.zeros((1, 17, 32, 32)))
    tiny.check_input_shape(1, 8, 8)
    tiny.check_input_shape(21, 64, 40)


# ----------------------------------------------------------------------------- params, sharding names, dtypes


def test_logical_axis_names_and_param_count(tiny):
    params = nnx.state(tiny, nnx.Param)
    leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    assert leaves
    for v in leaves:
        names = v.get_metadata().get("out_sharding")
        assert names is not None and len(names) == v[...].ndim, (names, v[...].shape)
        assert set(names) <= set(AXIS_NAMES) | {None}
        assert v[...].dtype == jnp.float32
    assert param_count(tiny) == sum(int(np.prod(v[...].shape)) for v in leaves)
    with nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
        specs = jax.tree.leaves(
            nnx.get_partition_spec(params), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
        )
    assert len(specs) == len(leaves) and all(all(a is None for a in s) for s in specs)
    with nnx.logical_axis_rules((("conv_in", None), ("conv_out", "fsdp"), ("norm", None))):
        kernel = nnx.get_partition_spec(nnx.state(tiny.encoder.conv_in, nnx.Param))["conv"]["kernel"]
    # get_partition_spec keeps the Variable boxes, with a PartitionSpec as the value.
    assert tuple(kernel.get_value()) == (None, None, None, None, "fsdp")


def test_traced_init_matches_shapes():
    cfg = AutoencoderConfig.tiny(num_res_blocks=0)
    abstract = nnx.eval_shape(lambda: Autoencoder(cfg, rngs=nnx.Rngs(0)))
    concrete = Autoencoder(cfg, rngs=nnx.Rngs(0))
    shapes = lambda m: [x.shape for x in jax.tree.leaves(nnx.state(m, nnx.Param))]  # noqa: E731
    assert shapes(abstract) == shapes(concrete)


@pytest.mark.parametrize(
    "conv_impl, conv_primitive", [("lax", "conv_general_dilated"), ("matmul", "dot_general")]
)
def test_bf16_compute_is_finite(conv_impl, conv_primitive):
    cfg = AutoencoderConfig.tiny(num_res_blocks=1, dtype="bfloat16", conv_impl=conv_impl)
    model = Autoencoder(cfg, rngs=nnx.Rngs(4))
    x = _video((1, 5, 16, 16, 3))
    z = _encode(model, x)
    y = _decode(model, z)
    assert z.dtype == y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(z))) and bool(jnp.all(jnp.isfinite(y)))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    graphdef, state = nnx.split(model)
    jaxpr = str(jax.make_jaxpr(lambda s, v: nnx.merge(graphdef, s).encode(v))(state, x))
    # The convs themselves run on bf16 operands.
    assert any(conv_primitive in line and "bf16" in line.split("=")[0] for line in jaxpr.splitlines())


def test_remat_same_forward_and_checkpointed():
    x = _video((1, 5, 16, 16, 3))
    plain = Autoencoder(AutoencoderConfig.tiny(num_res_blocks=1), rngs=nnx.Rngs(5))
    remat = Autoencoder(AutoencoderConfig.tiny(num_res_blocks=1, remat=True), rngs=nnx.Rngs(5))
    np.testing.assert_allclose(_encode(remat, x), _encode(plain, x), atol=1e-6, rtol=1e-6)

    def grad_jaxpr(model):
        graphdef, state = nnx.split(model)
        return str(jax.make_jaxpr(jax.grad(lambda s: jnp.mean(nnx.merge(graphdef, s)(x) ** 2)))(state))

    # jax 0.10 names the jax.checkpoint primitive `remat2` in jaxprs.
    assert "remat" in grad_jaxpr(remat) and "remat" not in grad_jaxpr(plain)


# ----------------------------------------------------------------------------- training


def _smooth_clip() -> jax.Array:
    t = np.arange(9)[:, None, None]
    y = np.arange(16)[None, :, None]
    x = np.arange(16)[None, None, :]
    r = np.sin(0.5 * (x - t)) * np.cos(0.4 * y)
    g = 2 * np.exp(-((x - 3 - t) ** 2 + (y - 8) ** 2) / 8.0) - 1
    b = np.cos(0.3 * (x + y) + 0.5 * t)
    return jnp.asarray(0.9 * np.stack([r, g, b], -1)[None].astype(np.float32))


def test_overfits_one_clip():
    clip = _smooth_clip()  # [1, 9, 16, 16, 3] -> latents [1, 3, 2, 2, 8]
    model = Autoencoder(AutoencoderConfig.tiny(num_res_blocks=0), rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    @jax.jit
    def step(state):
        m, opt = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(clip) - clip) ** 2))(m)
        opt.update(m, grads)
        return loss, nnx.state((m, opt))

    losses = []
    for _ in range(60):
        loss, state = step(state)
        losses.append(loss)
    losses = np.asarray(jax.device_get(losses))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.05 * losses[0], losses[[0, 10, 30, -1]]


def test_position_norm_keeps_positions_independent():
    """encoder_norm='position': a bright object at one position leaves every other position's output alone
    (frame statistics spread it over the whole frame); both use the same parameters."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from tokenizer.model import FrameGroupNorm

    x = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, 16))
    bright = x.at[:, :, 0, 0].set(100.0)
    for per_position in (False, True):
        norm = FrameGroupNorm(16, 4, dtype=jnp.float32, rngs=nnx.Rngs(0), per_position=per_position)
        elsewhere = float(jnp.abs(norm(bright) - norm(x))[:, :, 1:].max())
        assert (elsewhere == 0.0) == per_position
        assert jax.tree.structure(nnx.state(norm)) == jax.tree.structure(
            nnx.state(FrameGroupNorm(16, 4, dtype=jnp.float32, rngs=nnx.Rngs(0)))
        )
