"""Causal 3D CNN video autoencoder (MAGVIT-v2 style) for the video tokenizer.

The encoder maps a video ``[B, T, H, W, 3]`` in ``[-1, 1]`` to continuous latents
``[B, t, h, w, code_dim]``; a quantizer from :mod:`tokenizer.quantizers` sits in
between (not part of this module); the decoder maps (quantized) latents back to
``[B, T, H, W, 3]``.

Layout
------
Encoder: optional ``p x p`` space-to-depth stem (``patch_size``) -> causal conv
-> for each stage ``i``: ``num_res_blocks`` res blocks at width
``channels * channel_multipliers[i]``, then (between stages) a causal strided
conv that halves time and/or space -> GroupNorm -> swish -> 1x1x1 conv to
``code_dim``.

Decoder (mirror): causal conv from ``code_dim`` -> stages in reverse, each
transition upsamples by depth-to-space (a causal conv to ``r_t * r_s * r_s``
times the channels, then a reshape; in time the first of the duplicated frames
is dropped so ``t -> 2t - 1``) -> norm -> swish -> causal conv to ``3 p^2``
channels -> depth-to-space by ``p``. With ``use_adaptive_group_norm`` every
decoder norm is AdaGN (MAGVIT-v2): a GroupNorm without affine whose per-channel
scale and shift are predicted from the decoder's input latents (nearest-neighbour
resized to the feature's resolution, causally in time), ``x * (1 + gamma) + beta``;
the projection starts at zero so AdaGN starts as a plain GroupNorm.

Stage counting and compression
------------------------------
``len(channel_multipliers)`` stages give ``len(channel_multipliers) - 1``
transitions. ``temporal_downsample[i]`` / ``spatial_downsample[i]`` say whether
transition ``i`` halves time / space. Hence

* temporal compression ``c_t = 2 ** sum(temporal_downsample)``,
* spatial compression ``c_s = patch_size * 2 ** sum(spatial_downsample)``.

Defaults ``(1, 2, 2, 4)``, temporal ``(False, True, True)``, spatial all True,
``patch_size=1`` give ``compression == (4, 8, 8)``. ``(4, 16, 16)``: add a
stage (``(1, 2, 2, 4, 4)``, temporal ``(False, False, True, True)``) or use
``patch_size=2``. ``(1, 8, 8)`` (images): temporal all False (and
``temporal_kernel_size=1`` for a purely frame-wise 2D model). Tiny CPU configs
use ``patch_size`` 2 or 4 with fewer stages and transitions that only touch time
(``spatial_downsample=(True, False)`` ...); see :meth:`AutoencoderConfig.tiny`.

Causality in time
-----------------
Every conv pads time only at the front (``k_t - 1`` frames), so output frame
``f`` sees input frames ``<= f``. The front pad replicates the first frame
(``temporal_padding='replicate'``, default; ``'zeros'`` is available): the clip
then looks like it was preceded by a still scene, so an image (a 1-frame video)
and the first frame of a clip are processed by exactly the same arithmetic as a
static video, and there is no artificial black/grey edge at frame 0 that the
model would have to learn to undo (with ``[-1, 1]`` pixels, zero means mid-grey).
Either choice is causal.

Temporal downsampling is a causal stride-2 conv with ``k_t = 3`` (front pad 2),
``T = 1 + 2m -> 1 + m``; latent frame ``j`` depends on input frames
``<= c_t * j``, so ``T = 1 + c_t k`` frames give ``1 + k`` latent frames and
frame 0 is encoded alone. Upsampling ``t -> 2t - 1`` makes decoded frame ``f``
depend on latents ``<= ceil(f / c_t)``: decoded frames ``<= c_t j`` depend only
on latents ``<= j``.

GroupNorm statistics are computed **per frame** (over H, W and the channels of
a group), never across time: whole-clip statistics (as in the MAGVIT-v2
reference) would let later frames change the normalisation of frame 0 and break
causality.

Logical axis names
------------------
Every ``nnx.Param`` carries ``out_sharding`` metadata (one name or ``None`` per
dimension) drawn from this set:

===============  ==============================================================
``conv_in``      input-channel dim of conv and dense kernels
``conv_out``     output-channel dim of conv and dense kernels, and of biases
``norm``         GroupNorm scale / bias (channel dim)
===============  ==============================================================

Conv kernels are ``(None, None, None, 'conv_in', 'conv_out')`` (``k_t, k_h,
k_w`` are never sharded), dense kernels ``('conv_in', 'conv_out')``, biases
``('conv_out',)``, norm params ``('norm',)``. :data:`LOGICAL_AXIS_RULES` maps all
of them to ``None`` (replicated: the CNN is small, train it data-parallel);
mapping ``conv_out`` to ``'fsdp'`` shards it FSDP-style (the trainer leaves a
width the fsdp size does not divide, e.g. the last conv's 3 outputs, replicated). Use ``with nnx.logical_axis_rules(rules): nnx.get_partition_spec(state)``.
The variables are created with ``eager_sharding=False`` so a model can be built
without a mesh (flax 0.12 shards annotated variables eagerly by default and
raises without a mesh context).

Dtypes: params are float32; ``dtype`` is the compute dtype (e.g. bfloat16);
GroupNorm statistics are float32; ``encode`` / ``decode`` return float32.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "AXIS_NAMES",
    "LOGICAL_AXIS_RULES",
    "Autoencoder",
    "AutoencoderConfig",
    "Decoder",
    "Encoder",
    "check_input_shape",
    "conv3d_as_matmul",
    "depth_to_space",
    "fan_in_normal",
    "param_count",
    "space_to_depth",
]

AXIS_NAMES: tuple[str, ...] = ("conv_in", "conv_out", "norm")
# Default mapping of the logical names to mesh axes: everything replicated.
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (("conv_in", None), ("conv_out", None), ("norm", None))

CONV_IMPLS: tuple[str, ...] = ("auto", "lax", "matmul")

_CONV_KERNEL = (None, None, None, "conv_in", "conv_out")
_DENSE_KERNEL = ("conv_in", "conv_out")
_BIAS = ("conv_out",)
_NORM = ("norm",)


def fan_in_normal(scale: float = 1.0):
    """He/LeCun-style init ``N(0, scale / fan_in)`` (fan_in = product of all dims but the last).

    With a concrete key (eager construction) the draw is made by numpy, seeded from the key's bits:
    XLA:CPU takes seconds to compile one threefry sampler *per kernel shape* (measured 1.5-5 s each on
    the 2-core build VM), which made building even a tiny model take 15-40 s. Under tracing
    (``nnx.jit`` / ``nnx.eval_shape`` of the constructor, e.g. for sharded init) it falls back to
    ``jax.random.normal`` with the same distribution. Deterministic given the key either way.
    """

    def init(key, shape, dtype=jnp.float32, out_sharding=None):
        shape = tuple(shape)
        std = math.sqrt(scale / max(1, math.prod(shape[:-1])))
        try:
            bits = np.asarray(
                jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
            )
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return (std * jax.random.normal(key, shape, jnp.float32)).astype(dtype)
        rng = np.random.default_rng(bits.astype(np.uint32).ravel().tolist())
        return jnp.asarray((std * rng.standard_normal(shape)).astype(np.float32), dtype)

    return init


def _meta(names: tuple) -> dict:
    # eager_sharding=False: annotate only; placing on a mesh is the caller's job.
    return {"out_sharding": names, "eager_sharding": False}


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Hyper-parameters of the causal 3D CNN autoencoder.

    Attributes:
        channels: Base width; stage ``i`` has ``channels * channel_multipliers[i]``.
        channel_multipliers: Per-stage width multipliers; ``n`` stages, ``n - 1`` transitions.
        num_res_blocks: Res blocks per stage (encoder and decoder).
        temporal_downsample: Per transition (length ``n - 1``): halve time there.
        spatial_downsample: Per transition: halve H and W there; ``None`` = all True.
        code_dim: Latent channels (LFQ bits / FSQ levels count / VQ dim).
        patch_size: Space-to-depth stem factor ``p`` (1 = none). Part of the spatial compression.
        use_adaptive_group_norm: AdaGN (conditioned on the latents) in the decoder.
        num_groups: GroupNorm groups; must divide every stage width.
        encoder_norm: Statistics of the encoder's GroupNorms: ``'frame'`` (over H, W and the group's
            channels of each frame) or ``'position'`` (over the group's channels at each position only; same
            parameters). Why: with frame statistics an object anywhere in the frame renormalises every
            position, so black background gets codes that depend on far-away content, which a raster-order
            LM must then predict before it has drawn that content (experiments/code_locality.py).
        temporal_kernel_size: ``k_t`` of the non-strided convs (3; 1 = frame-wise 2D model).
            Temporal-stride convs always use ``k_t = 3``.
        temporal_padding: ``'replicate'`` (first frame) or ``'zeros'`` front padding.
        dtype: Compute dtype name or dtype (``'float32'``, ``'bfloat16'``); params stay float32.
        remat: Rematerialise res blocks (``nnx.remat``) to save activation memory.
        in_channels: Pixel channels (3).
        pixel_mlp_dim: With a patch stem, a per-patch MLP of this width on both ends (0 = off): the
            encoder reads each ``p x p x 3`` patch through ``Linear -> swish`` before ``conv_in``, and
            the decoder's last conv feeds ``swish -> Linear`` to the ``3 p^2`` pixel values. Why: a
            narrow first/last stage (16 channels for a 48-value 4x4 patch) can only map its features
            *linearly* to pixels, and a coloured shape (colour outer mask) is not linear in a small
            feature set -- such models learn luminance blobs first and colour very late. The MLP
            factors colour from shape for ~5% of the step's FLOPs.
        chroma_gain: The encoder sees pixels with their chroma (each pixel minus its channel mean)
            multiplied by this, and the decoder's output chroma is divided by it, so ``decode(encode(x))``
            stays in pixel space; the trainer measures the reconstruction error in the same amplified
            space. Why: colour differences between objects are a weak mode next to object-vs-background
            luminance, and gradient descent learns weak modes last -- measured on the world at 32x32, a
            continuous-latent autoencoder (even with 64 latent dims) passed *no* chroma after 400 steps
            (every object decoded in one grey-beige), while with gain 6 it reconstructed colours by step
            250. A fixed, invertible colour preconditioning (cf. input whitening); 1 = off.
        conv_impl: How the 3D convs are computed -- the same function and the same parameters either way,
            so it can be changed on any checkpoint: ``'lax'`` (``lax.conv_general_dilated``), ``'matmul'``
            (:func:`conv3d_as_matmul`: a spatial im2col and one matmul for all temporal taps), or
            ``'auto'`` (default: ``'matmul'`` on the CPU backend, ``'lax'`` elsewhere; the environment variable
            ``VIDEOGEN_CONV_IMPL=lax|matmul`` overrides what ``'auto'`` picks). Why: XLA:CPU runs
            these narrow 3D convs ~10x below its matmul rate; as matmuls the tiny config's train step is
            ~3x faster on the 2-core build VM (BENCHMARKS.md), while on GPU/TPU the native conv is best.
    """

    channels: int = 128
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    spatial_downsample: tuple[bool, ...] | None = None
    code_dim: int = 18
    patch_size: int = 1
    use_adaptive_group_norm: bool = True
    num_groups: int = 32
    encoder_norm: str = "frame"
    temporal_kernel_size: int = 3
    temporal_padding: str = "replicate"
    dtype: Any = "float32"
    remat: bool = False
    in_channels: int = 3
    pixel_mlp_dim: int = 0
    chroma_gain: float = 1.0
    conv_impl: str = "auto"

    def __post_init__(self):
        # Normalise sequences to tuples so the config stays hashable (it is static under jit).
        object.__setattr__(self, "channel_multipliers", tuple(int(m) for m in self.channel_multipliers))
        object.__setattr__(self, "temporal_downsample", tuple(bool(b) for b in self.temporal_downsample))
        n_trans = len(self.channel_multipliers) - 1
        sd = (
            (True,) * n_trans
            if self.spatial_downsample is None
            else tuple(bool(b) for b in self.spatial_downsample)
        )
        object.__setattr__(self, "spatial_downsample", sd)
        if isinstance(self.dtype, str):
            jnp.dtype(self.dtype)  # validates the name
        else:
            object.__setattr__(self, "dtype", jnp.dtype(self.dtype).name)
        if not self.channel_multipliers:
            raise ValueError("channel_multipliers must name at least one stage.")
        for name, flags in (("temporal_downsample", self.temporal_downsample), ("spatial_downsample", sd)):
            if len(flags) != n_trans:
                raise ValueError(
                    f"{name} has {len(flags)} entries but {len(self.channel_multipliers)} stages "
                    f"(channel_multipliers={self.channel_multipliers}) have {n_trans} transitions: give one bool "
                    "per transition."
                )
        if self.patch_size < 1 or self.num_res_blocks < 0 or self.channels < 1 or self.code_dim < 1:
            raise ValueError("patch_size, channels and code_dim must be >= 1 and num_res_blocks >= 0.")
        if self.temporal_kernel_size < 1:
            raise ValueError("temporal_kernel_size must be >= 1.")
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {self.conv_impl!r}.")
        if self.temporal_padding not in ("replicate", "zeros"):
            raise ValueError(
                f"temporal_padding must be 'replicate' or 'zeros', got {self.temporal_padding!r}."
            )
        if self.encoder_norm not in ("frame", "position"):
            raise ValueError(f"encoder_norm={self.encoder_norm!r} must be 'frame' or 'position'.")
        for w in self.widths:
            if w % self.num_groups:
                raise ValueError(
                    f"num_groups={self.num_groups} does not divide stage width {w} (widths {self.widths}): "
                    "pick num_groups dividing every channels * multiplier."
                )

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.channels * m for m in self.channel_multipliers)

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @property
    def spatial_compression(self) -> int:
        return self.patch_size * 2 ** sum(self.spatial_downsample)

    @property
    def compression(self) -> tuple[int, int, int]:
        """``(c_t, c_s, c_s)``: ``T = 1 + c_t k -> 1 + k`` latent frames, ``H -> H / c_s``."""
        return (self.temporal_compression, self.spatial_compression, self.spatial_compression)

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @classmethod
    def tiny(cls, **overrides) -> AutoencoderConfig:
        """A CPU-sized 4x8x8 config: 4x4 patch stem, 3 narrow stages, 1 res block each."""
        kw: dict[str, Any] = dict(
            channels=8,
            channel_multipliers=(1, 2, 2),
            num_res_blocks=1,
            temporal_downsample=(True, True),
            spatial_downsample=(True, False),
            code_dim=8,
            patch_size=4,
            num_groups=4,
        )
        kw.update(overrides)
        return cls(**kw)


def _suggest(n: int, ok) -> list[int]:
    below = [m for m in range(n - 1, 0, -1) if ok(m)][:1]
    above = [m for m in range(n + 1, 2 * n + 64) if ok(m)][:1]
    return below + above


def check_input_shape(config: AutoencoderConfig, num_frames: int, height: int, width: int) -> None:
    """Raises a ValueError naming each bad input dimension and a fix; silent when the shape fits."""
    ct, cs, _ = config.compression
    problems = []
    if num_frames < 1:
        problems.append(
            f"num_frames={num_frames} must be >= 1: use 1 for an image or 1 + {ct}k frames for a video"
        )
    elif (num_frames - 1) % ct:
        ok = lambda m: (m - 1) % ct == 0  # noqa: E731
        sugg = " or ".join(str(s) for s in _suggest(num_frames, ok))
        problems.append(
            f"num_frames={num_frames} does not fit temporal compression {ct}: use 1 + {ct}k frames "
            f"(k >= 0) such as {sugg}"
        )
    dims = [("resolution", height)] if height == width else [("height", height), ("width", width)]
    for name, size in dims:
        if size < cs or size % cs:
            ok = lambda m: m % cs == 0  # noqa: E731
            sugg = " or ".join(str(s) for s in _suggest(max(size, 1), ok))
            problems.append(f"{name}={size} is not divisible by spatial compression {cs}: use {sugg}")
    if problems:
        raise ValueError(
            f"video shape (T, H, W)=({num_frames}, {height}, {width}) does not fit compression "
            f"{config.compression}: " + "; ".join(problems) + "."
        )


# ----------------------------------------------------------------------------- layout helpers


def space_to_depth(x: jax.Array, p: int) -> jax.Array:
    """``[B, T, H, W, C] -> [B, T, H/p, W/p, p*p*C]`` (channel layout ``(ph, pw, C)``)."""
    if p == 1:
        return x
    b, t, h, w, c = x.shape
    x = x.reshape(b, t, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, t, h // p, w // p, p * p * c)


def depth_to_space(x: jax.Array, rt: int, rs: int) -> jax.Array:
    """``[B, T, H, W, rt*rs*rs*C] -> [B, rt*T, rs*H, rs*W, C]`` (channel layout ``(rt, rh, rw, C)``).

    Time is not trimmed here: the caller drops the first frame for causal ``t -> 2t - 1``.
    """
    if rt == 1 and rs == 1:
        return x
    b, t, h, w, c = x.shape
    c_out = c // (rt * rs * rs)
    x = x.reshape(b, t, h, w, rt, rs, rs, c_out)
    x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, t * rt, h * rs, w * rs, c_out)


def _causal_time_repeat(z: jax.Array, r: int) -> jax.Array:
    """Latent frames -> ``1 + r (t - 1)`` frames: frame 0 once, each later frame ``r`` times (causal)."""
    if r == 1 or z.shape[1] == 1:
        return z
    return jnp.concatenate([z[:, :1], jnp.repeat(z[:, 1:], r, axis=1)], axis=1)


# ----------------------------------------------------------------------------- layers


def conv3d_as_matmul(x: jax.Array, kernel: jax.Array, strides: Sequence[int], spatial_padding) -> jax.Array:
    """A VALID-in-time 3D conv written as one matmul: ``[B, T', H, W, C] -> [B, T_out, H_out, W_out, O]``.

    ``kernel [k_t, k_h, k_w, C, O]`` (flax's layout), ``strides (s_t, s_h, s_w)``, ``spatial_padding
    ((top, bottom), (left, right))``; time is not padded here (the causal caller pads it). Equal to
    ``lax.conv_general_dilated`` up to float summation order. The ``k_h k_w`` spatial taps are gathered
    into channels (``[..., k_h k_w C]``), one matmul produces every temporal tap's output for every
    input frame (``N = k_t O``: a wider matmul than ``O`` alone), and output frame ``f`` sums tap ``a``
    of input frame ``s_t f + a``. Time slices are contiguous, so the sum is cheap.
    """
    kt, kh, kw, c_in, c_out = kernel.shape
    st, sh, sw = strides
    (pt, pb), (pl, pr) = spatial_padding
    b, t_in, h, w, _ = x.shape
    t_out = (t_in - kt) // st + 1
    h_out = (h + pt + pb - kh) // sh + 1
    w_out = (w + pl + pr - kw) // sw + 1
    if pt or pb or pl or pr:
        x = jnp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr), (0, 0)))
    taps = [
        x[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    cols = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)  # [B, T', H_out, W_out, kh kw C]
    w2d = kernel.transpose(1, 2, 3, 0, 4).reshape(kh * kw * c_in, kt * c_out)  # rows (i, j, C), cols (a, O)
    y = (cols @ w2d).reshape(b, t_in, h_out, w_out, kt, c_out)
    span = st * (t_out - 1) + 1
    out = y[:, 0:span:st, :, :, 0]
    for a in range(1, kt):
        out = out + y[:, a : a + span : st, :, :, a]
    return out


def _resolve_conv_impl(impl: str) -> str:
    if impl == "auto":
        # VIDEOGEN_CONV_IMPL=lax|matmul overrides what 'auto' picks (the test suite sets lax: its tiny shapes
        # are compile-bound, and the matmul form compiles slower; the tests that need matmul ask for it).
        forced = os.environ.get("VIDEOGEN_CONV_IMPL", "")
        if forced in ("lax", "matmul"):
            return forced
        return "matmul" if jax.default_backend() == "cpu" else "lax"
    return impl


class CausalConv3d(nnx.Module):
    """3D conv, channels-last, padded only at the front in time (``k_t - 1`` frames) and 'SAME' in space."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int] = (3, 3, 3),
        strides: Sequence[int] = (1, 1, 1),
        *,
        temporal_padding: str = "replicate",
        dtype: Any = jnp.float32,
        kernel_init=None,
        conv_impl: str = "auto",
        rngs: nnx.Rngs,
    ):
        kt, kh, kw = kernel_size
        self.kt = kt
        self.temporal_padding = temporal_padding
        self.conv_impl = conv_impl
        self.strides = tuple(strides)
        self.spatial_padding = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))
        self.dtype = dtype
        # nnx.Conv holds the parameters (and computes the 'lax' path), so both paths share one layout.
        self.conv = nnx.Conv(
            in_features,
            out_features,
            kernel_size=tuple(kernel_size),
            strides=tuple(strides),
            # Time padded by hand (front only); spatial 'SAME'-style symmetric padding.
            padding=((0, 0),) + self.spatial_padding,
            dtype=dtype,
            param_dtype=jnp.float32,
            kernel_init=fan_in_normal() if kernel_init is None else kernel_init,
            kernel_metadata=_meta(_CONV_KERNEL),
            bias_metadata=_meta(_BIAS),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kt > 1:
            if self.temporal_padding == "replicate":
                pad = jnp.repeat(x[:, :1], self.kt - 1, axis=1)
            else:
                pad = jnp.zeros((x.shape[0], self.kt - 1) + x.shape[2:], x.dtype)
            x = jnp.concatenate([pad, x], axis=1)
        if _resolve_conv_impl(self.conv_impl) == "lax":
            return self.conv(x)
        dtype = self.dtype
        kernel = self.conv.kernel[...].astype(dtype)
        y = conv3d_as_matmul(x.astype(dtype), kernel, self.strides, self.spatial_padding)
        return y + self.conv.bias[...].astype(dtype)


class FrameGroupNorm(nnx.Module):
    """GroupNorm with per-frame statistics (over H, W and the channels of each group), or with
    ``per_position`` over each group's channels at every position alone (the same parameters)."""

    def __init__(
        self,
        num_features: int,
        num_groups: int,
        *,
        affine: bool = True,
        dtype: Any,
        rngs: nnx.Rngs,
        per_position: bool = False,
    ):
        self.per_position = per_position
        self.num_groups = num_groups
        self.dtype = dtype
        self.norm = nnx.GroupNorm(
            num_features,
            num_groups=num_groups,
            epsilon=1e-6,
            dtype=dtype,
            param_dtype=jnp.float32,
            use_bias=affine,
            use_scale=affine,
            scale_metadata=_meta(_NORM),
            bias_metadata=_meta(_NORM),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.per_position:
            xf = x.astype(jnp.float32)
            groups = xf.reshape(x.shape[:-1] + (self.num_groups, x.shape[-1] // self.num_groups))
            mean = jnp.mean(groups, axis=-1, keepdims=True)
            var = jnp.mean(jnp.square(groups - mean), axis=-1, keepdims=True)
            y = ((groups - mean) * jax.lax.rsqrt(var + 1e-6)).reshape(x.shape)
            if self.norm.scale is not None:
                y = y * self.norm.scale[...] + self.norm.bias[...]
            return y.astype(self.dtype)
        b, t = x.shape[:2]
        # nnx.GroupNorm reduces over every axis but the leading one: fold time into batch.
        y = self.norm(x.reshape((b * t,) + x.shape[2:]))
        return y.reshape(x.shape)


class AdaGroupNorm(nnx.Module):
    """MAGVIT-v2 adaptive GroupNorm: per-frame GN (no affine), then ``* (1 + gamma(z)) + beta(z)``."""

    def __init__(self, num_features: int, num_groups: int, cond_dim: int, *, dtype: Any, rngs: nnx.Rngs):
        self.norm = FrameGroupNorm(num_features, num_groups, affine=False, dtype=dtype, rngs=rngs)
        self.proj = nnx.Linear(
            cond_dim,
            2 * num_features,
            dtype=dtype,
            param_dtype=jnp.float32,
            kernel_init=nnx.initializers.zeros_init(),
            kernel_metadata=_meta(_DENSE_KERNEL),
            bias_metadata=_meta(_BIAS),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
        y = self.norm(x)
        # Project at latent resolution (pointwise, so it commutes with the resize), then resize.
        gb = self.proj(z)  # [B, t, h, w, 2C]
        t, h = z.shape[1], z.shape[2]
        big_t, big_h = x.shape[1], x.shape[2]
        rt = 1 if t == 1 else (big_t - 1) // (t - 1)
        rs = big_h // h
        gb = _causal_time_repeat(gb, rt)
        if rs > 1:
            gb = jnp.repeat(jnp.repeat(gb, rs, axis=2), rs, axis=3)
        gamma, beta = jnp.split(gb.astype(y.dtype), 2, axis=-1)
        return y * (1 + gamma) + beta


def _norm(cfg: AutoencoderConfig, c: int, adaptive: bool, rngs: nnx.Rngs, per_position: bool = False):
    if adaptive:
        return AdaGroupNorm(c, cfg.num_groups, cfg.code_dim, dtype=cfg.compute_dtype, rngs=rngs)
    return FrameGroupNorm(c, cfg.num_groups, dtype=cfg.compute_dtype, rngs=rngs, per_position=per_position)


def _resblock_forward(block: ResBlock, x: jax.Array, z: jax.Array | None) -> jax.Array:
    return block.forward(x, z)


class ResBlock(nnx.Module):
    """norm -> swish -> causal conv -> norm -> swish -> causal conv, plus a (1x1x1 if widths differ) skip."""

    def __init__(
        self,
        cfg: AutoencoderConfig,
        c_in: int,
        c_out: int,
        *,
        adaptive: bool,
        rngs: nnx.Rngs,
        per_position: bool = False,
    ):
        kt = cfg.temporal_kernel_size
        conv = dict(
            temporal_padding=cfg.temporal_padding, dtype=cfg.compute_dtype, conv_impl=cfg.conv_impl, rngs=rngs
        )
        self.adaptive = adaptive
        self.remat = cfg.remat
        self.norm1 = _norm(cfg, c_in, adaptive, rngs, per_position)
        self.conv1 = CausalConv3d(c_in, c_out, (kt, 3, 3), **conv)
        self.norm2 = _norm(cfg, c_out, adaptive, rngs, per_position)
        self.conv2 = CausalConv3d(c_out, c_out, (kt, 3, 3), **conv)
        if c_in != c_out:
            self.skip = nnx.Linear(
                c_in,
                c_out,
                dtype=cfg.compute_dtype,
                param_dtype=jnp.float32,
                kernel_init=fan_in_normal(),
                kernel_metadata=_meta(_DENSE_KERNEL),
                bias_metadata=_meta(_BIAS),
                rngs=rngs,
            )
        else:
            self.skip = None

    def _n(self, norm, x, z):
        return norm(x, z) if self.adaptive else norm(x)

    def forward(self, x: jax.Array, z: jax.Array | None) -> jax.Array:
        h = self.conv1(nnx.swish(self._n(self.norm1, x, z)))
        h = self.conv2(nnx.swish(self._n(self.norm2, h, z)))
        skip = x if self.skip is None else self.skip(x)
        return skip + h

    def __call__(self, x: jax.Array, z: jax.Array | None = None) -> jax.Array:
        if self.remat:
            return nnx.remat(_resblock_forward)(self, x, z)
        return self.forward(x, z)


class Downsample(nnx.Module):
    """Causal strided conv (k = 3x3x3): time ``1 + 2m -> 1 + m`` and/or space ``/2``."""

    def __init__(self, cfg: AutoencoderConfig, c: int, temporal: bool, spatial: bool, *, rngs: nnx.Rngs):
        kt = 3 if temporal else cfg.temporal_kernel_size
        self.conv = CausalConv3d(
            c,
            c,
            (kt, 3, 3),
            (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1),
            temporal_padding=cfg.temporal_padding,
            conv_impl=cfg.conv_impl,
            dtype=cfg.compute_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample(nnx.Module):
    """Causal conv to ``rt * rs^2 * C`` channels, depth-to-space; time ``t -> 2t - 1`` (first duplicate dropped)."""

    def __init__(self, cfg: AutoencoderConfig, c: int, temporal: bool, spatial: bool, *, rngs: nnx.Rngs):
        self.rt = 2 if temporal else 1
        self.rs = 2 if spatial else 1
        self.conv = CausalConv3d(
            c,
            c * self.rt * self.rs * self.rs,
            (cfg.temporal_kernel_size, 3, 3),
            temporal_padding=cfg.temporal_padding,
            conv_impl=cfg.conv_impl,
            dtype=cfg.compute_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = depth_to_space(self.conv(x), self.rt, self.rs)
        if self.rt > 1:
            y = y[:, self.rt - 1 :]  # latent frame 0 -> 1 frame, later ones -> rt frames each
        return y


# ----------------------------------------------------------------------------- encoder / decoder


def amplify_chroma(video: jax.Array, gain: float) -> jax.Array:
    """Scales each pixel's chroma (its deviation from the channel mean) by ``gain``: ``[..., C] -> [..., C]``."""
    if gain == 1.0:
        return video
    luma = jnp.mean(video, axis=-1, keepdims=True)
    return luma + gain * (video - luma)


def _pixel_linear(cfg: AutoencoderConfig, d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    """A per-position dense layer of the pixel MLP (see ``AutoencoderConfig.pixel_mlp_dim``)."""
    return nnx.Linear(
        d_in,
        d_out,
        dtype=cfg.compute_dtype,
        param_dtype=jnp.float32,
        kernel_init=fan_in_normal(),
        kernel_metadata=_meta(_DENSE_KERNEL),
        bias_metadata=_meta(_BIAS),
        rngs=rngs,
    )


class Encoder(nnx.Module):
    def __init__(self, cfg: AutoencoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        widths = cfg.widths
        conv = dict(
            temporal_padding=cfg.temporal_padding, dtype=cfg.compute_dtype, conv_impl=cfg.conv_impl, rngs=rngs
        )
        patch_values = cfg.in_channels * cfg.patch_size**2
        per_position = cfg.encoder_norm == "position"
        self.pixel_in = (
            _pixel_linear(cfg, patch_values, cfg.pixel_mlp_dim, rngs) if cfg.pixel_mlp_dim else None
        )
        self.conv_in = CausalConv3d(
            cfg.pixel_mlp_dim or patch_values, widths[0], (cfg.temporal_kernel_size, 3, 3), **conv
        )
        stages = []
        c = widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cfg, c, w, adaptive=False, rngs=rngs, per_position=per_position))
                c = w
            down = None
            if i < len(widths) - 1:
                td, sd = cfg.temporal_downsample[i], cfg.spatial_downsample[i]
                if td or sd:
                    down = Downsample(cfg, c, td, sd, rngs=rngs)
            stages.append(nnx.Dict(blocks=nnx.List(blocks), down=down))
        self.stages = nnx.List(stages)
        self.norm_out = FrameGroupNorm(
            c, cfg.num_groups, dtype=cfg.compute_dtype, rngs=rngs, per_position=per_position
        )
        self.conv_out = nnx.Linear(
            c,
            cfg.code_dim,
            dtype=cfg.compute_dtype,
            param_dtype=jnp.float32,
            kernel_init=fan_in_normal(),
            kernel_metadata=_meta(_DENSE_KERNEL),
            bias_metadata=_meta(_BIAS),
            rngs=rngs,
        )

    def __call__(self, video: jax.Array) -> jax.Array:
        cfg = self.cfg
        x = amplify_chroma(video.astype(cfg.compute_dtype), cfg.chroma_gain)
        x = space_to_depth(x, cfg.patch_size)
        if self.pixel_in is not None:
            x = nnx.swish(self.pixel_in(x))
        x = self.conv_in(x)
        for stage in self.stages:
            for block in stage["blocks"]:
                x = block(x)
            if stage["down"] is not None:
                x = stage["down"](x)
        x = self.conv_out(nnx.swish(self.norm_out(x)))
        return x.astype(jnp.float32)


class Decoder(nnx.Module):
    def __init__(self, cfg: AutoencoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        ada = cfg.use_adaptive_group_norm
        widths = cfg.widths
        conv = dict(
            temporal_padding=cfg.temporal_padding, dtype=cfg.compute_dtype, conv_impl=cfg.conv_impl, rngs=rngs
        )
        c = widths[-1]
        self.conv_in = CausalConv3d(cfg.code_dim, c, (cfg.temporal_kernel_size, 3, 3), **conv)
        stages = []
        for i in reversed(range(len(widths))):
            w = widths[i]
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cfg, c, w, adaptive=ada, rngs=rngs))
                c = w
            up = None
            if i > 0:
                td, sd = cfg.temporal_downsample[i - 1], cfg.spatial_downsample[i - 1]
                if td or sd:
                    up = Upsample(cfg, c, td, sd, rngs=rngs)
            stages.append(nnx.Dict(blocks=nnx.List(blocks), up=up))
        self.stages = nnx.List(stages)
        self.norm_out = _norm(cfg, c, ada, rngs)
        patch_values = cfg.in_channels * cfg.patch_size**2
        self.conv_out = CausalConv3d(
            c, cfg.pixel_mlp_dim or patch_values, (cfg.temporal_kernel_size, 3, 3), **conv
        )
        self.pixel_out = (
            _pixel_linear(cfg, cfg.pixel_mlp_dim, patch_values, rngs) if cfg.pixel_mlp_dim else None
        )

    def __call__(self, z: jax.Array) -> jax.Array:
        cfg = self.cfg
        ada = cfg.use_adaptive_group_norm
        zc = z.astype(cfg.compute_dtype)
        x = self.conv_in(zc)
        cond = zc if ada else None
        for stage in self.stages:
            for block in stage["blocks"]:
                x = block(x, cond)
            if stage["up"] is not None:
                x = stage["up"](x)
        x = self.norm_out(x, cond) if ada else self.norm_out(x)
        x = self.conv_out(nnx.swish(x))
        if self.pixel_out is not None:
            x = self.pixel_out(nnx.swish(x))
        x = depth_to_space(x, 1, cfg.patch_size)
        return amplify_chroma(x.astype(jnp.float32), 1.0 / cfg.chroma_gain)


class Autoencoder(nnx.Module):
    """Encoder + decoder; the quantizer is applied by the caller between :meth:`encode` and :meth:`decode`."""

    def __init__(self, config: AutoencoderConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.encoder = Encoder(config, rngs=rngs)
        self.decoder = Decoder(config, rngs=rngs)

    def check_input_shape(self, num_frames: int, height: int, width: int) -> None:
        check_input_shape(self.config, num_frames, height, width)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(t, h, w, code_dim)`` of :meth:`encode` per example; ``[:3]`` is the token grid."""
        self.check_input_shape(num_frames, height, width)
        ct, cs, _ = self.config.compression
        return (1 + (num_frames - 1) // ct, height // cs, width // cs, self.config.code_dim)

    def encode(self, video: jax.Array) -> jax.Array:
        """``video [B, T, H, W, 3]`` in ``[-1, 1]`` -> float32 latents ``[B, t, h, w, code_dim]``."""
        if video.ndim != 5 or video.shape[-1] != self.config.in_channels:
            raise ValueError(
                f"encode expects video [B, T, H, W, {self.config.in_channels}], got shape {video.shape}."
            )
        self.check_input_shape(*video.shape[1:4])
        return self.encoder(video)

    def decode(self, latents: jax.Array) -> jax.Array:
        """``latents [B, t, h, w, code_dim]`` -> float32 video ``[B, 1 + c_t (t - 1), h c_s, w c_s, 3]``."""
        if latents.ndim != 5 or latents.shape[-1] != self.config.code_dim:
            raise ValueError(
                f"decode expects latents [B, t, h, w, {self.config.code_dim}], got {latents.shape}."
            )
        return self.decoder(latents)

    def __call__(self, video: jax.Array) -> jax.Array:
        """Reconstruction without quantization (``decode(encode(video))``)."""
        return self.decode(self.encode(video))


def param_count(model: nnx.Module) -> int:
    """Number of trainable (``nnx.Param``) scalars in ``model``."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
