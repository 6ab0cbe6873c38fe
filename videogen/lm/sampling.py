"""Model-agnostic decoding: MaskGIT mask schedules and parallel decoding, classifier-free guidance,
and autoregressive sampling with a KV-cached step function.

Everything here is written against plain callables, so it works with any model:

* MaskGIT: ``logits_fn(tokens [B, N] int32) -> logits [B, N, V]`` (tokens hold ``mask_id`` where
  unknown; any conditioning -- text embeddings, parameters -- is closed over by the callable).
* Autoregressive: ``step_fn(state, token [B] int32, index int32 scalar) -> (logits [B, V], state)``
  where ``state`` is any pytree (typically the KV cache) and ``index`` the position of ``token``.
* Frame-causal MaskGIT: :func:`maskgit_decode_frames` (a ``logits_fn`` over the whole sequence) or
  :func:`maskgit_decode_frames_cached` (``step_fn(state, frame [B, P], f)``: one latent frame per call
  against a cache of the earlier ones).

All functions are pure and ``jax.jit``-compatible with static shapes: one compilation per
(shapes, static options), whatever the rng or the data. Decoding loops are single
``lax.while_loop`` / ``lax.scan`` ops, so the model is traced once, not once per step.

Mask schedules (MaskGIT, Chang et al. 2022)
-------------------------------------------
:func:`mask_ratio` maps ``r`` in ``[0, 1]`` (the fraction of the decoding done) to the fraction of
tokens still masked, decreasing from 1 at ``r = 0`` to exactly 0 at ``r = 1``:

=============  =====================  ==========================================
``cosine``     ``cos(pi/2 * r)``       MaskGIT's default (decides few tokens first)
``linear``     ``1 - r``               alias ``uniform``
``square``     ``1 - r**2``            alias ``pow2``
``cubic``      ``1 - r**3``            alias ``pow3``
``sqrt``       ``1 - sqrt(r)``         alias ``pow0.5`` (decides many tokens first)
``pow<p>``     ``1 - r**p``            any ``p > 0``
callable       ``schedule(r)``         must be monotone with ``f(0) = 1`` and ``f(1) = 0``
=============  =====================  ==========================================

(MaskGIT's ``log``/``exp`` schedules depend on the token count and are not provided.)

:func:`num_masked_at_step` turns a schedule into counts: after step ``s`` (0-based) of ``T`` steps,
``floor(n * ratio((s + 1) / T))`` of the ``n`` initially unknown tokens are still masked -- so the
count reaches 0 after the last step. :func:`sample_mask` is the training-side counterpart.

MaskGIT decoding
----------------
:func:`maskgit_decode` runs exactly ``num_steps`` steps. Each step samples every masked position
from ``logits_fn(tokens)`` (temperature / top-k / top-p as in :func:`sample_logits`), scores each
sample by its log-probability under the distribution it was drawn from plus Gumbel noise annealed
as ``choice_temperature * (1 - (step + 1) / num_steps)``, and re-masks the lowest-scoring ones:
``num_masked_at_step`` of them, clamped to ``[1, remaining - 1]`` so every step decides at least one
token and leaves at least one for later (when ``remaining <= 1`` nothing is decided until the last
step), except at the last step, which fills everything. Given tokens (not ``mask_id`` in
``init_tokens``) get confidence ``+inf``: they are never re-masked and keep their values. The
schedule runs over each example's own count of unknown tokens, so a batch can mix unconditional
generation with continuation (given context frames) or inpainting.

Classifier-free guidance
------------------------
:func:`cfg_logits` computes ``uncond + scale * (cond - uncond)``: ``scale = 1`` is the conditional
model, ``0`` the unconditional one, ``> 1`` extrapolates away from unconditional. MAGVIT / Muse
write ``(1 + s) * cond - s * uncond``, which is this with ``scale = 1 + s`` (their ``s = 0`` is our
``scale = 1``). :func:`guided` / :func:`guided_step` wrap a model run on a doubled batch
``[cond; uncond]`` (one forward pass, twice the batch) into a guided ``logits_fn`` / ``step_fn``
for the original batch.

Sampling from logits
--------------------
:func:`sample_logits` applies temperature, then top-k, then top-p (nucleus) filtering, all with
static shapes: filtered logits are set to ``-inf`` in place (never gathered into a smaller array),
and the draw is Gumbel-max over the full vocabulary in its original order, so the same rng gives the
same token whichever filtering code path ran (e.g. ``top_k=None`` and ``top_k=V`` agree, as do a
static and a traced ``top_k``). ``temperature``, ``top_k`` and ``top_p`` may each be a Python number
(static: the cheapest code path is chosen at trace time; ``temperature=0`` compiles greedy arg-max
only, a static ``top_k`` uses ``lax.top_k`` instead of a full sort) or a traced scalar (one
compiled function serves every value: ``temperature <= 0`` selects greedy via ``jnp.where``,
``top_k`` is clipped to ``[1, V]``). ``None`` disables a filter. Ties with the cut-off logit are
kept (so top-k may keep more than k tokens when logits tie exactly), as in most implementations.

Factorised vocabularies (``factorised=True``): a bit-group head predicts a code of K bits as G
independent groups of g bits, so the model's distribution over the 2^K codes is a product. Sampling
draws each group from its own ``[..., G, 2^g]`` row and the log-probability is the sum over groups:
exactly the joint sample, without the 2^K-wide array (2^18 codes would be 1 MiB of logits per token).
Temperature and guidance act per group exactly as on the joint; top-k / top-p filter each group
(as Open-MAGVIT2's sub-token sampling does), not the joint.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "MaskGITState",
    "ar_decode",
    "cfg_logits",
    "guided",
    "guided_step",
    "mask_ratio",
    "maskgit_decode",
    "maskgit_decode_frames",
    "maskgit_decode_frames_cached",
    "num_masked_at_step",
    "sample_logits",
    "sample_mask",
]

Schedule = str | Callable[[jax.Array], jax.Array]
LogitsFn = Callable[[jax.Array], jax.Array]
StepFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]]

_ALIASES = {"uniform": "linear", "pow1": "linear", "pow2": "square", "pow3": "cubic", "pow0.5": "sqrt"}
SCHEDULES = ("cosine", "linear", "square", "cubic", "sqrt")


# ----------------------------------------------------------------------------------------------
# Mask schedules
# ----------------------------------------------------------------------------------------------


def _schedule_fn(schedule: Schedule) -> Callable[[jax.Array], jax.Array]:
    if callable(schedule):
        return schedule
    name = _ALIASES.get(schedule, schedule)
    if name == "cosine":
        return lambda r: jnp.cos(0.5 * math.pi * r)
    if name == "linear":
        return lambda r: 1.0 - r
    if name == "square":
        return lambda r: 1.0 - r * r
    if name == "cubic":
        return lambda r: 1.0 - r * r * r
    if name == "sqrt":
        return lambda r: 1.0 - jnp.sqrt(r)
    if isinstance(name, str) and name.startswith("pow"):
        try:
            p = float(name[3:])
        except ValueError:
            p = -1.0
        if p > 0:
            return lambda r: 1.0 - r**p
    raise ValueError(
        f"unknown mask schedule {schedule!r}; expected one of {SCHEDULES}, "
        f"'uniform', 'pow<p>' with p > 0, or a callable r -> ratio."
    )


def mask_ratio(r, schedule: Schedule = "cosine") -> jax.Array:
    """Fraction of tokens still masked once a fraction ``r`` in ``[0, 1]`` of decoding is done.

    Pure and elementwise (``r`` may be a Python float, an array or a traced value; float32 result).
    Clipped to ``[0, 1]``, and exactly 0 for ``r >= 1`` (``cos(pi/2)`` is not exactly 0 in floats).
    """
    r = jnp.clip(jnp.asarray(r, jnp.float32), 0.0, 1.0)
    ratio = jnp.clip(_schedule_fn(schedule)(r), 0.0, 1.0).astype(jnp.float32)
    return jnp.where(r >= 1.0, 0.0, ratio)


# Guards exact-integer products (12 * (1 - 1/3) = 7.9999995 in float32) against flooring one short.
_COUNT_EPS = 1e-4


def num_masked_at_step(step, total_steps: int, num_tokens, schedule: Schedule = "cosine") -> jax.Array:
    """Tokens still masked after decoding step ``step`` (0-based) of ``total_steps``.

    ``floor(num_tokens * mask_ratio((step + 1) / total_steps))``, clipped to ``[0, num_tokens]``:
    non-increasing in ``step``, 0 after the last step (``step = total_steps - 1``), and
    ``num_tokens`` for ``step = -1`` (before decoding). ``step`` and ``num_tokens`` broadcast (e.g.
    per-example unknown counts [B]) and may be traced; int32 result. These are the schedule's raw
    counts; :func:`maskgit_decode` additionally clamps them to ``[1, remaining - 1]``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
    n = jnp.asarray(num_tokens, jnp.int32)
    r = (jnp.asarray(step, jnp.float32) + 1.0) / float(total_steps)
    count = jnp.floor(n.astype(jnp.float32) * mask_ratio(r, schedule) + _COUNT_EPS).astype(jnp.int32)
    return jnp.clip(count, 0, n)


def sample_mask(rng: jax.Array, shape: tuple[int, ...], schedule: Schedule = "cosine") -> jax.Array:
    """Training-time MaskGIT mask: bool ``shape`` = ``(B, *token_dims)``, True = masked (predict it).

    Per example, ``r ~ U[0, 1)`` and ``ceil(mask_ratio(r) * N)`` (at least 1, at most ``N``) of its
    ``N = prod(token_dims)`` positions are masked, chosen uniformly at random. With the cosine
    schedule the expected masked fraction is ``2/pi ~ 0.637`` (plus < 1/N from the ceiling).
    """
    batch, n = shape[0], math.prod(shape[1:])
    if n < 1:
        raise ValueError(f"sample_mask needs at least one token per example, got shape {shape}.")
    k_ratio, k_pos = jax.random.split(rng)
    ratio = mask_ratio(jax.random.uniform(k_ratio, (batch,)), schedule)
    count = jnp.clip(jnp.ceil(ratio * n).astype(jnp.int32), 1, n)
    return (_ranks(jax.random.uniform(k_pos, (batch, n))) < count[:, None]).reshape(shape)


def _ranks(x: jax.Array) -> jax.Array:
    """Position of each entry of ``x`` in its row sorted ascending (a permutation; stable ties)."""
    order = jnp.argsort(x, axis=-1, stable=True)
    return jnp.argsort(order, axis=-1, stable=True).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# Sampling from logits
# ----------------------------------------------------------------------------------------------


def _is_static(x) -> bool:
    return x is None or isinstance(x, (int, float, np.integer, np.floating))


def _filter_logits(logits: jax.Array, top_k, top_p) -> jax.Array:
    """Top-k then top-p filtering (``-inf`` outside), static shapes, on the last axis."""
    if top_k is None and top_p is None:
        return logits
    if _is_static(top_p) and top_p is not None and top_p >= 1.0:
        top_p = None
    vocab = logits.shape[-1]
    if _is_static(top_k) and top_k is not None and top_k >= vocab:
        top_k = None
    if top_k is None and top_p is None:
        return logits
    neg_inf = jnp.asarray(-jnp.inf, logits.dtype)
    if _is_static(top_k) and top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None), got {top_k}.")
        # Partial sort: only the k largest, already in descending order.
        head = jax.lax.top_k(logits, int(top_k))[0]
        cutoff = head[..., -1:]
    else:
        head = -jnp.sort(-logits, axis=-1)  # the one full sort, descending
        cutoff = jnp.full(logits.shape[:-1] + (1,), neg_inf)
        if top_k is not None:
            k = jnp.clip(jnp.asarray(top_k, jnp.int32), 1, vocab)
            cutoff = jnp.take_along_axis(head, jnp.broadcast_to(k - 1, cutoff.shape), axis=-1)
            head = jnp.where(jnp.arange(vocab) < k, head, neg_inf)
    if top_p is not None:
        probs = jax.nn.softmax(head, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        # A prefix of the sorted tokens: those whose preceding mass is below top_p (always the first).
        keep = (mass_before < top_p) | (jnp.arange(head.shape[-1]) == 0)
        n_keep = jnp.sum(keep, axis=-1, keepdims=True)
        cutoff = jnp.maximum(cutoff, jnp.take_along_axis(head, n_keep - 1, axis=-1))
    return jnp.where(logits < cutoff, neg_inf, logits)


def _check_factorised(logits: jax.Array) -> int:
    """Vocabulary size ``n^G`` of factorised logits ``[..., G, n]`` (token id = sum_j digit_j n^j)."""
    if logits.ndim < 2:
        raise ValueError(f"factorised logits must be [..., G, n], got shape {logits.shape}.")
    groups, n = logits.shape[-2:]
    if n**groups > 2**31 - 1:
        raise ValueError(f"factorised logits {logits.shape}: n^G = {n}^{groups} token ids do not fit int32.")
    return n**groups


def _sample_with_logprob(rng, logits, temperature, top_k, top_p, factorised: bool = False):
    """Tokens [...] int32 and their log-probability under the distribution they were drawn from.

    ``factorised``: ``logits`` are ``[..., G, n]``, one independent distribution per digit of the token id
    ``sum_j digit_j n^j`` (a bit-group head); every digit is drawn with the same temperature / top-k /
    top-p and the log-probabilities add up, so no ``n^G``-sized array is ever built."""
    if factorised:
        _check_factorised(logits)
        digits, logprob = _sample_with_logprob(rng, logits, temperature, top_k, top_p)  # [..., G]
        place = logits.shape[-1] ** jnp.arange(logits.shape[-2], dtype=jnp.int32)
        return jnp.sum(digits * place, axis=-1, dtype=jnp.int32), jnp.sum(logprob, axis=-1)
    logits = logits.astype(jnp.float32)

    def greedy():
        tok = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return tok, _gather_last(jax.nn.log_softmax(logits, axis=-1), tok)

    def sampled(temp):
        filtered = _filter_logits(logits / temp, top_k, top_p)
        tok = jax.random.categorical(rng, filtered, axis=-1).astype(jnp.int32)
        return tok, _gather_last(jax.nn.log_softmax(filtered, axis=-1), tok)

    if _is_static(temperature):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}.")
        return greedy() if temperature == 0 else sampled(float(temperature))
    temperature = jnp.asarray(temperature, jnp.float32)
    hot = temperature > 0
    tok_s, lp_s = sampled(jnp.where(hot, temperature, 1.0))
    tok_g, lp_g = greedy()
    return jnp.where(hot, tok_s, tok_g), jnp.where(hot, lp_s, lp_g)


def _gather_last(x, idx):
    return jnp.take_along_axis(x, idx[..., None], axis=-1)[..., 0]


def sample_logits(
    rng: jax.Array, logits: jax.Array, temperature=1.0, top_k=None, top_p=None, *, factorised: bool = False
) -> jax.Array:
    """Sample token ids [...] int32 from ``logits`` [..., V] (usually [B, V]).

    ``factorised=True``: ``logits`` are ``[..., G, n]`` (a bit-group head: ``V = n^G`` ids, digit ``j``
    of the id drawn from row ``j``; temperature, top-k and top-p then apply to each digit).

    ``temperature = 0`` is greedy arg-max (the rng is then unused); otherwise logits are divided by
    the temperature, filtered to the ``top_k`` largest, then to the smallest prefix (by probability,
    renormalised after top-k) whose mass reaches ``top_p``, and sampled. Each option may be static
    or traced (see the module docstring); ``None`` disables a filter. A fixed rng reproduces the
    sample.
    """
    return _sample_with_logprob(rng, logits, temperature, top_k, top_p, factorised)[0]


# ----------------------------------------------------------------------------------------------
# Classifier-free guidance
# ----------------------------------------------------------------------------------------------


def cfg_logits(cond: jax.Array, uncond: jax.Array, scale) -> jax.Array:
    """``uncond + scale * (cond - uncond)``: 1 = conditional, 0 = unconditional (MAGVIT's s = scale - 1)."""
    return uncond + scale * (cond - uncond)


def _split_doubled(x: jax.Array, batch: int, what: str) -> tuple[jax.Array, jax.Array]:
    if x.shape[0] != 2 * batch:
        raise ValueError(
            f"guidance: {what} returned batch {x.shape[0]} for a doubled batch of {2 * batch}; "
            "it must return [cond; uncond] stacked along axis 0."
        )
    return x[:batch], x[batch:]


def guided(logits_fn_2b: LogitsFn, scale) -> LogitsFn:
    """Guided ``logits_fn`` for batch B from one ``logits_fn_2b`` pass on the doubled batch.

    ``logits_fn_2b(tokens [2B, ...])`` must treat the first B rows as conditional and the last B as
    unconditional (e.g. its text embeddings are ``[text; null_text]``); the returned function feeds
    it ``[tokens; tokens]`` and combines the halves with :func:`cfg_logits`. ``scale`` may be traced.
    """

    def logits_fn(tokens: jax.Array) -> jax.Array:
        batch = tokens.shape[0]
        cond, uncond = _split_doubled(
            logits_fn_2b(jnp.concatenate([tokens, tokens], axis=0)), batch, "logits_fn"
        )
        return cfg_logits(cond, uncond, scale)

    return logits_fn


def guided_step(step_fn_2b: StepFn, scale) -> StepFn:
    """Guided autoregressive ``step_fn`` for batch B; the state (cache) stays that of the doubled batch.

    ``step_fn_2b(state, token [2B], index) -> (logits [2B, V], state)`` with rows ``[cond; uncond]``;
    the sampled token is fed to both halves, so both continue the same sequence.
    """

    def step_fn(state, token: jax.Array, index: jax.Array):
        batch = token.shape[0]
        logits, state = step_fn_2b(state, jnp.concatenate([token, token], axis=0), index)
        cond, uncond = _split_doubled(logits, batch, "step_fn")
        return cfg_logits(cond, uncond, scale), state

    return step_fn


# ----------------------------------------------------------------------------------------------
# MaskGIT parallel decoding
# ----------------------------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MaskGITState:
    """Loop state of :func:`maskgit_decode` (also its result).

    step: int32 scalar, steps done (``num_steps`` at the end).
    tokens: [B, N] int32, ``mask_id`` where still undecided (none at the end).
    rng: the key for the next step.
    num_masked: [B, num_steps] int32, tokens left masked after each step (0 in the last column);
      a record of the schedule actually followed.

    Final logits are deliberately not kept: [B, N, V] would double the decoder's peak memory.
    """

    step: jax.Array
    tokens: jax.Array
    rng: jax.Array
    num_masked: jax.Array


def maskgit_decode(
    logits_fn: LogitsFn,
    init_tokens: jax.Array,
    *,
    rng: jax.Array,
    mask_id: int,
    num_steps: int = 12,
    schedule: Schedule = "cosine",
    temperature=1.0,
    choice_temperature=4.5,
    top_k=None,
    top_p=None,
    factorised: bool = False,
) -> MaskGITState:
    """MaskGIT iterative parallel decoding as one ``lax.while_loop``; returns the final state.

    Args:
      logits_fn: ``tokens [B, N] int32 -> logits [B, N, V]`` (wrap with :func:`guided` for CFG).
      init_tokens: [B, N] int32; ``mask_id`` marks unknown positions, anything else is given and kept.
        Examples may have different numbers of unknown tokens (each follows the schedule over its own).
      rng: PRNG key (sampling and choice noise).
      mask_id: Python int. If it lies in ``[0, V)`` its logit is set to ``-inf`` so it is never sampled.
      num_steps: static number of steps; after exactly this many, no ``mask_id`` remains.
      schedule: see :func:`mask_ratio`.
      temperature, top_k, top_p: token sampling, as in :func:`sample_logits` (0 = greedy).
      factorised: ``logits_fn`` returns ``[B, N, G, n]`` per-digit logits (see :func:`sample_logits`);
        confidences are the summed digit log-probabilities, i.e. the joint log-probability.
      choice_temperature: scale of the Gumbel noise added to the confidences, annealed linearly
        to 0 over the steps as ``choice_temperature * (1 - (step + 1) / num_steps)``.

    Returns:
      :class:`MaskGITState` with ``tokens`` [B, N] (fully decoded), ``step == num_steps`` and the
      per-step ``num_masked`` history.
    """
    if init_tokens.ndim != 2:
        raise ValueError(f"init_tokens must be [B, N], got shape {init_tokens.shape}.")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
    mask_id = int(mask_id)
    init_tokens = init_tokens.astype(jnp.int32)
    batch = init_tokens.shape[0]
    num_unknown = jnp.sum(init_tokens == mask_id, axis=-1, dtype=jnp.int32)  # [B]

    def body(state: MaskGITState) -> MaskGITState:
        rng, k_sample, k_choice = jax.random.split(state.rng, 3)
        unknown = state.tokens == mask_id
        logits = logits_fn(state.tokens).astype(jnp.float32)
        if logits.shape[:2] != state.tokens.shape or logits.ndim != (4 if factorised else 3):
            raise ValueError(
                f"logits_fn returned {logits.shape} for tokens {state.tokens.shape}; "
                f"expected {'[B, N, G, n]' if factorised else '[B, N, V]'}."
            )
        if factorised:
            if 0 <= mask_id < _check_factorised(logits):
                raise ValueError(
                    f"mask_id {mask_id} is a token id of the factorised vocabulary "
                    f"{logits.shape[-1]}^{logits.shape[-2]}: use an id outside it."
                )
        elif 0 <= mask_id < logits.shape[-1]:
            logits = logits.at[..., mask_id].set(-jnp.inf)
        sampled, logprob = _sample_with_logprob(k_sample, logits, temperature, top_k, top_p, factorised)
        sampled = jnp.where(unknown, sampled, state.tokens)

        step = state.step
        noise_scale = choice_temperature * (1.0 - (step + 1).astype(jnp.float32) / num_steps)
        confidence = logprob + noise_scale * jax.random.gumbel(k_choice, logprob.shape, jnp.float32)
        confidence = jnp.where(unknown, confidence, jnp.inf)

        remaining = jnp.sum(unknown, axis=-1, dtype=jnp.int32)
        planned = num_masked_at_step(step, num_steps, num_unknown, schedule)
        # Decide >= 1 and keep >= 1 masked; with <= 1 remaining keep it (0 stays 0); the last step fills all.
        mask_len = jnp.maximum(jnp.minimum(planned, remaining - 1), jnp.minimum(1, remaining))
        mask_len = jnp.where(step == num_steps - 1, 0, mask_len)
        # Exactly mask_len lowest-confidence positions; given/decided ones (+inf) rank last.
        remask = _ranks(confidence) < mask_len[:, None]
        tokens = jnp.where(remask, mask_id, sampled)
        return MaskGITState(
            step=step + 1, tokens=tokens, rng=rng, num_masked=state.num_masked.at[:, step].set(mask_len)
        )

    init = MaskGITState(
        step=jnp.zeros((), jnp.int32),
        tokens=init_tokens,
        rng=rng,
        num_masked=jnp.zeros((batch, num_steps), jnp.int32),
    )
    return jax.lax.while_loop(lambda s: s.step < num_steps, body, init)


def maskgit_decode_frames(
    logits_fn: LogitsFn,
    init_tokens: jax.Array,
    *,
    tokens_per_frame: int,
    rng: jax.Array,
    mask_id: int,
    num_steps: int = 12,
    **decode_kwargs,
) -> MaskGITState:
    """Frame-causal MaskGIT: latent frame after latent frame, each in ``num_steps`` parallel steps.

    For a model trained with attention that is causal across frames and bidirectional within one
    (``objective='maskgit_frames'``): frame ``f``'s tokens are decoded with :func:`maskgit_decode` while
    frames ``< f`` hold their final tokens and frames ``> f`` are still ``mask_id`` (which the model's
    block-causal mask keeps out of frame ``f``'s view). So each frame is drawn knowing every earlier
    frame in full, as next-token sampling does, with ``F * num_steps`` model calls instead of ``N``.
    Every call runs the whole sequence; :func:`maskgit_decode_frames_cached` runs one frame per call
    against a KV cache of the frames before it.

    Args:
      logits_fn: ``tokens [B, N] -> logits [B, N, ...]`` over the whole sequence (wrap with
        :func:`guided` for CFG); only frame ``f``'s slice is read while frame ``f`` is decoded.
      init_tokens: [B, N] int32, ``N = F * tokens_per_frame``, frames in order; ``mask_id`` marks
        unknown positions, anything else is given and kept. A frame with nothing unknown in any
        example (a continuation's context) costs no model call.
      tokens_per_frame: ``h * w`` of the latent grid (static).
      rng, mask_id, num_steps, decode_kwargs: as :func:`maskgit_decode` (per frame).

    Returns:
      :class:`MaskGITState` with ``tokens`` [B, N] fully decoded, ``step = F * num_steps`` and
      ``num_masked`` [B, F * num_steps] (frame ``f``'s schedule in columns ``f * num_steps ...``).
    """
    p = _check_frames(init_tokens, tokens_per_frame)

    def frame_logits(tokens, frame, f):  # the state is the token array itself: frames < f final
        full = jax.lax.dynamic_update_slice_in_dim(tokens, frame, f * p, axis=1)
        return jax.lax.dynamic_slice_in_dim(logits_fn(full), f * p, p, axis=1)

    def commit(tokens, frame, f):
        return jax.lax.dynamic_update_slice_in_dim(tokens, frame, f * p, axis=1)

    state, _ = _decode_frames(
        frame_logits,
        commit,
        init_tokens.astype(jnp.int32),
        init_tokens,
        p,
        rng=rng,
        mask_id=mask_id,
        num_steps=num_steps,
        decode_kwargs=decode_kwargs,
    )
    return state


def maskgit_decode_frames_cached(
    frame_step_fn: StepFn,
    init_state: Any,
    init_tokens: jax.Array,
    *,
    tokens_per_frame: int,
    rng: jax.Array,
    mask_id: int,
    num_steps: int = 12,
    **decode_kwargs,
) -> tuple[MaskGITState, Any]:
    """:func:`maskgit_decode_frames` with a cached model: each call runs one frame, not the sequence.

    ``frame_step_fn(state, frame [B, P], f) -> (logits [B, P, ...], state)`` runs frame ``f``'s tokens
    (``mask_id`` where undecided) against ``state`` -- a KV cache holding the prefix (text) and frames
    ``< f`` -- and returns that frame's logits and the state with frame ``f`` written into it. While
    frame ``f`` is decoded the returned state is dropped (its MaskGIT steps all see the same cache);
    once decoded (or when given in full), the frame is committed with one more call whose state is kept.
    So a clip costs ``F * num_steps`` calls of ``P`` tokens plus ``F - 1`` commits, where the uncached
    loop runs ``F * num_steps`` calls of the whole sequence. Wrap with :func:`guided_step` for CFG.

    Returns ``(MaskGITState, final state)``; the tokens, rng use and schedule are exactly those of
    :func:`maskgit_decode_frames` for the same logits (tested).
    """
    p = _check_frames(init_tokens, tokens_per_frame)
    num_frames = init_tokens.shape[1] // p

    def frame_logits(state, frame, f):
        return frame_step_fn(state, frame, f)[0]

    def commit(state, frame, f):  # the last frame's keys and values are never needed
        return jax.lax.cond(f < num_frames - 1, lambda s: frame_step_fn(s, frame, f)[1], lambda s: s, state)

    return _decode_frames(
        frame_logits,
        commit,
        init_state,
        init_tokens,
        p,
        rng=rng,
        mask_id=mask_id,
        num_steps=num_steps,
        decode_kwargs=decode_kwargs,
    )


def _check_frames(init_tokens: jax.Array, tokens_per_frame: int) -> int:
    if init_tokens.ndim != 2 or init_tokens.shape[1] % tokens_per_frame:
        raise ValueError(
            f"init_tokens must be [B, F * tokens_per_frame] with tokens_per_frame={tokens_per_frame}, "
            f"got shape {init_tokens.shape}."
        )
    return int(tokens_per_frame)


def _decode_frames(
    frame_logits, commit, init_state, init_tokens, p: int, *, rng, mask_id, num_steps, decode_kwargs
) -> tuple[MaskGITState, Any]:
    """The frame loop of both frame-causal decoders: ``frame_logits(state, frame, f)`` gives frame
    ``f``'s logits with frames ``< f`` committed to ``state``; ``commit(state, frame, f)`` adds one."""
    batch, n = init_tokens.shape
    num_frames = n // p
    init_tokens = init_tokens.astype(jnp.int32)

    def frame_body(f, carry):
        tokens, state, key, history = carry
        key, k_frame = jax.random.split(key)
        start = f * p
        frame = jax.lax.dynamic_slice_in_dim(tokens, start, p, axis=1)  # [B, P]

        def decode(frame):
            out = maskgit_decode(
                lambda fr: frame_logits(state, fr, f),
                frame,
                rng=k_frame,
                mask_id=mask_id,
                num_steps=num_steps,
                **decode_kwargs,
            )
            return out.tokens, out.num_masked

        def keep(frame):
            return frame, jnp.zeros((batch, num_steps), jnp.int32)

        frame, masked = jax.lax.cond(jnp.any(frame == mask_id), decode, keep, frame)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, frame, start, axis=1)
        state = commit(state, frame, f)
        history = jax.lax.dynamic_update_slice_in_dim(history, masked, f * num_steps, axis=1)
        return tokens, state, key, history

    history = jnp.zeros((batch, num_frames * num_steps), jnp.int32)
    tokens, state, key, history = jax.lax.fori_loop(
        0, num_frames, frame_body, (init_tokens, init_state, rng, history)
    )
    return MaskGITState(
        step=jnp.asarray(num_frames * num_steps, jnp.int32), tokens=tokens, rng=key, num_masked=history
    ), state


# ----------------------------------------------------------------------------------------------
# Autoregressive decoding
# ----------------------------------------------------------------------------------------------


def ar_decode(
    step_fn: StepFn,
    init_state: Any,
    *,
    first_token: jax.Array,
    rng: jax.Array,
    num_tokens: int,
    temperature=1.0,
    top_k=None,
    top_p=None,
    forced_tokens: jax.Array | None = None,
    start_index=0,
    factorised: bool = False,
) -> tuple[jax.Array, Any]:
    """Sample ``num_tokens`` tokens one at a time with a cached model step, as one ``lax.scan``.

    Step ``i`` calls ``step_fn(state, token, start_index + i)`` with the previous token (``first_token``
    [B] int32 at ``i = 0``, e.g. BOS or the last prompt token), and samples token ``i`` from the
    returned logits [B, V] (:func:`sample_logits` options). ``state`` is any pytree with a fixed
    structure and shapes (the KV cache); ``step_fn`` is traced once.

    ``forced_tokens`` [B, num_tokens] int32 (optional): where ``>= 0`` the token is taken from it
    instead of sampled (teacher forcing: per-example prompts or given context frames pushed through
    the cache); negative entries are sampled. ``start_index`` may be traced (e.g. after a prefill).
    ``factorised``: ``step_fn`` returns per-digit logits ``[B, G, n]`` (see :func:`sample_logits`).

    Returns ``(tokens [B, num_tokens] int32, final state)``.
    """
    first_token = jnp.asarray(first_token, jnp.int32)
    if first_token.ndim != 1:
        raise ValueError(f"first_token must be [B], got shape {first_token.shape}.")
    batch = first_token.shape[0]
    if forced_tokens is None:
        forced = jnp.full((num_tokens, batch), -1, jnp.int32)
    else:
        if forced_tokens.shape != (batch, num_tokens):
            raise ValueError(
                f"forced_tokens must be [B, num_tokens] = {(batch, num_tokens)}, got {forced_tokens.shape}."
            )
        forced = jnp.asarray(forced_tokens, jnp.int32).T
    keys = jax.random.split(rng, num_tokens)
    start = jnp.asarray(start_index, jnp.int32)

    def body(carry, xs):
        state, token = carry
        i, key, forced_i = xs
        logits, state = step_fn(state, token, start + i)
        if logits.shape[0] != batch or logits.ndim != (3 if factorised else 2):
            raise ValueError(
                f"step_fn returned logits {logits.shape}; expected "
                f"{'[B, G, n]' if factorised else '[B, V]'} with B = {batch}."
            )
        token = sample_logits(key, logits, temperature, top_k, top_p, factorised=factorised)
        token = jnp.where(forced_i >= 0, forced_i, token)
        return (state, token), token

    (state, _), tokens = jax.lax.scan(
        body, (init_state, first_token), (jnp.arange(num_tokens, dtype=jnp.int32), keys, forced)
    )
    return tokens.T, state
