"""Decoder-only transformer over ``[text tokens | video tokens]`` for text-to-video generation.

This module is the network only: embeddings, blocks, heads, the static KV cache, attention-mask
builders, rotary positions, sharding names and a FLOP count. MaskGIT / next-token training and
sampling loops live elsewhere and call :class:`Transformer`.

Token ids (one int32 array for the whole sequence)
--------------------------------------------------
Text and video share one id space so a single ``tokens [B, S]`` array describes any layout (a
prompt, a text+video training row, one decode step) and every mask mode can tell text from video
without extra arguments:

==============================================  ==========================================
``0 .. text_vocab_size - 1``                    text ids (``text_pad_id``, 0, is PAD)
``video_offset + c`` (``video_offset = text_vocab_size``)  video code ``c`` in ``[0, codebook_size)``
``mask_token_id = text_vocab_size + codebook_size``  the MaskGIT ``[MASK]`` video token
==============================================  ==========================================

Use :func:`video_token_ids` to shift codes. The null text for classifier-free guidance is the
caller's job: replace the caption by all PAD. PAD keys are masked out of attention
(:func:`key_padding_mask`) *except the first slot* (``keep_first``): a real caption starts with
BOS there anyway, and an all-PAD caption leaves exactly one visible key, the learned PAD embedding
at text position 0, so "no text" is a learned null token and no attention row is ever empty.

Positions (rotary, explicit per call)
-------------------------------------
``positions [B, S, 3]`` int32 holds a ``(t, h, w)`` triple for every token; the caller passes it
so it can use window-relative indices (long-video continuation). :func:`make_positions` builds the
standard layout:

* text token ``i`` -> ``(i, i, i)``;
* video token at latent ``(t, h, w)`` -> ``(L + t, L + h, L + w)`` with ``L = max_text_len``
  (a constant, so positions do not depend on how long the actual caption is).

Rotary frequencies are interleaved over the three axes (Qwen2/3-VL "M-RoPE"): with ``P = head_dim
/ 2`` rotation pairs, pair ``k`` has the standard frequency ``theta^(-2k/head_dim)`` and is rotated
by the ``k % 3``-th coordinate. Consequences, each tested:

* text tokens, whose three coordinates are equal, get **exactly the standard 1-D RoPE** over the
  whole head dim (position information is kept for the prefix; no identity/zero table -- the
  LlamaGen trap);
* video tokens get a factorised (t, h, w) rotary where every axis owns every third frequency, so
  each axis spans the full frequency range (a contiguous split would give t only the highest and w
  only the lowest frequencies);
* attention depends on coordinate differences only, so a constant shift of the video ``t``
  indices leaves video-video attention unchanged (window-relative continuation is exact among
  video tokens);
* text and video never collide: text coordinates are ``< L`` and video coordinates ``>= L``.
  There is no separate type embedding: text and video already use different embedding tables.

Attention masks
---------------
``__call__`` takes either an explicit boolean ``attn_mask [B|1, 1, S_q, S_k]`` (True = may attend)
or a ``mode`` string, built by :func:`make_attention_mask` together with key padding:

* ``'causal'`` -- next-token over the whole sequence;
* ``'prefix_bidirectional_video'`` -- text causal, video sees all text and all video (MaskGIT);
* ``'prefix_bidirectional'`` -- same, but text is bidirectional among text too;
* ``'block_causal'`` -- causal across latent frames, bidirectional within a frame (text causal and
  before all frames). A token's block is its sequence index for text and its frame (``positions
  [..., 0]``) for video.

Text never attends to video in any mode. The pure helpers :func:`causal_mask`,
:func:`prefix_bidirectional_video_mask`, :func:`block_causal_mask` and :func:`key_padding_mask`
build the pieces.

KV cache (static shapes)
------------------------
``cache = model.init_cache(batch, max_len)`` is a pytree of fixed-size buffers: per layer ``k, v
[B, max_len, num_kv_heads, head_dim]`` (rotated keys), plus the ``tokens [B, max_len]`` (-1 =
empty) and ``positions [B, max_len, 3]`` written so far, from which the mask of any mode is
rebuilt for the new queries. ``model(tokens, positions, cache=cache, cache_index=i)`` writes the
``S`` new tokens at slots ``[i, i + S)`` with ``lax.dynamic_update_slice``, attends over all
``max_len`` slots with slots ``>= i + S`` masked out, and returns ``(logits for the new tokens,
new_cache)``. ``cache_index`` is a traced int32 scalar, so a jitted one-token decode step compiles
once for every step and every prompt length (a prefill compiles once per prompt length). Slots
past ``max_len`` are not checked under jit (``dynamic_update_slice`` clamps): size the cache for
the whole sequence. The same cache serves MaskGIT: prefill the text once, then run all video
tokens at ``cache_index = text_len`` with ``mode='prefix_bidirectional_video'`` on every step,
reusing the prefilled (unchanged) cache.

Scanned layers
--------------
With ``scan_layers=True`` the blocks are one ``Block`` whose params carry a leading ``[num_layers]`` axis
(logical name ``'layers'``, :data:`LAYER_AXIS`, mapped to no mesh axis: replicated), run with ``nnx.scan``
(``remat`` applies per layer as in the loop), so XLA compiles one block instead of ``num_layers`` copies;
the KV cache's ``'layers'`` is then one ``{'k', 'v'} [L, B, M, Hkv, Dh]``. Same values as the unrolled
default (the same rng draws, stacked); the unrolled loop compiles and runs faster for a few small layers.
:func:`stack_layer_params` / :func:`unstack_layer_params` convert params (states or checkpoint dicts)
between the two layouts, and :func:`weight_decay_mask` keeps the stacked norm scales undecayed.

Heads
-----
``head='softmax'``: one ``codebook_size``-way softmax, logits ``[B, S, C]``.

``head='bitgroups'`` (LFQ codebooks of ``2^K``): the K bits of a code (bit ``i`` = ``(c >> i) &
1``, the LFQ index order) are split into ``G = K / g`` groups of ``g`` consecutive bits and the
head predicts one ``2^g``-way softmax per group, logits ``[B, S, G, 2^g]``. A ``2^18``-way
softmax is never materialised (18 bits, g = 9: two 512-way softmaxes). The model distribution is
the product ``p(c) = prod_j p_j(c_j)``: **the groups of one token are conditionally independent
given the context**. Training with the sum of group cross-entropies is the exact NLL of that
factorised model, and sampling each group independently (:func:`sample_codes`) samples it
exactly, but it cannot express dependence between the bit groups of the same token -- the
approximation MAGVIT-v2 makes with its factorised (2 x 2^9) token prediction. ``log p(c)`` is the
sum of the group log-probs (:func:`code_log_prob`). The video input embedding is likewise the sum
of ``G`` per-group embeddings (table ``[G * 2^g, d]``, no ``2^K``-row table).

Text loss: with ``text_loss=True`` a small separate text head is built and the call returns
``logits = {'video': ..., 'text': [B, S, text_vocab_size]}`` instead of the video array.

Sharding
--------
Every ``nnx.Param`` carries ``out_sharding`` logical names (created with ``eager_sharding=False``
so the model builds without a mesh): embeddings ``('vocab', 'embed')``, q ``('embed', 'heads',
'head_dim')``, k/v ``('embed', 'kv_heads', 'head_dim')``, o ``('heads', 'head_dim', 'embed')``, MLP
``('embed', 'mlp')`` / ``('mlp', 'embed')``, heads ``('embed', 'vocab')``, norms ``('norm',)``,
MASK embedding ``('embed',)``. Activations are constrained with :func:`with_logical_constraint`
(``('activation_batch', 'activation_length', 'activation_embed')`` for the residual stream, and
head / mlp / vocab variants), which maps names through the active ``nnx.logical_axis_rules`` (or
:data:`DEFAULT_LOGICAL_AXIS_RULES`) and is a no-op unless a mesh is set with ``jax.set_mesh``.
Tensor parallelism needs the ``tensor`` size to divide heads, kv_heads, mlp_dim and the vocabularies.

Dtypes: params float32; ``dtype`` is the compute dtype; norms, softmax and rotary run in float32,
matmuls accumulate in float32 where it matters (scores, logits); logits are returned as float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import spmd as flax_spmd
from jax.sharding import PartitionSpec

__all__ = [
    "ATTENTION_IMPLS",
    "DEFAULT_LOGICAL_AXIS_RULES",
    "HEAD_KINDS",
    "MASK_MODES",
    "REMAT_POLICIES",
    "Transformer",
    "TransformerConfig",
    "apply_rope",
    "block_causal_mask",
    "block_ids",
    "causal_mask",
    "code_groups",
    "code_log_prob",
    "codes_from_groups",
    "flops_per_token",
    "full_code_log_probs",
    "video_logits",
    "is_video_token",
    "key_padding_mask",
    "LAYER_AXIS",
    "logical_to_mesh_spec",
    "make_attention_mask",
    "make_positions",
    "matmul_param_count",
    "param_count",
    "param_shardings",
    "prefix_bidirectional_video_mask",
    "rope_angles",
    "sample_codes",
    "stack_layer_params",
    "unstack_layer_params",
    "video_token_ids",
    "weight_decay_mask",
    "with_logical_constraint",
]

HEAD_KINDS = ("softmax", "bitgroups")
REMAT_POLICIES = ("none", "full", "dots")
MASK_MODES = ("causal", "prefix_bidirectional_video", "prefix_bidirectional", "block_causal")
ATTENTION_IMPLS = ("xla", "dot_product_attention")
ROPE_LADDERS = ("shared", "grid")

# MaxText-style mapping of logical names to the ('data', 'fsdp', 'tensor') mesh of videogen.training.mesh.
# Mesh axes a mesh lacks are dropped when mapping (see logical_to_mesh_spec).
DEFAULT_LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_head_dim", None),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("position", None),  # rows of the learned (t, h, w) position table: a few dozen, never split
)

_BLOCK_OFFSET = 1 << 30  # video block ids sit above every text sequence index (block_causal)
_NEG = float(np.finfo(np.float32).min)  # masked score; finite so a fully masked row is uniform, not NaN

_BATCH_LEN_EMBED = ("activation_batch", "activation_length", "activation_embed")


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of the text-to-video transformer.

    Attributes:
        text_vocab_size: Text ids ``[0, text_vocab_size)``; ``text_pad_id`` is PAD.
        codebook_size: Video codes ``[0, codebook_size)`` (``2^K`` for LFQ; a power of 2 for
            ``head='bitgroups'``).
        num_layers: Transformer blocks.
        d_model: Residual width.
        num_heads: Query heads.
        num_kv_heads: Key/value heads (GQA); must divide ``num_heads``; ``== num_heads`` is MHA.
        mlp_dim: SwiGLU hidden width.
        max_text_len: Text slots; also the offset ``L`` of video positions.
        video_grid: Latent ``(t, h, w)`` of one clip (for positions and default cache size).
        head_dim: Per-head width; ``None`` -> ``d_model // num_heads``. Even, >= 6 (3 rotary axes).
        dtype: Compute dtype name (``'float32'``, ``'bfloat16'``); params are always float32.
        rope_theta: Rotary base.
        remat: ``'none'``, ``'full'`` (recompute each block in the backward pass) or ``'dots'``
            (save matmul outputs without batch dims, i.e. the projections and MLP, recompute the
            rest, including attention scores: ``dots_with_no_batch_dims_saveable``).
        head: ``'softmax'`` or ``'bitgroups'`` (see module docstring).
        group_bits: ``g`` for ``'bitgroups'``: bits per group; must divide ``K``.
        text_loss: Also build a text head (``logits`` becomes ``{'video', 'text'}``).
        qk_norm: RMSNorm on queries and keys per head (training stability, esp. bf16).
        norm_eps: RMSNorm epsilon.
        text_pad_id: Text PAD id (masked as a key, except slot 0).
        attention_impl: ``'xla'`` (einsum + softmax here, heads-major, with a flash-style custom VJP;
            :func:`_softmax_attention`) or ``'dot_product_attention'`` (``jax.nn.dot_product_attention``;
            may pick cuDNN flash attention on GPU).
        video_pos_emb: Add learned absolute ``(t, h, w)`` embeddings (``t + h + w`` rows, factorised) to
            video token inputs, indexed by the video coordinates of ``positions`` (window-relative in
            continuation; clamped to the grid). Rotary alone turns most pairs little across a small grid.
        rope_video: ``'shared'``: one ladder ``theta^(-2k/head_dim)`` for all pairs (text and video);
            ``'grid'``: the pairs of each axis get their own geometric ladder from 1 rad per step down
            to a quarter turn over ``4 x`` that axis's extent (the grid's size for h / w, text + frames
            for t), so every pair turns a useful amount across the grid.
        text_bidirectional: Text tokens attend to all text (a prefix-LM caption encoder) in every mask
            mode; video attention is unchanged. Not with ``text_loss`` (its targets would be visible).
        scan_layers: Stack the blocks' params on a leading ``'layers'`` axis and run them with ``nnx.scan``
            (one compiled block, not ``num_layers`` copies; see "Scanned layers" in the module docstring).
    """

    text_vocab_size: int = 512
    codebook_size: int = 2**18
    num_layers: int = 12
    d_model: int = 768
    num_heads: int = 12
    num_kv_heads: int = 12
    mlp_dim: int = 2048
    max_text_len: int = 32
    video_grid: tuple[int, int, int] = (5, 16, 16)
    head_dim: int | None = None
    dtype: Any = "bfloat16"
    rope_theta: float = 10000.0
    remat: str = "none"
    head: str = "bitgroups"
    group_bits: int = 9
    text_loss: bool = False
    qk_norm: bool = True
    norm_eps: float = 1e-6
    text_pad_id: int = 0
    attention_impl: str = "xla"
    video_pos_emb: bool = False
    rope_video: str = "shared"
    text_bidirectional: bool = False
    scan_layers: bool = (
        False  # blocks stacked on a 'layers' axis + nnx.scan (big models); False: unrolled loop
    )

    def __post_init__(self):
        object.__setattr__(self, "video_grid", tuple(int(x) for x in self.video_grid))
        if isinstance(self.dtype, str):
            jnp.dtype(self.dtype)  # validates the name
        else:
            object.__setattr__(self, "dtype", jnp.dtype(self.dtype).name)
        problems = []
        if len(self.video_grid) != 3 or min(self.video_grid) < 1:
            problems.append(f"video_grid={self.video_grid} must be three positive sizes (t, h, w)")
        for name in (
            "text_vocab_size",
            "codebook_size",
            "num_layers",
            "d_model",
            "num_heads",
            "num_kv_heads",
            "mlp_dim",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_text_len < 0:
            problems.append(f"max_text_len={self.max_text_len} must be >= 0")
        if self.num_kv_heads >= 1 and self.num_heads % self.num_kv_heads:
            problems.append(f"num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}")
        if self.head_dim is None and self.num_heads >= 1 and self.d_model % self.num_heads:
            problems.append(
                f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}: "
                "set head_dim explicitly"
            )
        hd = self.resolved_head_dim if self.num_heads >= 1 else 0
        if hd % 2 or hd < 6:
            problems.append(f"head_dim={hd} must be even and >= 6 (rotary pairs over 3 axes)")
        if self.remat not in REMAT_POLICIES:
            problems.append(f"remat={self.remat!r} must be one of {REMAT_POLICIES}")
        if self.rope_video not in ROPE_LADDERS:
            problems.append(f"rope_video={self.rope_video!r} must be one of {ROPE_LADDERS}")
        if self.text_bidirectional and self.text_loss:
            problems.append(
                "text_bidirectional=True with text_loss=True: a caption that sees all of itself "
                "cannot be trained on next-token text prediction; turn one off"
            )
        if self.attention_impl not in ATTENTION_IMPLS:
            problems.append(f"attention_impl={self.attention_impl!r} must be one of {ATTENTION_IMPLS}")
        if self.head not in HEAD_KINDS:
            problems.append(f"head={self.head!r} must be one of {HEAD_KINDS}")
        elif self.head == "bitgroups":
            c = self.codebook_size
            if c < 2 or c & (c - 1):
                problems.append(f"head='bitgroups' needs a power-of-2 codebook_size (LFQ 2^K), got {c}")
            else:
                k = c.bit_length() - 1
                if self.group_bits < 1 or k % self.group_bits:
                    divs = [g for g in range(1, k + 1) if k % g == 0]
                    problems.append(
                        f"group_bits={self.group_bits} must divide K={k} (codebook 2^{k}): use one of {divs}"
                    )
        if not 0 <= self.text_pad_id < max(1, self.text_vocab_size):
            problems.append(f"text_pad_id={self.text_pad_id} must be a text id")
        if self.codebook_size + self.text_vocab_size + 1 >= 2**31:
            problems.append("text_vocab_size + codebook_size + 1 must fit in int32")
        if problems:
            raise ValueError("TransformerConfig: " + "; ".join(problems) + ".")

    # -- derived sizes
    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.num_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def code_bits(self) -> int:
        """K with ``codebook_size == 2^K`` (bitgroups), else ``ceil(log2(codebook_size))``."""
        return max(1, (self.codebook_size - 1).bit_length())

    @property
    def num_groups(self) -> int:
        """G: softmax groups per video token (1 for ``head='softmax'``)."""
        return self.code_bits // self.group_bits if self.head == "bitgroups" else 1

    @property
    def group_size(self) -> int:
        """Classes per group: ``2^g`` (bitgroups) or ``codebook_size`` (softmax)."""
        return 2**self.group_bits if self.head == "bitgroups" else self.codebook_size

    @property
    def video_offset(self) -> int:
        return self.text_vocab_size

    @property
    def mask_token_id(self) -> int:
        return self.text_vocab_size + self.codebook_size

    @property
    def num_video_tokens(self) -> int:
        return math.prod(self.video_grid)

    @property
    def max_seq_len(self) -> int:
        return self.max_text_len + self.num_video_tokens

    @classmethod
    def tiny(cls, **overrides) -> TransformerConfig:
        """A CPU-test-sized config: 2 layers, d 32, 4 heads / 2 kv heads, K=6 bits in 2 groups of 3."""
        kw: dict[str, Any] = dict(
            text_vocab_size=16,
            codebook_size=64,
            num_layers=2,
            d_model=32,
            num_heads=4,
            num_kv_heads=2,
            mlp_dim=64,
            max_text_len=4,
            video_grid=(2, 2, 2),
            dtype="float32",
            head="bitgroups",
            group_bits=3,
        )
        kw.update(overrides)
        return cls(**kw)


# ----------------------------------------------------------------------------- sharding helpers


def logical_to_mesh_spec(names: Sequence[str | None], rules=None, mesh_axis_names=None) -> PartitionSpec:
    """Logical names -> ``PartitionSpec`` through ``rules`` (default: the active
    ``nnx.logical_axis_rules``, else :data:`DEFAULT_LOGICAL_AXIS_RULES`).

    Mesh axes not in ``mesh_axis_names`` (when given) are dropped, and a mesh axis already used by an
    earlier dimension is not used again (a spec may name each mesh axis once).
    """
    if rules is None:
        rules = flax_spmd.get_logical_axis_rules() or DEFAULT_LOGICAL_AXIS_RULES
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name in names:
        target = table.get(name) if name is not None else None
        axes = () if target is None else ((target,) if isinstance(target, str) else tuple(target))
        axes = tuple(a for a in axes if (mesh_axis_names is None or a in mesh_axis_names) and a not in used)
        used.update(axes)
        out.append(None if not axes else (axes[0] if len(axes) == 1 else axes))
    return PartitionSpec(*out)


def with_logical_constraint(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """``with_sharding_constraint`` by logical names; a no-op when no mesh is set (``jax.set_mesh``)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = logical_to_mesh_spec(names, mesh_axis_names=mesh.axis_names)
    if mesh.are_all_axes_explicit:
        return jax.sharding.reshard(x, spec)
    return jax.lax.with_sharding_constraint(x, spec)


def param_shardings(state, mesh: jax.sharding.Mesh, rules=None):
    """``NamedSharding`` per ``nnx.Variable`` of ``state`` from its ``out_sharding`` names (same tree
    as ``nnx.get_named_sharding``; ``nnx.as_pure`` it for ``jax.device_put`` / ``jit``)."""

    def f(v):
        names = v.get_metadata().get("out_sharding")
        spec = PartitionSpec() if not names else logical_to_mesh_spec(names, rules, mesh.axis_names)
        return v.replace(jax.sharding.NamedSharding(mesh, spec))

    return jax.tree.map(f, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


# ----------------------------------------------------------------------------- init


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> jax.Array:
    """``N(0, std^2)`` float32. A concrete key draws with numpy (seeded from the key bits): XLA:CPU
    compiles one threefry sampler per shape, seconds each on small VMs. Traced keys (``nnx.eval_shape``
    / jitted init) use ``jax.random.normal``; deterministic given the key either way."""
    key = rngs.params()
    try:
        bits = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return std * jax.random.normal(key, shape, jnp.float32)
    rng = np.random.default_rng(bits.astype(np.uint32).ravel().tolist())
    return jnp.asarray((std * rng.standard_normal(shape)).astype(np.float32))


def _param(value: jax.Array, names: tuple) -> nnx.Param:
    # eager_sharding=False: annotate only; placing on a mesh is the caller's job.
    return nnx.Param(value, out_sharding=names, eager_sharding=False)


# ----------------------------------------------------------------------------- tokens and positions


def video_token_ids(config: TransformerConfig, codes: jax.Array) -> jax.Array:
    """Video codes ``[0, codebook_size)`` -> token ids (``+ video_offset``)."""
    return jnp.asarray(codes, jnp.int32) + config.video_offset


def is_video_token(config: TransformerConfig, tokens: jax.Array) -> jax.Array:
    """True for video codes and ``[MASK]`` (ids ``>= video_offset``)."""
    return tokens >= config.video_offset


def make_positions(
    config: TransformerConfig,
    batch: int = 1,
    *,
    text_len: int | None = None,
    num_frames: int | None = None,
    t_offset: int = 0,
) -> jax.Array:
    """``[batch, text_len + num_frames*h*w, 3]`` int32 positions of ``[text | video (raster t, h, w)]``.

    Text ``i`` -> ``(i, i, i)``; video ``(t, h, w)`` -> ``(L + t_offset + t, L + h, L + w)`` with
    ``L = config.max_text_len``. ``text_len`` defaults to ``max_text_len`` (0 = no text),
    ``num_frames`` to the grid's ``t``; ``t_offset`` shifts the frame index (window-relative
    continuation).
    """
    text_len = config.max_text_len if text_len is None else int(text_len)
    _, h, w = config.video_grid
    t = config.video_grid[0] if num_frames is None else int(num_frames)
    i = np.arange(text_len)
    text = np.stack([i, i, i], axis=-1)
    tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    L = config.max_text_len
    video = np.stack([tt.ravel() + L + t_offset, hh.ravel() + L, ww.ravel() + L], axis=-1)
    pos = np.concatenate([text, video], axis=0).astype(np.int32)
    return jnp.asarray(np.broadcast_to(pos[None], (batch,) + pos.shape))


# ----------------------------------------------------------------------------- masks


def _pair_mask(mode: str, q_idx, q_vid, q_blk, k_idx, k_vid, k_blk) -> jax.Array:
    """Allowed (query, key) pairs; q_* broadcast as ``[..., Sq, 1]``, k_* as ``[..., 1, Sk]``."""
    if mode == "causal":
        return k_idx <= q_idx
    if mode == "block_causal":
        return k_blk <= q_blk
    if mode in ("prefix_bidirectional_video", "prefix_bidirectional"):
        text_rule = (
            (k_idx <= q_idx) if mode == "prefix_bidirectional_video" else jnp.ones_like(k_idx <= q_idx)
        )
        return q_vid | (~k_vid & text_rule)
    raise ValueError(f"mode={mode!r}: must be one of {MASK_MODES}")


def causal_mask(seq_len: int) -> jax.Array:
    """``[1, 1, S, S]``: key ``j`` visible to query ``i`` iff ``j <= i``."""
    i = jnp.arange(seq_len)
    return (i[None, :] <= i[:, None])[None, None]


def prefix_bidirectional_video_mask(is_video: jax.Array, *, text_bidirectional: bool = False) -> jax.Array:
    """``[B, 1, S, S]`` from ``is_video [B, S]``: video queries see every token; text queries see
    text only, causally (or all text with ``text_bidirectional``)."""
    s = is_video.shape[-1]
    i = jnp.arange(s)
    mode = "prefix_bidirectional" if text_bidirectional else "prefix_bidirectional_video"
    m = _pair_mask(mode, i[:, None], is_video[:, :, None], None, i[None, :], is_video[:, None, :], None)
    return m[:, None]


def block_ids(
    config: TransformerConfig, tokens: jax.Array, positions: jax.Array, index: jax.Array | None = None
) -> jax.Array:
    """Block of each token for ``'block_causal'``: text -> its sequence index (``index``, default
    ``arange(S)``), video -> ``2^30 + positions[..., 0]`` (its frame), so frames follow all text."""
    if index is None:
        index = jnp.arange(tokens.shape[-1], dtype=jnp.int32)
    return jnp.where(
        is_video_token(config, tokens),
        _BLOCK_OFFSET + positions[..., 0].astype(jnp.int32),
        jnp.broadcast_to(index, tokens.shape),
    )


def block_causal_mask(blocks: jax.Array) -> jax.Array:
    """``[B, 1, S, S]`` from ``blocks [B, S]``: key visible iff its block ``<=`` the query's block
    (causal across blocks, bidirectional within one)."""
    return (blocks[:, None, :] <= blocks[:, :, None])[:, None]


def key_padding_mask(tokens: jax.Array, pad_id: int = 0, *, keep_first: bool = True) -> jax.Array:
    """``[B, 1, 1, S]``: False for PAD keys (and empty cache slots, id < 0). ``keep_first`` keeps
    slot 0 visible so an all-PAD (dropped) caption is one learned null key, not an empty row."""
    valid = tokens != pad_id
    if keep_first:
        valid = valid | (jnp.arange(tokens.shape[-1]) == 0)
    return (valid & (tokens >= 0))[:, None, None, :]


def _mode_mask(config, mode, q_tok, q_pos, q_idx, k_tok, k_pos, k_idx) -> jax.Array:
    """Mode rule AND key padding, ``[B, 1, Sq, Sk]``, for queries/keys at absolute indices."""
    q_vid, k_vid = is_video_token(config, q_tok), is_video_token(config, k_tok)
    q_blk = block_ids(config, q_tok, q_pos, q_idx)
    k_blk = block_ids(config, k_tok, k_pos, k_idx)
    m = _pair_mask(
        mode,
        q_idx[None, :, None],
        q_vid[:, :, None],
        q_blk[:, :, None],
        k_idx[None, None, :],
        k_vid[:, None, :],
        k_blk[:, None, :],
    )
    if config.text_bidirectional:  # a prefix-LM caption: text sees all text (key padding still applies)
        m = m | (~q_vid[:, :, None] & ~k_vid[:, None, :])
    k_valid = ((k_tok != config.text_pad_id) | (k_idx == 0)[None, :]) & (k_tok >= 0)
    return (m & k_valid[:, None, :])[:, None]


def make_attention_mask(
    config: TransformerConfig, tokens: jax.Array, positions: jax.Array, mode: str = "causal"
) -> jax.Array:
    """``[B, 1, S, S]`` mask of a full sequence: the ``mode`` rule AND :func:`key_padding_mask`."""
    if mode not in MASK_MODES:
        raise ValueError(f"mode={mode!r}: must be one of {MASK_MODES}")
    idx = jnp.arange(tokens.shape[-1], dtype=jnp.int32)
    return _mode_mask(config, mode, tokens, positions, idx, tokens, positions, idx)


# ----------------------------------------------------------------------------- rotary


def rope_frequencies(
    head_dim: int, theta: float, ladder: str = "shared", extents: tuple[int, int, int] | None = None
) -> np.ndarray:
    """``[head_dim/2]`` rad per position step of each rotary pair (pair ``k`` turns with axis ``k % 3``).

    ``'shared'``: ``theta^(-2k/head_dim)``. ``'grid'``: the ``n`` pairs of axis ``a`` get ``1 ... (pi/2) /
    (4 extents[a])`` geometrically, so the slowest still turns a quarter turn over four times the axis."""
    k = np.arange(head_dim // 2)
    if ladder == "shared":
        return theta ** (-2.0 * k / head_dim)
    if extents is None:
        raise ValueError("rope ladder 'grid' needs the axis extents (t, h, w).")
    freq = np.zeros(len(k))
    for axis in range(3):
        pairs = k[k % 3 == axis]
        slowest = (math.pi / 2) / (4 * max(int(extents[axis]), 1))
        freq[pairs] = slowest ** (np.arange(len(pairs)) / max(len(pairs) - 1, 1))
    return freq


def rope_angles(
    positions: jax.Array,
    head_dim: int,
    theta: float,
    ladder: str = "shared",
    extents: tuple[int, int, int] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(cos, sin) [B, S, 1, head_dim/2]`` float32; pair ``k`` uses frequency :func:`rope_frequencies`
    and coordinate ``positions[..., k % 3]`` (interleaved t/h/w; equal coordinates = 1-D RoPE)."""
    half = head_dim // 2
    k = np.arange(half)
    inv_freq = jnp.asarray(rope_frequencies(head_dim, theta, ladder, extents), jnp.float32)
    coord = positions.astype(jnp.float32)[..., k % 3]  # [B, S, half]
    ang = coord * inv_freq
    return jnp.cos(ang)[:, :, None, :], jnp.sin(ang)[:, :, None, :]


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates pairs ``(x[k], x[k + D/2])`` of ``x [B, S, H, D]`` (computed in float32)."""
    xf = x.astype(jnp.float32)
    x1, x2 = jnp.split(xf, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


# ----------------------------------------------------------------------------- layers


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, *, eps: float, dtype: Any):
        self.scale = _param(jnp.ones((dim,), jnp.float32), ("norm",))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...]).astype(self.dtype)


def _masked_scores(q, k, mask, scale):
    """``q [B, K, M, D]``, ``k [B, K, T, D]``, ``mask [B|1, 1, M, T]`` -> float32 ``[B, K, M, T]``."""
    scores = jnp.einsum("bkmd,bktd->bkmt", q, k, preferred_element_type=jnp.float32) * scale
    return jnp.where(mask, scores, _NEG)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _softmax_attention(q, k, v, mask, scale):
    """``softmax(q k^T * scale, masked) v`` in heads-major layout: ``q [B, K, M, D]`` (K key/value heads; M =
    G * S rows: the G query heads of each key head, stacked), ``k, v [B, K, T, D]``, bool ``mask [B|1, 1, M,
    T]`` -> ``[B, K, M, D]``.

    A custom VJP (the flash-attention backward: ``dS = P * (dP - rowsum(dO * O))``, P recomputed from the
    saved row max and sum) instead of differentiating softmax: autodiff's backward made XLA:CPU transpose and
    re-read the [M, T] tensors several times (fwd+bwd 2.3x slower at S=352, 4 heads). Same values."""
    return _softmax_attention_fwd(q, k, v, mask, scale)[0]


def _softmax_attention_fwd(q, k, v, mask, scale):
    scores = _masked_scores(q, k, mask, scale)
    row_max = jnp.max(scores, axis=-1, keepdims=True)
    e = jnp.exp(scores - row_max)
    row_sum = jnp.sum(e, axis=-1, keepdims=True)
    out = jnp.einsum("bkmt,bktd->bkmd", (e / row_sum).astype(v.dtype), v)
    return out, (q, k, v, mask, row_max, row_sum, out)


def _softmax_attention_bwd(scale, res, d_out):
    q, k, v, mask, row_max, row_sum, out = res
    probs = jnp.exp(_masked_scores(q, k, mask, scale) - row_max) / row_sum  # float32 [B, K, M, T]
    d_out = d_out.astype(v.dtype)
    d_v = jnp.einsum("bkmt,bkmd->bktd", probs.astype(v.dtype), d_out)
    d_probs = jnp.einsum("bkmd,bktd->bkmt", d_out, v, preferred_element_type=jnp.float32)
    row_dot = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
    # where(mask): a fully masked row (uniform probs) passes no gradient, as autodiff of the select would.
    d_scores = jnp.where(mask, probs * (d_probs - row_dot) * scale, 0.0).astype(q.dtype)
    d_q = jnp.einsum("bkmt,bktd->bkmd", d_scores, k)
    d_k = jnp.einsum("bkmt,bkmd->bktd", d_scores, q)
    return d_q, d_k, d_v, None


_softmax_attention.defvjp(_softmax_attention_fwd, _softmax_attention_bwd)


def _attend(q, k, v, mask, impl: str) -> jax.Array:
    """``q [B, S, H, D]``, ``k, v [B, T, Hkv, D]``, ``mask [B|1, 1, S, T]`` -> ``[B, S, H, D]``."""
    b, s, h, d = q.shape
    hkv = k.shape[2]
    g = h // hkv
    if impl == "dot_product_attention":
        return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=d**-0.5)
    # Heads-major, 4-D ([B, Hkv, G * S, D]): every matmul has its batch dims leading, so the big score
    # tensors are never transposed (XLA:CPU otherwise spends more time in those copies than in the matmuls).
    qh = jnp.transpose(q.reshape(b, s, hkv, g, d), (0, 2, 3, 1, 4)).reshape(b, hkv, g * s, d)
    kh, vh = jnp.transpose(k, (0, 2, 1, 3)), jnp.transpose(v, (0, 2, 1, 3))
    mh = jnp.tile(mask, (1, 1, g, 1)) if g > 1 else mask
    out = _chunked_softmax_attention(qh, kh, vh, mh, d**-0.5)
    return jnp.transpose(out.reshape(b, hkv, g, s, d), (0, 3, 1, 2, 4)).reshape(b, s, h, d)


# Bytes of float32 scores per chunk of batch rows in _chunked_softmax_attention on CPU (a few times the L2).
_CPU_SCORE_CHUNK_BYTES = 2 << 20


def _chunked_softmax_attention(q, k, v, mask, scale):
    """:func:`_softmax_attention` over chunks of batch rows (``lax.map``) on CPU, so each chunk's [M, T]
    score, probability and gradient tensors stay near the caches instead of streaming the whole batch's
    (32 MB per tensor for the tiny LM at S = 352) through memory once per elementwise pass: fwd + bwd of the
    tiny LM's attention 1.5x faster, its train step ~1.1x (BENCHMARKS.md "LM train step vs a PyTorch peer").
    Same values (rows are independent). Elsewhere (GPU), or when one chunk would be the whole batch, one call."""
    b, hkv, m, _ = q.shape
    t = k.shape[2]
    per_row = hkv * m * t * 4
    rows = max(1, min(b, _CPU_SCORE_CHUNK_BYTES // per_row))
    while b % rows:
        rows -= 1
    if jax.default_backend() != "cpu" or rows >= b:
        return _softmax_attention(q, k, v, mask, scale)
    n = b // rows

    def split(x):
        return x.reshape((n, rows) + x.shape[1:])

    if mask.shape[0] == b:
        out = jax.lax.map(
            lambda a: _softmax_attention(*a, scale), (split(q), split(k), split(v), split(mask))
        )
    else:  # a mask shared by the batch ([1, 1, M, T]) is not copied per chunk
        out = jax.lax.map(lambda a: _softmax_attention(*a, mask, scale), (split(q), split(k), split(v)))
    return out.reshape(q.shape)


class Attention(nnx.Module):
    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        d, h, hkv, hd = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim
        self.dtype = cfg.compute_dtype
        self.impl = cfg.attention_impl
        self.wq = _param(_normal(rngs, (d, h, hd), d**-0.5), ("embed", "heads", "head_dim"))
        self.wk = _param(_normal(rngs, (d, hkv, hd), d**-0.5), ("embed", "kv_heads", "head_dim"))
        self.wv = _param(_normal(rngs, (d, hkv, hd), d**-0.5), ("embed", "kv_heads", "head_dim"))
        # Output projections scaled by 1/sqrt(2 L) (GPT-2): the residual stream's variance stays O(1).
        self.wo = _param(
            _normal(rngs, (h, hd, d), (h * hd * 2 * cfg.num_layers) ** -0.5), ("heads", "head_dim", "embed")
        )
        if cfg.qk_norm:
            self.q_norm = RMSNorm(hd, eps=cfg.norm_eps, dtype=self.dtype)
            self.k_norm = RMSNorm(hd, eps=cfg.norm_eps, dtype=self.dtype)
        else:
            self.q_norm = self.k_norm = None

    def __call__(self, x, cos, sin, mask, layer_cache, cache_index):
        dt = self.dtype
        q = jnp.einsum("bsd,dhk->bshk", x, self.wq[...].astype(dt))
        k = jnp.einsum("bsd,dhk->bshk", x, self.wk[...].astype(dt))
        v = jnp.einsum("bsd,dhk->bshk", x, self.wv[...].astype(dt))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q = with_logical_constraint(
            q, ("activation_batch", "activation_length", "activation_heads", "activation_head_dim")
        )
        kv_names = ("activation_batch", "activation_length", "activation_kv_heads", "activation_head_dim")
        new_cache = None
        if layer_cache is not None:
            start = (0, cache_index, 0, 0)
            k_all = jax.lax.dynamic_update_slice(layer_cache["k"], k.astype(layer_cache["k"].dtype), start)
            v_all = jax.lax.dynamic_update_slice(layer_cache["v"], v.astype(layer_cache["v"].dtype), start)
            k_all = with_logical_constraint(k_all, kv_names)
            v_all = with_logical_constraint(v_all, kv_names)
            new_cache = {"k": k_all, "v": v_all}
            k, v = k_all.astype(dt), v_all.astype(dt)
        else:
            k, v = with_logical_constraint(k, kv_names), with_logical_constraint(v, kv_names)
        out = _attend(q, k, v, mask, self.impl)
        y = jnp.einsum("bshk,hkd->bsd", out, self.wo[...].astype(dt))
        return y, new_cache


class SwiGLU(nnx.Module):
    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        d, m = cfg.d_model, cfg.mlp_dim
        self.dtype = cfg.compute_dtype
        self.w_gate = _param(_normal(rngs, (d, m), d**-0.5), ("embed", "mlp"))
        self.w_up = _param(_normal(rngs, (d, m), d**-0.5), ("embed", "mlp"))
        self.w_down = _param(_normal(rngs, (m, d), (m * 2 * cfg.num_layers) ** -0.5), ("mlp", "embed"))

    def __call__(self, x):
        dt = self.dtype
        b, s, d = x.shape
        x2 = x.reshape(b * s, d)
        g = x2 @ self.w_gate[...].astype(dt)
        u = x2 @ self.w_up[...].astype(dt)
        hdn = (nnx.silu(g) * u).reshape(b, s, -1)
        hdn = with_logical_constraint(hdn, ("activation_batch", "activation_length", "activation_mlp"))
        return (hdn.reshape(b * s, -1) @ self.w_down[...].astype(dt)).reshape(b, s, d)


class Block(nnx.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + swiglu(norm(x))``."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, dtype=cfg.compute_dtype)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, dtype=cfg.compute_dtype)
        self.mlp = SwiGLU(cfg, rngs=rngs)

    def __call__(self, x, cos, sin, mask, layer_cache, cache_index):
        h, new_cache = self.attn(self.attn_norm(x), cos, sin, mask, layer_cache, cache_index)
        x = with_logical_constraint(x + h, _BATCH_LEN_EMBED)
        x = with_logical_constraint(x + self.mlp(self.mlp_norm(x)), _BATCH_LEN_EMBED)
        return x, new_cache


def _block_forward(block, x, cos, sin, mask, layer_cache, cache_index):
    return block(x, cos, sin, mask, layer_cache, cache_index)


_REMAT_POLICY = {"full": None, "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}

# ----------------------------------------------------------------------------- scanned layers

LAYER_AXIS = "layers"  # logical name of the stacked blocks' leading axis; no rule maps it: replicated
_SCAN_METADATA = {nnx.PARTITION_NAME: LAYER_AXIS}


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def _stack_leaves(*leaves):
    """One stacked leaf from the same leaf of every layer; a ``Variable`` keeps its type and metadata,
    with ``'layers'`` prepended to its ``out_sharding`` names."""
    if not _is_variable(leaves[0]):
        return jnp.stack([jnp.asarray(x) for x in leaves])
    v = leaves[0].replace(jnp.stack([x[...] for x in leaves]))
    return nnx.spmd.add_axis(v, 0, _SCAN_METADATA)


def _unstack_leaf(leaf, i: int):
    if not _is_variable(leaf):
        return leaf[i]
    v = leaf.replace(leaf[...][i])
    names = v.get_metadata().get("out_sharding")
    if names and names[0] == LAYER_AXIS:
        v.set_metadata(out_sharding=tuple(names[1:]))
    return v


def _plain(tree):
    """Nested ``nnx.State`` / mappings -> nested dicts (leaves kept)."""
    if isinstance(tree, (nnx.State, dict)):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def _rebuild(params, blocks):
    """``params`` (a dict or ``nnx.State``) with its ``'blocks'`` entry replaced, same container type."""
    out = {k: _plain(v) for k, v in params.items() if k != "blocks"}
    out["blocks"] = blocks
    return nnx.State(out) if isinstance(params, nnx.State) else out


def stack_layer_params(params):
    """Unrolled layout -> scanned layout: ``params['blocks'][i][...]`` (``i = 0 .. L-1``; int or str keys, as
    in a model's state or a restored checkpoint) -> ``params['blocks'][...]`` with a leading ``[L]`` axis.

    ``params``: ``nnx.state(model)`` (or its ``nnx.Param`` part), or the pure nested dict of a checkpoint
    (``nnx.as_pure``); ``Variable`` leaves get ``'layers'`` prepended to their ``out_sharding``. Load the
    result with ``nnx.update(scanned_model, ...)`` (a state) or as a ``scan_layers=True`` checkpoint."""
    blocks = _plain(params["blocks"])
    layers = [blocks[k] for k in sorted(blocks, key=int)]
    if [int(k) for k in sorted(blocks, key=int)] != list(range(len(layers))):
        raise ValueError(f"params['blocks'] keys must be 0 .. L-1; got {sorted(blocks, key=int)}")
    stacked = jax.tree.map(_stack_leaves, *layers, is_leaf=_is_variable)
    return _rebuild(params, stacked)


def unstack_layer_params(params):
    """Inverse of :func:`stack_layer_params`: ``params['blocks'][...] [L, ...]`` -> ``params['blocks'][i]``
    (int keys, as in an unrolled model's state)."""
    blocks = _plain(params["blocks"])
    leaves = jax.tree.leaves(blocks, is_leaf=_is_variable)
    n = (leaves[0][...] if _is_variable(leaves[0]) else leaves[0]).shape[0]
    layers = {
        i: jax.tree.map(lambda x, i=i: _unstack_leaf(x, i), blocks, is_leaf=_is_variable) for i in range(n)
    }
    return _rebuild(params, layers)


def _key_name(k) -> Any:
    return getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))


def weight_decay_mask(params):
    """True for weight matrices: leaves with ``ndim > 1`` not counting the stacked ``'layers'`` axis of
    scanned blocks (``params['blocks'][name]...`` rather than ``params['blocks'][i]...``), so the norm
    scales ``[L, d]`` of a ``scan_layers`` model are not decayed, exactly as their ``[d]`` per-layer copies."""

    def matrix(path, x):
        names = [_key_name(k) for k in path]
        stacked = len(names) > 1 and names[0] == "blocks" and not str(names[1]).isdigit()
        return x.ndim - (1 if stacked else 0) > 1

    return jax.tree_util.tree_map_with_path(matrix, params)


def _stacked_blocks(blocks: list) -> nnx.Module:
    """One ``Block`` whose params are those of ``blocks`` stacked on a leading ``'layers'`` axis."""
    graphdef = nnx.graphdef(blocks[0])
    states = [nnx.state(b) for b in blocks]
    return nnx.merge(graphdef, jax.tree.map(_stack_leaves, *states, is_leaf=_is_variable))


class TokenEmbedding(nnx.Module):
    """Text table ``[V_text, d]``; video table ``[C, d]`` (softmax) or ``[G * 2^g, d]`` summed over the
    G bit groups (bitgroups); a learned ``[MASK]`` vector. All ``N(0, 1)`` (group rows ``/ sqrt(G)``)."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.d_model
        self.text = _param(_normal(rngs, (cfg.text_vocab_size, d), 1.0), ("vocab", "embed"))
        rows = cfg.num_groups * cfg.group_size
        self.video = _param(_normal(rngs, (rows, d), cfg.num_groups**-0.5), ("vocab", "embed"))
        self.mask = _param(_normal(rngs, (d,), 1.0), ("embed",))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        cfg = self.cfg
        dt = cfg.compute_dtype
        text_ids = jnp.clip(tokens, 0, cfg.text_vocab_size - 1)
        codes = jnp.clip(tokens - cfg.video_offset, 0, cfg.codebook_size - 1)
        e_text = jnp.take(self.text[...], text_ids, axis=0)
        table = self.video[...]
        if cfg.head == "bitgroups":
            rows = code_groups(cfg, codes) + cfg.group_size * jnp.arange(cfg.num_groups, dtype=jnp.int32)
            e_video = jnp.sum(jnp.take(table, rows, axis=0), axis=-2)  # [B, S, G, d] -> [B, S, d]
        else:
            e_video = jnp.take(table, codes, axis=0)
        e = jnp.where((tokens == cfg.mask_token_id)[..., None], self.mask[...], e_video)
        e = jnp.where((tokens < cfg.video_offset)[..., None], e_text, e)
        return e.astype(dt)


# ----------------------------------------------------------------------------- model


class Transformer(nnx.Module):
    """Decoder-only transformer over ``[text | video]`` tokens; see the module docstring."""

    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        cfg = config
        self.config = cfg
        self.embed = TokenEmbedding(cfg, rngs=rngs)
        blocks = [Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)]
        # scan_layers: the same initial values (same rng draws), stacked on a leading 'layers' axis.
        self.blocks = _stacked_blocks(blocks) if cfg.scan_layers else nnx.List(blocks)
        self.final_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, dtype=cfg.compute_dtype)
        d = cfg.d_model
        self.video_head = _param(
            _normal(rngs, (d, cfg.num_groups * cfg.group_size), d**-0.5), ("embed", "vocab")
        )
        self.text_head = (
            _param(_normal(rngs, (d, cfg.text_vocab_size), d**-0.5), ("embed", "vocab"))
            if cfg.text_loss
            else None
        )
        # [t + h + w, d]: rows of the frame, row and column embeddings, summed per video token.
        self.video_pos = (
            _param(_normal(rngs, (sum(cfg.video_grid), d), 0.02), ("position", "embed"))
            if cfg.video_pos_emb
            else None
        )

    def _video_position_embedding(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
        """``[B, S, d]``: frame + row + column embeddings of video tokens (zero for text)."""
        cfg = self.config
        t, h, w = cfg.video_grid
        local = positions - cfg.max_text_len  # video coordinates from 0 (window-relative t)
        rows = (
            jnp.clip(local[..., 0], 0, t - 1),
            t + jnp.clip(local[..., 1], 0, h - 1),
            t + h + jnp.clip(local[..., 2], 0, w - 1),
        )
        table = self.video_pos[...]
        e = sum(jnp.take(table, r, axis=0) for r in rows)
        return jnp.where(is_video_token(cfg, tokens)[..., None], e, 0.0).astype(cfg.compute_dtype)

    def init_cache(self, batch: int, max_len: int | None = None, dtype: Any = None) -> dict:
        """Empty static KV cache: ``{'layers': [{'k', 'v'} [B, M, Hkv, Dh]] * L, 'tokens' [B, M] = -1,
        'positions' [B, M, 3]}`` (``scan_layers``: ``'layers'`` is one ``{'k', 'v'} [L, B, M, Hkv, Dh]``);
        ``max_len`` defaults to ``config.max_seq_len``, dtype to the compute dtype."""
        cfg = self.config
        m = cfg.max_seq_len if max_len is None else int(max_len)
        dt = cfg.compute_dtype if dtype is None else jnp.dtype(dtype)
        shape = (batch, m, cfg.num_kv_heads, cfg.resolved_head_dim)
        if cfg.scan_layers:  # one {'k', 'v'} [L, B, M, Hkv, Dh], scanned with the stacked blocks
            full = (cfg.num_layers,) + shape
            layers = {"k": jnp.zeros(full, dt), "v": jnp.zeros(full, dt)}
        else:
            layers = [{"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt)} for _ in range(cfg.num_layers)]
        return {
            "layers": layers,
            "tokens": jnp.full((batch, m), -1, jnp.int32),
            "positions": jnp.zeros((batch, m, 3), jnp.int32),
        }

    def _scan_blocks(self, x, cos, sin, mask, layer_caches, start):
        """The stacked blocks over ``x`` with ``nnx.scan`` (params and cache sliced on their leading layer
        axis; each layer rematerialised as in the unrolled loop when ``remat != 'none'``)."""
        remat = self.config.remat

        def layer(x, block, layer_cache):
            return _block_forward(block, x, cos, sin, mask, layer_cache, start)

        if remat != "none":
            layer = nnx.remat(layer, policy=_REMAT_POLICY[remat])
        scanned = nnx.scan(  # layer_caches None (no cache): an empty pytree, scanned as such
            layer,
            in_axes=(nnx.Carry, 0, 0),
            out_axes=(nnx.Carry, 0),
            transform_metadata=_SCAN_METADATA,
        )
        return scanned(x, self.blocks, layer_caches)

    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array,
        *,
        attn_mask: jax.Array | None = None,
        mode: str = "causal",
        cache: dict | None = None,
        cache_index: Any = None,
    ):
        """Forward pass.

        Args:
            tokens: ``[B, S]`` int32 unified ids (text / video / MASK).
            positions: ``[B, S, 3]`` int (t, h, w) rotary coordinates (:func:`make_positions`).
            attn_mask: Optional bool ``[B|1, 1, S, S_k]`` (``S_k = S``, or ``max_len`` with a cache);
                used as given (no key padding added); with a cache, slots ``>= cache_index + S`` are
                still masked. ``None`` -> built from ``mode`` plus key padding.
            mode: One of :data:`MASK_MODES` (ignored when ``attn_mask`` is given).
            cache: ``None`` (full pass) or a cache from :meth:`init_cache` / a previous call.
            cache_index: Slot of the first new token (traced int32 scalar is fine); with a cache.

        Returns:
            ``(logits, new_cache)``; ``new_cache`` is None without a cache. ``logits`` (float32) is
            ``[B, S, C]`` (softmax) or ``[B, S, G, 2^g]`` (bitgroups); with ``text_loss`` a dict
            ``{'video': that, 'text': [B, S, text_vocab_size]}``.
        """
        cfg = self.config
        if tokens.ndim != 2 or positions.shape != tokens.shape + (3,):
            raise ValueError(
                f"tokens must be [B, S] and positions [B, S, 3]; got {tokens.shape} and {positions.shape}."
            )
        if attn_mask is None and mode not in MASK_MODES:
            raise ValueError(f"mode={mode!r}: must be one of {MASK_MODES}")
        tokens = tokens.astype(jnp.int32)
        positions = positions.astype(jnp.int32)
        b, s = tokens.shape
        if cache is None:
            if cache_index is not None:
                raise ValueError("cache_index given without a cache.")
            mask = make_attention_mask(cfg, tokens, positions, mode) if attn_mask is None else attn_mask
            layer_caches = [None] * cfg.num_layers
            start = None
        else:
            if cache_index is None:
                raise ValueError("cache given without cache_index (the slot of the first new token).")
            max_len = cache["tokens"].shape[1]
            if isinstance(cache_index, (int, np.integer)) and not 0 <= cache_index <= max_len - s:
                raise ValueError(
                    f"cache_index={cache_index} with {s} new tokens overflows the cache of {max_len} slots."
                )
            start = jnp.asarray(cache_index, jnp.int32)
            all_tokens = jax.lax.dynamic_update_slice(cache["tokens"], tokens, (0, start))
            all_pos = jax.lax.dynamic_update_slice(cache["positions"], positions, (0, start, 0))
            q_idx = start + jnp.arange(s, dtype=jnp.int32)
            k_idx = jnp.arange(max_len, dtype=jnp.int32)
            if attn_mask is None:
                mask = _mode_mask(cfg, mode, tokens, positions, q_idx, all_tokens, all_pos, k_idx)
            else:
                mask = attn_mask
            mask = mask & (k_idx < start + s)[None, None, None, :]  # stale / unwritten slots
            layer_caches = cache["layers"]

        t, h, w = cfg.video_grid
        cos, sin = rope_angles(
            positions, cfg.resolved_head_dim, cfg.rope_theta, cfg.rope_video, (cfg.max_text_len + t, h, w)
        )
        x = self.embed(tokens)
        if self.video_pos is not None:
            x = x + self._video_position_embedding(tokens, positions)
        x = with_logical_constraint(x, _BATCH_LEN_EMBED)
        if cfg.scan_layers:
            x, new_layers = self._scan_blocks(
                x, cos, sin, mask, None if cache is None else layer_caches, start
            )
        else:
            new_layers = []
            for block, layer_cache in zip(self.blocks, layer_caches):
                if cfg.remat == "none":
                    x, new = block(x, cos, sin, mask, layer_cache, start)
                else:
                    fwd = nnx.remat(_block_forward, policy=_REMAT_POLICY[cfg.remat])
                    x, new = fwd(block, x, cos, sin, mask, layer_cache, start)
                new_layers.append(new)
        h = self.final_norm(x)
        dt = cfg.compute_dtype
        logits = jnp.einsum(
            "bsd,dv->bsv", h, self.video_head[...].astype(dt), preferred_element_type=jnp.float32
        )
        logits = with_logical_constraint(
            logits, ("activation_batch", "activation_length", "activation_vocab")
        )
        if cfg.head == "bitgroups":
            logits = logits.reshape(b, s, cfg.num_groups, cfg.group_size)
        logits = logits.astype(jnp.float32)
        if self.text_head is not None:
            text_logits = jnp.einsum(
                "bsd,dv->bsv", h, self.text_head[...].astype(dt), preferred_element_type=jnp.float32
            ).astype(jnp.float32)
            logits = {"video": logits, "text": text_logits}
        new_cache = None
        if cache is not None:
            new_cache = {"layers": new_layers, "tokens": all_tokens, "positions": all_pos}
        return logits, new_cache


# ----------------------------------------------------------------------------- head utilities


def code_groups(config: TransformerConfig, codes: jax.Array) -> jax.Array:
    """``[...]`` codes -> ``[..., G]`` group values: group ``j`` = bits ``[j g, (j + 1) g)``
    (LFQ bit order, bit ``i`` = ``(c >> i) & 1``). Softmax head: ``[..., 1]`` = the code."""
    codes = jnp.asarray(codes, jnp.int32)
    if config.head != "bitgroups":
        return codes[..., None]
    g = config.group_bits
    shifts = g * jnp.arange(config.num_groups, dtype=jnp.int32)
    return (codes[..., None] >> shifts) & (2**g - 1)


def codes_from_groups(config: TransformerConfig, groups: jax.Array) -> jax.Array:
    """Inverse of :func:`code_groups`."""
    groups = jnp.asarray(groups, jnp.int32)
    if config.head != "bitgroups":
        return groups[..., 0]
    shifts = config.group_bits * jnp.arange(config.num_groups, dtype=jnp.int32)
    return jnp.sum(groups << shifts, axis=-1).astype(jnp.int32)


def _grouped(config: TransformerConfig, logits: jax.Array) -> jax.Array:
    return logits if config.head == "bitgroups" else logits[..., None, :]


def video_logits(logits) -> jax.Array:
    """The video head's logits from a model call's output (``{'video', 'text'}`` when ``text_loss``)."""
    return logits["video"] if isinstance(logits, dict) else logits


def code_log_prob(config: TransformerConfig, logits: jax.Array, codes: jax.Array) -> jax.Array:
    """``log p(code)`` ``[...]`` from head logits (``[..., C]`` or ``[..., G, 2^g]``) and ``codes [...]``:
    for bitgroups the sum over groups of the group log-softmax at the code's group value."""
    logp = jax.nn.log_softmax(_grouped(config, logits).astype(jnp.float32), axis=-1)  # [..., G, n]
    idx = jnp.broadcast_to(code_groups(config, codes), logp.shape[:-1])
    return jnp.sum(jnp.take_along_axis(logp, idx[..., None], axis=-1)[..., 0], axis=-1)


def full_code_log_probs(config: TransformerConfig, logits: jax.Array) -> jax.Array:
    """``[..., codebook_size]`` log-probs of every code. Materialises ``2^K`` entries per token: for
    small K (tests, analysis) only -- training and sampling never need it."""
    logp = jax.nn.log_softmax(_grouped(config, logits).astype(jnp.float32), axis=-1)  # [..., G, n]
    groups = code_groups(config, jnp.arange(config.codebook_size, dtype=jnp.int32))  # [C, G]
    return sum(jnp.take(logp[..., j, :], groups[:, j], axis=-1) for j in range(groups.shape[1]))


def sample_codes(
    config: TransformerConfig, key: jax.Array, logits: jax.Array, temperature: float = 1.0
) -> jax.Array:
    """Samples codes ``[...]`` from head logits; bitgroups draws every group independently (exact
    for the factorised model; see the module docstring). ``temperature == 0`` is argmax (for
    bitgroups the per-group argmaxes are the joint argmax of the product)."""
    lg = _grouped(config, logits).astype(jnp.float32)
    if temperature == 0:
        groups = jnp.argmax(lg, axis=-1)
    else:
        groups = jax.random.categorical(key, lg / temperature, axis=-1)
    return codes_from_groups(config, groups)


# ----------------------------------------------------------------------------- counting


def param_count(model: nnx.Module) -> int:
    """Number of trainable (``nnx.Param``) scalars in ``model``."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def matmul_param_count(config: TransformerConfig) -> int:
    """Parameters used in matmuls: per layer q/k/v/o (``d H Dh + 2 d Hkv Dh + H Dh d``) and SwiGLU
    (``3 d mlp``), plus the video head (``d G 2^g`` or ``d C``) and the text head if any. Embedding
    tables (gathers), norms and the MASK vector are excluded."""
    c = config
    d, h, hkv, hd = c.d_model, c.num_heads, c.num_kv_heads, c.resolved_head_dim
    per_layer = d * h * hd + 2 * d * hkv * hd + h * hd * d + 3 * d * c.mlp_dim
    heads = d * c.num_groups * c.group_size + (d * c.text_vocab_size if c.text_loss else 0)
    return c.num_layers * per_layer + heads


def flops_per_token(config: TransformerConfig, seq_len: int, *, causal: bool = True) -> float:
    """Training FLOPs per token (forward + backward) of a sequence of ``seq_len`` tokens:

        ``6 N + 12 L (H Dh) S * (1/2 if causal else 1)``

    ``N`` = :func:`matmul_param_count` (2 FLOPs per multiply-add forward, 4 backward: 6 N);
    attention per layer and token: ``Q K^T`` and ``P V`` are ``2 S H Dh`` FLOPs each forward, so
    ``4 S H Dh`` forward and ``12 S H Dh`` with the backward; a causal (or block-causal) mask
    attends to half the keys on average, so it counts half. ``H Dh = d_model`` with the default
    head_dim. Softmax, norms, rotary and embeddings are ignored (MaxText / PaLM convention).
    """
    c = config
    attn = 12 * c.num_layers * c.num_heads * c.resolved_head_dim * seq_len * (0.5 if causal else 1.0)
    return float(6 * matmul_param_count(c) + attn)
