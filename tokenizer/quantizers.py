"""Quantizers for the causal 3D CNN video tokenizer (MAGVIT-v2 style).

Three interchangeable bottlenecks share one protocol (:class:`Quantizer`):

* :class:`LFQ` -- lookup-free quantization (MAGVIT-v2): every latent channel is
  one bit, the codebook is the implicit set of ``2^K`` sign vectors, and an
  entropy penalty keeps the per-token assignment confident while spreading the
  batch over the codebook.
* :class:`FSQ` -- finite scalar quantization (Mentzer et al. 2023): each channel
  is bounded and rounded onto a small fixed grid; no auxiliary loss.
* :class:`VQ` -- classic vector quantization with an explicit, l2-normalised
  codebook, EMA or learned updates, and dead-code restarts.

Every quantizer maps ``z [..., code_dim]`` to ``(z_q, indices, aux)`` where
``z_q`` carries straight-through gradients, ``indices`` are int32 token ids in
``[0, codebook_size)`` and ``aux`` is a dict of float32 scalars whose ``'loss'``
entry is the weighted auxiliary loss to add to the training objective.

Plus :func:`make_quantizer` (config-driven factory) and :class:`CodeUsage`, a
numpy-side accumulator of codebook usage over a whole evaluation set.

All ``__call__`` methods are ``nnx.jit``-compatible. ``train`` must be a Python
bool (it selects which updates are traced), never a traced value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "Buffer",
    "CodeUsage",
    "FSQ",
    "LFQ",
    "Quantizer",
    "VQ",
    "batch_code_stats",
    "make_quantizer",
]

# Small matmuls whose outputs get divided by a temperature of 0.01 (LFQ) or
# arg-maxed (VQ): TF32/bf16 default precision on accelerators would visibly
# perturb the entropies and flip near-ties, so request full fp32.
_HIGHEST = jax.lax.Precision.HIGHEST


class Buffer(nnx.Variable):
    """Non-trainable module state (EMA statistics, EMA-updated codebooks).

    A distinct ``nnx.Variable`` subclass so optimisers (which filter on
    ``nnx.Param``) never touch it, while ``nnx.jit`` still carries its updates.
    """


def batch_code_stats(indices: jax.Array, codebook_size: int) -> tuple[jax.Array, jax.Array]:
    """Hard usage statistics of one batch of token ids, jit-friendly.

    Sort-based so the cost is ``O(N log N)`` in the number of tokens and
    independent of ``codebook_size`` (no dense histogram of ``2^18`` bins per
    step).

    Args:
        indices: int token ids of any shape.
        codebook_size: Number of codes, the denominator of the usage fraction.

    Returns:
        ``(usage, perplexity)``: fraction of the codebook hit at least once in the
        batch, and ``exp`` of the entropy (nats) of the empirical code histogram.
    """
    flat = jnp.sort(indices.reshape(-1))  # [N]
    n = flat.shape[0]
    # A new run starts wherever the sorted value changes: one run per distinct code.
    is_new = jnp.concatenate([jnp.ones((1,), bool), flat[1:] != flat[:-1]])  # [N]
    n_unique = jnp.sum(is_new)
    run_id = jnp.cumsum(is_new) - 1  # [N], in [0, n_unique)
    counts = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), run_id, num_segments=n)  # [N]
    p = counts / n
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    usage = n_unique.astype(jnp.float32) / codebook_size
    return usage, jnp.exp(entropy)


def _entropy(p: jax.Array, log_p: jax.Array, axis: int = -1) -> jax.Array:
    """Shannon entropy in nats; ``0 log 0`` is 0 because ``p`` underflows to 0 exactly."""
    return -jnp.sum(p * log_p, axis=axis)


class Quantizer(nnx.Module):
    """Common protocol of the tokenizer bottlenecks.

    Attributes:
        codebook_size: Number of discrete codes (token vocabulary size).
        code_dim: Channels the encoder must output, and the decoder receives.
    """

    codebook_size: int
    code_dim: int

    def __call__(self, z: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """Quantizes ``z``.

        Args:
            z: ``[..., code_dim]`` float latents, e.g. ``[B, T, H, W, C]``.
            train: Python bool; enables state updates (EMA, restarts).

        Returns:
            ``(z_q, indices, aux)``: ``z_q [..., code_dim]`` equal in value to
            ``indices_to_codes(indices)`` with straight-through gradients,
            ``indices [...]`` int32, and ``aux`` a dict of float32 scalars
            including ``'loss'``, ``'perplexity'`` and ``'codebook_usage_batch'``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    def indices_to_codes(self, indices: jax.Array) -> jax.Array:
        """Maps int token ids ``[...]`` to decoder inputs ``[..., code_dim]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement indices_to_codes")

    def codes_to_indices(self, codes: jax.Array) -> jax.Array:
        """Maps codes ``[..., code_dim]`` (as produced by the quantizer) to int32 ids ``[...]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement codes_to_indices")


# ----------------------------------------------------------------------------
# LFQ
# ----------------------------------------------------------------------------


def _entropy_groups(
    num_bits: int, group_bits: int | None, max_group_bits: int
) -> tuple[tuple[int, int], ...]:
    """Splits ``num_bits`` channels into contiguous ``(start, size)`` groups.

    ``group_bits=None`` picks the fewest groups of at most ``max_group_bits``
    bits, as balanced as possible (18 bits -> 9 + 9): fewer, larger groups
    make the batch-entropy estimate tighter (see :class:`LFQ`).
    """
    if group_bits is None:
        n_groups = max(1, math.ceil(num_bits / max_group_bits))
        base, extra = divmod(num_bits, n_groups)
        sizes = [base + (1 if i < extra else 0) for i in range(n_groups)]
    else:
        if group_bits < 1:
            raise ValueError(f"entropy_group_bits must be >= 1, got {group_bits}")
        sizes = [group_bits] * (num_bits // group_bits)
        if num_bits % group_bits:
            sizes.append(num_bits % group_bits)
    groups, start = [], 0
    for size in sizes:
        groups.append((start, size))
        start += size
    return tuple(groups)


def _sign_codebook(bits: int, scale: float) -> np.ndarray:
    """All ``2^bits`` sign vectors ``[2^bits, bits]``; row ``j`` has bit ``i`` = ``(j >> i) & 1``.

    Same bit order as the LFQ token index, so row ``j`` is the code of index ``j``.
    """
    j = np.arange(2**bits)[:, None]
    i = np.arange(bits)[None, :]
    return np.where((j >> i) & 1, scale, -scale).astype(np.float32)


class LFQ(Quantizer):
    """Lookup-free quantization (MAGVIT-v2, Yu et al. 2023).

    Each of the ``K = num_bits`` channels is quantized independently to
    ``+s`` if ``z_i > 0`` else ``-s`` (``s = 1/sqrt(K)`` with ``scale_codes``,
    else 1); the token id is ``sum_i 2^i 1{z_i > 0}``. Before quantization z
    goes through a parameter-free RMS norm over channels (times ``s``), so the
    continuous latent lives on the same scale as the codes: the commitment loss
    and the entropy's distances are then meaningful whatever the encoder's
    output scale, and no affine parameters can undo it.

    Entropy penalty. The soft assignment of a token is
    ``p(c | z) = softmax_c(-||z - c||^2 / T)``; for sign codes this equals
    ``softmax_c(2 <z, c> / T)`` because ``||c||^2`` is the same for every code.
    ``entropy_loss = mean_n H(p(.|z_n)) - batch_entropy_weight * H(mean_n p(.|z_n))``:
    the first term makes assignments confident, the second spreads the batch
    over the codebook.

    Grouped estimate for large K. Enumerating ``2^K`` codes is impossible for
    ``K = 18``, so the K bits are split into groups of at most
    ``max_entropy_group_bits`` bits (or exactly ``entropy_group_bits``), each
    group enumerated on its own:

    * Per-sample term: exact. ``<z, c>`` is a sum over groups, so ``p(.|z)``
      factorises into independent per-group softmaxes and the entropy of the
      product is the sum of the group entropies.
    * Batch term: an upper bound. The batch average of product distributions
      is a mixture, which is not a product; we use the sum of its per-group
      marginal entropies, which by subadditivity is ``>=`` the true joint
      entropy, with equality iff the groups are independent under the
      batch-averaged distribution (e.g. a batch that is a Cartesian product
      of per-group latents). So with more than one group the diversity term
      can be satisfied by per-group balance without joint balance; one group
      (``K <= max_entropy_group_bits``) is exact.

    ``'perplexity'`` is ``exp(batch_entropy)`` and inherits the same estimate.

    Attributes:
        codebook_size: ``2^K``.
        code_dim: ``K``.
    """

    def __init__(
        self,
        num_bits: int,
        *,
        scale_codes: bool = False,
        normalize: bool = True,
        temperature: float = 0.01,
        entropy_weight: float = 0.1,
        commitment_weight: float = 0.25,
        batch_entropy_weight: float = 1.0,
        entropy_group_bits: int | None = None,
        max_entropy_group_bits: int = 12,
        eps: float = 1e-6,
        rngs: nnx.Rngs | None = None,
    ):
        """Builds the quantizer (no parameters).

        Args:
            num_bits: K, bits per token; the codebook has ``2^K`` entries.
                At most 31 so ids fit in int32.
            scale_codes: If True codes are ``+-1/sqrt(K)`` (unit l2 norm), else ``+-1``.
            normalize: Apply the parameter-free RMS norm to z first. Off only
                for ablations/tests: the entropy temperature assumes unit scale.
            temperature: T of the soft assignment (MAGVIT-v2 uses 0.01).
            entropy_weight: Weight of ``entropy_loss`` in ``aux['loss']``.
            commitment_weight: Weight of ``commit_loss`` in ``aux['loss']``.
            batch_entropy_weight: Weight of the batch (diversity) entropy inside
                ``entropy_loss``.
            entropy_group_bits: Exact group size for the entropy estimate; None
                picks automatically from ``max_entropy_group_bits``.
            max_entropy_group_bits: Largest group enumerated (``2^g`` logits
                per token per group) when ``entropy_group_bits`` is None.
            eps: Numerical floor inside the RMS norm.
            rngs: Ignored (accepted so factories can pass it uniformly).
        """
        del rngs
        if not 1 <= num_bits <= 31:
            raise ValueError(f"num_bits must be in [1, 31] so ids fit in int32, got {num_bits}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.num_bits = num_bits
        self.codebook_size = 2**num_bits
        self.code_dim = num_bits
        self.scale = 1.0 / math.sqrt(num_bits) if scale_codes else 1.0
        self.normalize_input = normalize
        self.temperature = float(temperature)
        self.entropy_weight = float(entropy_weight)
        self.commitment_weight = float(commitment_weight)
        self.batch_entropy_weight = float(batch_entropy_weight)
        self.eps = float(eps)
        self.entropy_groups = _entropy_groups(num_bits, entropy_group_bits, max_entropy_group_bits)

    def normalize(self, z: jax.Array) -> jax.Array:
        """The deterministic pre-quantization map: RMS norm over channels, times the code scale.

        Args:
            z: ``[..., K]`` latents.

        Returns:
            ``[..., K]`` float32 latents with per-token RMS ``s`` (the code scale).
        """
        z = z.astype(jnp.float32)
        if not self.normalize_input:
            return z
        rms = jnp.sqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + self.eps)
        return z / rms * self.scale

    def entropy_terms(self, z_n: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-sample and batch entropies (nats) of the soft code assignment.

        Args:
            z_n: ``[..., K]`` normalised latents (output of :meth:`normalize`).

        Returns:
            ``(per_sample_entropy, batch_entropy)`` scalars: the mean over tokens
            of ``H(p(.|z))`` (exact) and the (grouped, upper-bound when more
            than one group) entropy of the batch-averaged assignment.
        """
        flat = z_n.reshape(-1, self.num_bits)  # [N, K]
        per_sample = jnp.zeros((), jnp.float32)
        batch = jnp.zeros((), jnp.float32)
        for start, size in self.entropy_groups:
            codes = jnp.asarray(_sign_codebook(size, self.scale))  # [2^g, g]
            zg = flat[:, start : start + size]  # [N, g]
            # 2<z,c>/T differs from -||z-c||^2/T by a per-token constant, which softmax ignores.
            logits = 2.0 * jnp.matmul(zg, codes.T, precision=_HIGHEST) / self.temperature  # [N, 2^g]
            log_p = jax.nn.log_softmax(logits, axis=-1)
            p = jnp.exp(log_p)
            per_sample = per_sample + jnp.mean(_entropy(p, log_p))
            avg_p = jnp.mean(p, axis=0)  # [2^g]
            # avg_p can underflow to exactly 0 for unused codes; guard the log so 0*log0 -> 0, not nan.
            batch = batch + _entropy(avg_p, jnp.log(jnp.maximum(avg_p, 1e-30)))
        return per_sample, batch

    def __call__(self, z: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """Quantizes ``z [..., K]`` (e.g. ``[B, T, H, W, K]``); see :class:`Quantizer`.

        ``train`` is accepted for the protocol; LFQ has no state, and the aux
        losses are computed either way so eval logs match training logs.
        """
        del train
        if z.shape[-1] != self.num_bits:
            raise ValueError(f"LFQ expects {self.num_bits} channels, got shape {z.shape}")
        z_n = self.normalize(z)  # [..., K]
        positive = z_n > 0
        q = jnp.where(positive, self.scale, -self.scale).astype(jnp.float32)  # [..., K]
        # Straight-through: forward value q, backward identity into z_n.
        z_q = z_n + jax.lax.stop_gradient(q - z_n)
        indices = self._bits_to_indices(positive)

        per_sample, batch = self.entropy_terms(z_n)
        entropy_loss = per_sample - self.batch_entropy_weight * batch
        commit = jnp.mean(jnp.square(z_n - jax.lax.stop_gradient(q)))
        loss = self.entropy_weight * entropy_loss + self.commitment_weight * commit
        usage, hard_ppl = batch_code_stats(indices, self.codebook_size)
        aux = {
            "loss": loss,
            "entropy_loss": entropy_loss,
            "per_sample_entropy": per_sample,
            "batch_entropy": batch,
            "commit_loss": commit,
            "perplexity": jnp.exp(batch),
            "perplexity_hard": hard_ppl,
            "codebook_usage_batch": usage,
        }
        return z_q, indices, aux

    def _bits_to_indices(self, positive: jax.Array) -> jax.Array:
        """``[..., K]`` bool -> ``[...]`` int32 ids, bit i of channel i weighted ``2^i``."""
        weights = jnp.asarray(1 << np.arange(self.num_bits), dtype=jnp.int32)  # [K]
        return jnp.sum(positive.astype(jnp.int32) * weights, axis=-1).astype(jnp.int32)

    def indices_to_codes(self, indices: jax.Array) -> jax.Array:
        """``[...]`` ids -> ``[..., K]`` sign codes ``+-s``."""
        bits = (indices.astype(jnp.int32)[..., None] >> jnp.arange(self.num_bits, dtype=jnp.int32)) & 1
        return jnp.where(bits == 1, self.scale, -self.scale).astype(jnp.float32)

    def codes_to_indices(self, codes: jax.Array) -> jax.Array:
        """``[..., K]`` codes (or any latents: only the signs matter) -> ``[...]`` int32 ids."""
        return self._bits_to_indices(codes > 0)


# ----------------------------------------------------------------------------
# FSQ
# ----------------------------------------------------------------------------


class FSQ(Quantizer):
    """Finite scalar quantization (Mentzer et al. 2023, "FSQ: VQ-VAE made simple").

    Channel ``i`` is squashed by ``bound`` into an interval holding exactly
    ``L_i`` integers, rounded (straight-through), and divided by
    ``L_i // 2`` so codes lie in ``[-1, 1]``. Token ids are the mixed-radix
    number of the per-channel digits (channel 0 least significant). There is
    no auxiliary loss: the grid is fixed, so there is nothing to collapse.

    The bound is ``tanh(z + shift) * h - offset`` with
    ``h = (L - 1)(1 - eps) / 2``. For odd L, ``offset = 0`` and the range
    ``(-h, h)`` rounds to ``{-(L-1)/2 .. (L-1)/2}``. For even L the integers
    are asymmetric (``{-L/2 .. L/2 - 1}``), so the interval is moved down by
    a half step (``offset = 0.5``) and ``shift = atanh(offset / h)`` keeps
    ``bound(0) = 0``. (The paper's listing writes ``tan``; ``atanh`` is the
    exact inverse needed for ``bound(0) = 0``; the two differ by < 1e-3 for
    ``L >= 4``.) Levels must be ``>= 3``: for ``L = 2`` the shifted interval
    cannot contain 0 (``offset >= h``); a binary channel is what :class:`LFQ` is for.

    Attributes:
        codebook_size: ``prod(levels)``.
        code_dim: ``len(levels)``.
    """

    def __init__(self, levels: Sequence[int], *, eps: float = 1e-3, rngs: nnx.Rngs | None = None):
        """Builds the quantizer (no parameters).

        Args:
            levels: Grid size per channel, each ``>= 3``, e.g. ``(8, 8, 8, 5, 5)`` (12800 codes).
            eps: Shrinks the bound slightly so ``tanh`` never reaches a rounding
                boundary that would create an extra level.
            rngs: Ignored (accepted so factories can pass it uniformly).
        """
        del rngs
        levels = tuple(int(l) for l in levels)
        if not levels or min(levels) < 3:
            raise ValueError(f"FSQ levels must all be >= 3 (use LFQ for binary channels), got {levels}")
        if math.prod(levels) > 2**31 - 1:
            raise ValueError(f"prod(levels)={math.prod(levels)} does not fit int32 ids")
        self.levels = levels
        self.eps = float(eps)
        self.codebook_size = math.prod(levels)
        self.code_dim = len(levels)
        # Tuples of Python numbers are static module attributes; arrays are rebuilt per call.
        self.basis = tuple(int(b) for b in np.cumprod((1,) + levels[:-1]))

    def _consts(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        levels = jnp.asarray(self.levels, jnp.float32)  # [C]
        half_width = jnp.asarray([l // 2 for l in self.levels], jnp.float32)  # [C]
        basis = jnp.asarray(self.basis, jnp.int32)  # [C]
        return levels, half_width, basis

    def bound(self, z: jax.Array) -> jax.Array:
        """Continuous pre-rounding map in code units: ``bound(z) / (L // 2)``.

        The straight-through ``z_q`` has exactly this function's gradient.

        Args:
            z: ``[..., C]`` latents.

        Returns:
            ``[..., C]`` float32 values in code units; scaled back by ``L // 2``
            they round to exactly the ``L`` grid integers of each channel.
        """
        levels, half_width, _ = self._consts()
        h = (levels - 1.0) * (1.0 - self.eps) / 2.0
        offset = jnp.where(jnp.asarray(self.levels) % 2 == 0, 0.5, 0.0)
        shift = jnp.arctanh(offset / h)
        return (jnp.tanh(z.astype(jnp.float32) + shift) * h - offset) / half_width

    def __call__(self, z: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """Quantizes ``z [..., C]`` (e.g. ``[B, T, H, W, C]``); see :class:`Quantizer`."""
        del train  # FSQ is stateless and has no loss.
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"FSQ expects {self.code_dim} channels, got shape {z.shape}")
        _, half_width, _ = self._consts()
        b = self.bound(z) * half_width  # [..., C], in integer units
        rounded = jnp.round(b)
        # Straight-through rounding; the division keeps codes in [-1, 1].
        z_q = (b + jax.lax.stop_gradient(rounded - b)) / half_width
        indices = self._digits_to_indices(rounded)
        usage, ppl = batch_code_stats(indices, self.codebook_size)
        aux = {
            "loss": jnp.zeros((), jnp.float32),
            "perplexity": ppl,
            "codebook_usage_batch": usage,
        }
        return z_q, indices, aux

    def _digits_to_indices(self, rounded: jax.Array) -> jax.Array:
        """Integer-valued grid points ``[..., C]`` -> mixed-radix ids ``[...]``."""
        _, half_width, basis = self._consts()
        digits = (rounded + half_width).astype(jnp.int32)  # [..., C] in [0, L)
        return jnp.sum(digits * basis, axis=-1).astype(jnp.int32)

    def indices_to_codes(self, indices: jax.Array) -> jax.Array:
        """``[...]`` ids -> ``[..., C]`` codes in ``[-1, 1]``."""
        _, half_width, basis = self._consts()
        levels = jnp.asarray(self.levels, jnp.int32)
        digits = (indices.astype(jnp.int32)[..., None] // basis) % levels  # [..., C]
        return (digits.astype(jnp.float32) - half_width) / half_width

    def codes_to_indices(self, codes: jax.Array) -> jax.Array:
        """``[..., C]`` grid codes -> ``[...]`` int32 ids (codes are snapped to the nearest grid point)."""
        _, half_width, _ = self._consts()
        return self._digits_to_indices(jnp.round(codes.astype(jnp.float32) * half_width))


# ----------------------------------------------------------------------------
# VQ
# ----------------------------------------------------------------------------


def _l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    # eps keeps an all-zero row (never expected, but cheap to survive) finite.
    return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + eps)


class VQ(Quantizer):
    """Cosine-similarity vector quantization with EMA or learned codebook.

    Inputs and codebook rows are l2-normalised (ViT-VQGAN / improved VQGAN),
    so the lookup is a max cosine similarity and codes live on the unit
    sphere; this removes the scale mismatch between encoder outputs and
    codebook that makes plain VQ collapse.

    Codebook updates:

    * ``update='ema'``: the codebook is a :class:`Buffer` recomputed each
      training step as ``ema_sum / smoothed(ema_count)`` (van den Oord et al.
      2017, App. A.1). Laplace smoothing
      ``(count + eps) / (n + K eps) * n`` keeps rarely used codes finite.
      ``ema_count`` starts at 1 and ``ema_sum`` at the initial codebook, as if
      each code had seen one input at its own position, so the first update
      never divides by zero and unused codes keep their direction.
    * ``update='learned'``: the codebook is an ``nnx.Param`` trained by
      ``codebook_loss = ||sg(z) - e||^2`` (weight ``codebook_weight``).

    Dead-code restarts (both modes, ``train=True`` only). ``ema_count`` (an
    EMA of how many tokens per batch each code receives; kept in both modes)
    below ``restart_threshold`` marks a code dead. Dead codes are replaced by
    randomly chosen (normalised, gradient-stopped) encoder outputs of the
    current batch, sampled without replacement when the batch has at least
    ``codebook_size`` tokens, and their ``ema_count`` is reset to
    ``restart_count`` (default: the threshold) so a restarted code that still
    attracts nothing is re-drawn next step, while one that attracts at least
    ``threshold`` tokens per step stays alive. Restarts happen after the
    lookup, so this step's ``indices``/``z_q`` are consistent with the
    codebook that produced them. ``aux['restarted_codes']`` counts them.

    Attributes:
        codebook_size: Number of codebook rows.
        code_dim: Channels per code.
        codebook: ``[K, D]`` un-normalised rows (``Buffer`` for EMA, ``Param`` if learned).
        ema_count: ``[K]`` Buffer, EMA of per-batch assignment counts.
        ema_sum: ``[K, D]`` Buffer, EMA of per-code input sums (EMA mode only).
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        *,
        rngs: nnx.Rngs,
        update: str = "ema",
        beta: float = 0.25,
        codebook_weight: float = 1.0,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_threshold: float = 1e-3,
        restart_count: float | None = None,
    ):
        """Builds the codebook and its statistics.

        Args:
            codebook_size: Number of codes K.
            code_dim: Code dimension D (encoder output channels).
            rngs: Codebook init uses ``rngs.params()``; a ``restart`` stream
                (else ``default``, else ``params``) seeds the restart sampler,
                an ``nnx.RngStream`` kept in the module so its counter advances
                (and restarts differ) step to step under ``nnx.jit``.
            update: ``'ema'`` or ``'learned'``.
            beta: Commitment weight.
            codebook_weight: Weight of the codebook loss (``update='learned'``).
            decay: EMA decay of ``ema_count``/``ema_sum``.
            eps: Laplace smoothing constant of the EMA update.
            restart_threshold: Codes with ``ema_count`` below this are restarted;
                ``<= 0`` disables restarts.
            restart_count: ``ema_count`` given to a restarted code; defaults to
                ``restart_threshold``.
        """
        if update not in ("ema", "learned"):
            raise ValueError(f"update must be 'ema' or 'learned', got {update!r}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.codebook_size = int(codebook_size)
        self.code_dim = int(code_dim)
        self.update = update
        self.beta = float(beta)
        self.codebook_weight = float(codebook_weight)
        self.decay = float(decay)
        self.eps = float(eps)
        self.restart_threshold = float(restart_threshold)
        self.restart_count = float(restart_threshold if restart_count is None else restart_count)

        init = _l2_normalize(
            jax.random.normal(rngs.params(), (self.codebook_size, self.code_dim), jnp.float32)
        )
        self.codebook = Buffer(init) if update == "ema" else nnx.Param(init)
        self.ema_count = Buffer(jnp.ones((self.codebook_size,), jnp.float32))
        if update == "ema":
            self.ema_sum = Buffer(init)
        try:
            restart_key = rngs["restart"]()  # falls back to the 'default' stream if present
        except KeyError:
            restart_key = rngs.params()
        self.restart_rng = nnx.RngStream(restart_key, tag="restart")

    def normalized_codebook(self) -> jax.Array:
        """``[K, D]`` unit-norm codebook rows, the actual codes."""
        return _l2_normalize(self.codebook[...])

    def _lookup(self, flat: jax.Array, codebook: jax.Array) -> jax.Array:
        """Nearest code by cosine similarity: ``[N, D]`` unit rows -> ``[N]`` int32."""
        sim = jnp.matmul(flat, codebook.T, precision=_HIGHEST)  # [N, K]
        return jnp.argmax(sim, axis=-1).astype(jnp.int32)

    def __call__(self, z: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """Quantizes ``z [..., D]`` (e.g. ``[B, T, H, W, D]``); see :class:`Quantizer`.

        With ``train=True`` the EMA statistics (and, in EMA mode, the codebook)
        are updated and dead codes restarted, after the lookup.
        """
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"VQ expects {self.code_dim} channels, got shape {z.shape}")
        lead = z.shape[:-1]
        z_n = _l2_normalize(z.astype(jnp.float32))  # [..., D]
        flat = z_n.reshape(-1, self.code_dim)  # [N, D]
        codebook = self.normalized_codebook()  # [K, D]
        idx = self._lookup(jax.lax.stop_gradient(flat), jax.lax.stop_gradient(codebook))  # [N]
        e = jnp.take(codebook, idx, axis=0)  # [N, D]; differentiable w.r.t. a learned codebook

        commit = jnp.mean(jnp.square(flat - jax.lax.stop_gradient(e)))
        if self.update == "learned":
            codebook_loss = jnp.mean(jnp.square(jax.lax.stop_gradient(flat) - e))
        else:
            codebook_loss = jnp.zeros((), jnp.float32)
        loss = self.beta * commit + self.codebook_weight * codebook_loss

        # Straight-through: value e, gradient identity into z_n.
        z_q = (flat + jax.lax.stop_gradient(e - flat)).reshape(*lead, self.code_dim)
        indices = idx.reshape(lead)

        restarted = jnp.zeros((), jnp.float32)
        if train:
            restarted = self._update_state(jax.lax.stop_gradient(flat), idx)

        usage, ppl = batch_code_stats(indices, self.codebook_size)
        aux = {
            "loss": loss,
            "commit_loss": commit,
            "codebook_loss": codebook_loss,
            "perplexity": ppl,
            "codebook_usage_batch": usage,
            "restarted_codes": restarted,
        }
        return z_q, indices, aux

    def _update_state(self, flat: jax.Array, idx: jax.Array) -> jax.Array:
        """EMA update and dead-code restart from one batch.

        Args:
            flat: ``[N, D]`` normalised, gradient-stopped inputs.
            idx: ``[N]`` their assigned codes.

        Returns:
            Number of restarted codes (float32 scalar).
        """
        k = self.codebook_size
        # segment_sum instead of a [N, K] one-hot: memory stays O(N D + K D).
        counts = jax.ops.segment_sum(jnp.ones(idx.shape, jnp.float32), idx, num_segments=k)  # [K]
        ema_count = self.decay * self.ema_count[...] + (1.0 - self.decay) * counts
        if self.update == "ema":
            sums = jax.ops.segment_sum(flat, idx, num_segments=k)  # [K, D]
            ema_sum = self.decay * self.ema_sum[...] + (1.0 - self.decay) * sums
            n = jnp.sum(ema_count)
            smoothed = (ema_count + self.eps) / (n + k * self.eps) * n  # Laplace smoothing
            codebook = ema_sum / smoothed[:, None]
        else:
            codebook = self.codebook[...]

        restarted = jnp.zeros((), jnp.float32)
        if self.restart_threshold > 0:
            dead = ema_count < self.restart_threshold  # [K]
            n_tokens = flat.shape[0]
            # Static shapes decide replacement: distinct samples whenever the batch is big enough.
            pick = jax.random.choice(self.restart_rng(), n_tokens, (k,), replace=n_tokens < k)  # [K]
            samples = jnp.take(flat, pick, axis=0)  # [K, D], unit norm
            codebook = jnp.where(dead[:, None], samples, codebook)
            ema_count = jnp.where(dead, self.restart_count, ema_count)
            if self.update == "ema":
                # Keep sum/count consistent so the next EMA step starts from the sample.
                ema_sum = jnp.where(dead[:, None], samples * self.restart_count, ema_sum)
            restarted = jnp.sum(dead).astype(jnp.float32)

        self.ema_count[...] = ema_count
        if self.update == "ema":
            self.ema_sum[...] = ema_sum
        # In learned mode this writes the Param in place (works inside nnx.grad; the
        # optimizer step then moves the restarted rows by their ~zero gradients).
        self.codebook[...] = codebook
        return restarted

    def indices_to_codes(self, indices: jax.Array) -> jax.Array:
        """``[...]`` ids -> ``[..., D]`` unit-norm codebook rows."""
        return jnp.take(self.normalized_codebook(), indices.astype(jnp.int32), axis=0)

    def codes_to_indices(self, codes: jax.Array) -> jax.Array:
        """``[..., D]`` codes -> ``[...]`` ids of the most cosine-similar codebook row."""
        lead = codes.shape[:-1]
        flat = _l2_normalize(codes.astype(jnp.float32)).reshape(-1, self.code_dim)
        return self._lookup(flat, self.normalized_codebook()).reshape(lead)


# ----------------------------------------------------------------------------
# Factory and evaluation accumulator
# ----------------------------------------------------------------------------

_KINDS = {"lfq": LFQ, "fsq": FSQ, "vq": VQ}


def make_quantizer(kind: str, **config: Any) -> Quantizer:
    """Builds a quantizer from a config dict.

    Args:
        kind: ``'lfq'``, ``'fsq'`` or ``'vq'`` (case-insensitive).
        **config: Constructor arguments of the chosen class, e.g.
            ``num_bits=18`` (LFQ), ``levels=(8, 8, 8, 5, 5)`` (FSQ),
            ``codebook_size=8192, code_dim=32, rngs=nnx.Rngs(0)`` (VQ).
            ``rngs`` is required by VQ and ignored by LFQ/FSQ, so callers can
            always pass it.

    Returns:
        The quantizer module.
    """
    try:
        cls = _KINDS[kind.lower()]
    except KeyError:
        raise ValueError(f"unknown quantizer kind {kind!r}; expected one of {sorted(_KINDS)}") from None
    return cls(**config)


class CodeUsage:
    """Accumulates token-id counts over an evaluation set (numpy, host side).

    Batch metrics undercount usage of large codebooks (a batch of 10k tokens
    cannot touch 2^18 codes); this keeps one dense int64 histogram
    (2 MiB for 2^18 codes) and reports usage and perplexity over everything
    seen.

    Example::

        usage = CodeUsage(quantizer.codebook_size)
        for batch in eval_set:
            _, idx, _ = quantizer(encode(batch), train=False)
            usage.update(idx)
        usage.summary()  # {'usage': ..., 'perplexity': ..., ...}
    """

    def __init__(self, codebook_size: int):
        """Args:
        codebook_size: Number of codes; ids must lie in ``[0, codebook_size)``.
        """
        self.codebook_size = int(codebook_size)
        self.counts = np.zeros(self.codebook_size, np.int64)

    def reset(self) -> None:
        """Forgets everything accumulated."""
        self.counts[:] = 0

    def update(self, indices: Any) -> None:
        """Adds a batch of ids (any shape, numpy or jax array)."""
        flat = np.asarray(indices).reshape(-1).astype(np.int64)
        if flat.size == 0:
            return
        if flat.min() < 0 or flat.max() >= self.codebook_size:
            raise ValueError(f"indices outside [0, {self.codebook_size}): min {flat.min()}, max {flat.max()}")
        self.counts += np.bincount(flat, minlength=self.codebook_size)

    @property
    def total(self) -> int:
        """Number of tokens seen."""
        return int(self.counts.sum())

    @property
    def used(self) -> int:
        """Number of distinct codes seen at least once."""
        return int(np.count_nonzero(self.counts))

    @property
    def usage_fraction(self) -> float:
        """Fraction of the codebook seen at least once."""
        return self.used / self.codebook_size

    @property
    def entropy(self) -> float:
        """Entropy (nats) of the empirical code distribution; 0 before any update."""
        total = self.total
        if total == 0:
            return 0.0
        p = self.counts[self.counts > 0] / total
        return float(-(p * np.log(p)).sum())

    @property
    def perplexity(self) -> float:
        """``exp(entropy)``: the effective number of equally used codes."""
        return float(np.exp(self.entropy))

    def summary(self) -> dict[str, float]:
        """All metrics as a flat dict of Python numbers, for logging."""
        return {
            "tokens": float(self.total),
            "used_codes": float(self.used),
            "usage": self.usage_fraction,
            "entropy": self.entropy,
            "perplexity": self.perplexity,
        }
