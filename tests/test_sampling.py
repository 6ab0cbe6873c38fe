"""Tests for videogen.lm.sampling: mask schedules, MaskGIT decoding, classifier-free guidance,
logit sampling (temperature / top-k / top-p) and autoregressive decoding with toy models.

Compilation dominates the runtime on CPU, so decoders are jitted at module level and shared between
tests with identical shapes, and most tests use the "rbg" PRNG (XLA's RngBitGenerator: compiles in
half the time of threefry, whose unrolled rounds are slow to compile). The algorithms only split
keys and draw from them, so they are key-type agnostic; a few tests use the default threefry keys.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.lm.sampling import (
    ar_decode,
    cfg_logits,
    guided,
    guided_step,
    mask_ratio,
    maskgit_decode,
    maskgit_decode_frames,
    maskgit_decode_frames_cached,
    num_masked_at_step,
    sample_logits,
    sample_mask,
)

SCHEDULES = ["cosine", "linear", "square", "cubic", "sqrt"]
V = 16  # toy vocabulary
MASK = V  # out-of-vocabulary mask id, as a transformer with V + 1 input embeddings would use
B, N = 6, 48  # shared MaskGIT test shape (one compilation serves several tests)


def key(seed):
    return jax.random.key(seed, impl="rbg")


# Jitted: eager dispatch would compile each primitive separately for every new shape.
_num_masked = jax.jit(num_masked_at_step, static_argnums=(1, 3))


def _np_rng(seed):
    return np.random.default_rng(seed)


def _expected_history(num_unknown, num_steps, schedule):
    """Masks left after each step, re-derived from the raw schedule counts and the clamp rule."""
    planned = np.asarray(_num_masked(np.arange(num_steps), num_steps, num_unknown, schedule))
    remaining, out = num_unknown, []
    for step in range(num_steps):
        if step == num_steps - 1:
            left = 0
        elif remaining >= 2:
            left = min(max(int(planned[step]), 1), remaining - 1)
        else:
            left = remaining  # 0 stays 0; a single unknown waits for the last step
        out.append(left)
        remaining = left
    return np.asarray(out)


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_mask_ratio_endpoints_monotone_pure(schedule):
    r = np.linspace(0.0, 1.0, 201, dtype=np.float32)
    ratio = np.asarray(mask_ratio(r, schedule))
    assert ratio[0] == 1.0 and ratio[-1] == 0.0
    assert np.all(np.diff(ratio) <= 0), "must be non-increasing"
    assert np.all(np.diff(ratio)[1:-1] < 0), "strictly decreasing inside (0, 1)"
    np.testing.assert_array_equal(ratio, np.asarray(mask_ratio(r, schedule)))  # deterministic
    # Under jit XLA may fuse 1 - r*r into an FMA: equal up to float32 rounding.
    np.testing.assert_allclose(
        np.asarray(jax.jit(mask_ratio, static_argnums=1)(r, schedule)), ratio, atol=1e-6
    )


def test_mask_ratio_known_values():
    assert float(mask_ratio(0.5, "cosine")) == pytest.approx(math.cos(math.pi / 4), abs=1e-7)
    assert float(mask_ratio(0.5, "linear")) == pytest.approx(0.5)
    assert float(mask_ratio(0.5, "square")) == pytest.approx(0.75)
    assert float(mask_ratio(0.5, "cubic")) == pytest.approx(0.875)
    assert float(mask_ratio(0.25, "sqrt")) == pytest.approx(0.5)
    assert float(mask_ratio(0.3, "uniform")) == float(mask_ratio(0.3, "linear"))
    assert float(mask_ratio(0.3, "pow2")) == float(mask_ratio(0.3, "square"))
    assert float(mask_ratio(0.5, "pow4")) == pytest.approx(1 - 0.5**4)
    assert float(mask_ratio(0.5, lambda r: 1 - r)) == pytest.approx(0.5)
    # Out-of-range inputs are clipped.
    assert float(mask_ratio(-0.5)) == 1.0 and float(mask_ratio(1.5)) == 0.0
    with pytest.raises(ValueError, match="unknown mask schedule"):
        mask_ratio(0.5, "exp")
    with pytest.raises(ValueError, match="unknown mask schedule"):
        mask_ratio(0.5, "pow-1")


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_num_masked_non_increasing_to_zero(schedule):
    n = np.array([1, 2, 7, 100, 1024, 5120])
    for total in (1, 2, 8, 12, 24):
        counts = np.asarray(_num_masked(np.arange(-1, total)[:, None], total, n, schedule))  # [steps, n]
        np.testing.assert_array_equal(counts[0], n, "before any step, everything is masked")
        np.testing.assert_array_equal(counts[-1], 0, "after the last step, nothing is")
        assert np.all(np.diff(counts, axis=0) <= 0)
        assert np.all((counts >= 0) & (counts <= n))
    # Broadcasting over per-example counts.
    per_example = np.asarray(_num_masked(3, 12, np.array([10, 100, 0]), schedule))
    np.testing.assert_array_equal(per_example, num_masked_at_step(3, 12, np.array([10, 100, 0]), schedule))
    assert per_example.shape == (3,) and per_example[2] == 0


def test_num_masked_exact_values():
    # Exact integer products are not floored one short by float32 rounding (12 * (1 - 1/3) = 8).
    np.testing.assert_array_equal(num_masked_at_step(np.arange(3), 3, 12, "linear"), [8, 4, 0])
    np.testing.assert_array_equal(num_masked_at_step(np.arange(4), 4, 100, "linear"), [75, 50, 25, 0])
    # cosine: floor(100 * cos(pi/2 * k/4)) = 92, 70, 38, 0
    np.testing.assert_array_equal(num_masked_at_step(np.arange(4), 4, 100, "cosine"), [92, 70, 38, 0])


@pytest.mark.parametrize("schedule,expected", [("cosine", 2 / math.pi), ("linear", 0.5), ("square", 2 / 3)])
def test_sample_mask_fraction(schedule, expected):
    shape = (1024, 4, 16)  # N = 64 tokens per example
    mask = np.asarray(sample_mask(key(0), shape, schedule))
    assert mask.shape == shape and mask.dtype == np.bool_
    per_example = mask.reshape(shape[0], -1).sum(-1)
    assert per_example.min() >= 1 and per_example.max() <= 64
    # E[ceil(ratio * N)] / N lies within [E ratio, E ratio + 1/N].
    assert expected - 0.03 < per_example.mean() / 64 < expected + 1 / 64 + 0.03
    # Positions are spread uniformly: every position is masked in a similar share of examples.
    per_position = mask.reshape(shape[0], -1).mean(0)
    assert np.all(np.abs(per_position - per_position.mean()) < 0.12)
    np.testing.assert_array_equal(mask, np.asarray(sample_mask(key(0), shape, schedule)))
    assert not np.array_equal(mask, np.asarray(sample_mask(key(1), shape, schedule)))


def test_sample_mask_single_token_always_masked():
    mask = np.asarray(sample_mask(key(3), (64, 1)))
    assert mask.all()


# ----------------------------------------------------------------------------------------------
# MaskGIT decoding
# ----------------------------------------------------------------------------------------------


def _table_logits_fn(table):
    """A 'model' that ignores its input: fixed logits per position, [N, V] -> [B, N, V]."""
    table = jnp.asarray(table, jnp.float32)
    return lambda tokens: jnp.broadcast_to(table, tokens.shape + table.shape[-1:])


@functools.partial(jax.jit, static_argnames=("num_steps", "schedule", "mask_id"))
def _decode_table(table, init_tokens, rng, temperature=1.0, num_steps=8, schedule="cosine", mask_id=MASK):
    return maskgit_decode(
        _table_logits_fn(table),
        init_tokens,
        rng=rng,
        num_steps=num_steps,
        mask_id=mask_id,
        schedule=schedule,
        temperature=temperature,
    )


@pytest.mark.parametrize("schedule,num_steps,impl", [("cosine", 8, "rbg"), ("sqrt", 5, "threefry2x32")])
def test_maskgit_fills_everything_in_num_steps_following_schedule(schedule, num_steps, impl):
    b, n = B, N
    table = _np_rng(0).normal(size=(n, V))
    init = jnp.full((b, n), MASK, jnp.int32)
    rng = jax.random.key(1, impl=impl)
    state = _decode_table(table, init, rng, 1.0, num_steps=num_steps, schedule=schedule)
    tokens = np.asarray(state.tokens)
    assert int(state.step) == num_steps
    assert not (tokens == MASK).any() and tokens.min() >= 0 and tokens.max() < V
    history = np.asarray(state.num_masked)
    assert history.shape == (b, num_steps)
    expected = _expected_history(n, num_steps, schedule)
    for row in history:
        np.testing.assert_array_equal(row, expected)
    assert np.all(np.diff(expected) < 0), "every step decides at least one token when N >= num_steps"
    # Samples differ across the batch (same logits, different noise) but a seed reproduces them.
    assert len({tuple(r) for r in tokens}) > 1
    again = _decode_table(table, init, rng, 1.0, num_steps=num_steps, schedule=schedule)
    np.testing.assert_array_equal(tokens, np.asarray(again.tokens))


def test_maskgit_history_matches_what_the_model_sees():
    """Independent of the recorded history: count the masks in every input the model receives."""
    seen = []
    b, n, num_steps = 2, 24, 6
    table = jnp.asarray(_np_rng(1).normal(size=(n, V)), jnp.float32)

    def logits_fn(tokens):
        jax.debug.callback(
            lambda c: seen.append(np.asarray(c)), jnp.sum(tokens == MASK, axis=-1), ordered=True
        )
        return jnp.broadcast_to(table, tokens.shape + (V,))

    init = jnp.full((b, n), MASK, jnp.int32).at[1, :4].set(3)  # example 1: 4 given tokens
    state = jax.jit(lambda r: maskgit_decode(logits_fn, init, rng=r, num_steps=num_steps, mask_id=MASK))(
        key(0)
    )
    jax.effects_barrier()
    seen = np.stack(seen)  # [num_steps, B]: masks before each step
    assert seen.shape == (num_steps, b)
    np.testing.assert_array_equal(seen[0], [n, n - 4])
    history = np.asarray(state.num_masked)
    np.testing.assert_array_equal(seen[1:], history[:, :-1].T)
    assert not (np.asarray(state.tokens) == MASK).any()


def test_maskgit_keeps_given_tokens_with_per_example_unknowns():
    b, n, num_steps = B, N, 8
    rng = _np_rng(2)
    init = rng.integers(0, V, size=(b, n))
    given = rng.random((b, n)) < 0.5  # example 0: random given positions
    given[1] = False  # unconditional
    given[2] = True  # fully given: nothing to do
    given[3] = np.arange(n) < 32  # continuation: first frames given
    given[4] = np.arange(n) != 17  # a single unknown token
    given[5] = np.arange(n) >= 45  # few given
    init = np.where(given, init, MASK).astype(np.int32)
    table = rng.normal(size=(n, V))
    state = _decode_table(table, jnp.asarray(init), key(5), 1.0, num_steps=num_steps)
    tokens, history = np.asarray(state.tokens), np.asarray(state.num_masked)
    np.testing.assert_array_equal(tokens[given], init[given])
    assert not (tokens == MASK).any()
    for i in range(b):
        np.testing.assert_array_equal(
            history[i], _expected_history(int((~given[i]).sum()), num_steps, "cosine")
        )
    assert history[2].sum() == 0 and history[4].tolist() == [1] * (num_steps - 1) + [0]


def _next_frame_logits_fn(frames, per_frame, seen=None):
    """A toy frame-causal model: frame 0 is certain of token 0, frame f of (frame f-1's token at the same
    place) + 1 -- or of token V - 1 where frame f-1 is still masked there. ``seen`` records, per call,
    how many tokens of each frame the model is shown masked."""

    def logits_fn(tokens):
        grid = tokens.reshape(tokens.shape[0], frames, per_frame)
        if seen is not None:
            jax.debug.callback(
                lambda c: seen.append(np.asarray(c)), jnp.sum(grid == MASK, axis=-1), ordered=True
            )
        prev = jnp.concatenate([jnp.full_like(grid[:, :1], -1), grid[:, :-1]], axis=1)
        want = jnp.where(prev == MASK, V - 1, prev + 1).reshape(tokens.shape)
        return 30.0 * jax.nn.one_hot(want, V)

    return logits_fn


def test_maskgit_frames_decodes_frame_after_frame_in_num_steps_each():
    frames, per_frame, num_steps = 4, 12, 5
    seen = []
    init = jnp.full((2, frames * per_frame), MASK, jnp.int32)
    state = jax.jit(
        lambda r: maskgit_decode_frames(
            _next_frame_logits_fn(frames, per_frame, seen),
            init,
            tokens_per_frame=per_frame,
            rng=r,
            mask_id=MASK,
            num_steps=num_steps,
        )
    )(key(0))
    jax.effects_barrier()
    tokens = np.asarray(state.tokens).reshape(2, frames, per_frame)
    # Each frame was decided after the one before it was complete: frame f is all f.
    np.testing.assert_array_equal(tokens, np.broadcast_to(np.arange(frames)[None, :, None], tokens.shape))
    # frames * num_steps model calls; while frame f is decoded, every later frame is all masked, every
    # earlier one complete.
    seen = np.stack(seen)  # [calls, B, frames]
    assert seen.shape == (frames * num_steps, 2, frames) and int(state.step) == frames * num_steps
    for call, counts in enumerate(seen):
        f = call // num_steps
        assert (counts[:, :f] == 0).all() and (counts[:, f + 1 :] == per_frame).all(), (call, counts)
    # Each frame follows the schedule over its own tokens, as maskgit_decode does over a whole clip.
    history = np.asarray(state.num_masked).reshape(2, frames, num_steps)
    np.testing.assert_array_equal(
        history, np.broadcast_to(_expected_history(per_frame, num_steps, "cosine"), history.shape)
    )
    # All frames at once (plain MaskGIT) cannot do this: later frames are decided before earlier ones.
    flat = maskgit_decode(
        _next_frame_logits_fn(frames, per_frame), init, rng=key(0), mask_id=MASK, num_steps=num_steps
    )
    assert not (np.asarray(flat.tokens).reshape(tokens.shape) == tokens).all()


def test_maskgit_frames_keeps_given_frames_and_skips_them():
    frames, per_frame, num_steps = 3, 8, 4
    seen = []
    init = np.full((2, frames, per_frame), MASK, np.int32)
    init[:, 0] = 5  # a continuation's context frame, given in both examples
    init[1, 1, :3] = 9  # and a few given tokens of frame 1 in example 1
    state = jax.jit(
        lambda r: maskgit_decode_frames(
            _next_frame_logits_fn(frames, per_frame, seen),
            jnp.asarray(init.reshape(2, -1)),
            tokens_per_frame=per_frame,
            rng=r,
            mask_id=MASK,
            num_steps=num_steps,
        )
    )(key(1))
    jax.effects_barrier()
    tokens = np.asarray(state.tokens).reshape(init.shape)
    np.testing.assert_array_equal(tokens[:, 0], init[:, 0])
    np.testing.assert_array_equal(tokens[1, 1, :3], 9)
    np.testing.assert_array_equal(tokens[0, 1], 6)
    np.testing.assert_array_equal(tokens[1, 1, 3:], 6)
    np.testing.assert_array_equal(tokens[:, 2], np.where(tokens[:, 1] == 9, 10, 7))
    assert len(seen) == (frames - 1) * num_steps  # the given frame costs no model call
    history = np.asarray(state.num_masked).reshape(2, frames, num_steps)
    assert (history[:, 0] == 0).all()
    np.testing.assert_array_equal(history[1, 1], _expected_history(per_frame - 3, num_steps, "cosine"))
    with pytest.raises(ValueError, match="tokens_per_frame=5"):
        maskgit_decode_frames(
            _next_frame_logits_fn(frames, per_frame),
            jnp.asarray(init.reshape(2, -1)),
            tokens_per_frame=5,
            rng=key(0),
            mask_id=MASK,
        )


def test_maskgit_frames_cached_matches_uncached_and_commits_each_frame_once():
    """The KV-cached frame loop: same tokens and schedule as the whole-sequence loop for the same logits;
    each frame's MaskGIT steps run on that frame alone against committed earlier frames; every frame but
    the last is committed exactly once (given ones included, at no decoding call)."""
    frames, per_frame, num_steps = 4, 8, 3
    init = np.full((2, frames, per_frame), MASK, np.int32)
    init[:, 1] = 5  # a given frame in the middle
    init[1, 2, :2] = 9  # and two given tokens of frame 2 in example 1
    calls = []

    def frame_step_fn(state, frame, f):  # state [B, F, P]: the committed frames (the toy's "KV cache")
        jax.debug.callback(
            lambda f_, m: calls.append((int(f_), np.asarray(m))),
            f,
            jnp.sum(frame == MASK, axis=-1),
            ordered=True,
        )
        prev = jnp.where(f > 0, state[:, jnp.maximum(f - 1, 0)], -1)
        want = jnp.where(prev == MASK, V - 1, prev + 1)
        return 30.0 * jax.nn.one_hot(want, V), state.at[:, f].set(frame)

    flat = jnp.asarray(init.reshape(2, -1))
    state0 = jnp.full((2, frames, per_frame), MASK, jnp.int32)
    cached, final = jax.jit(
        lambda r: maskgit_decode_frames_cached(
            frame_step_fn, state0, flat, tokens_per_frame=per_frame, rng=r, mask_id=MASK, num_steps=num_steps
        )
    )(key(2))
    jax.effects_barrier()
    ref = maskgit_decode_frames(
        _next_frame_logits_fn(frames, per_frame),
        flat,
        tokens_per_frame=per_frame,
        rng=key(2),
        mask_id=MASK,
        num_steps=num_steps,
    )
    np.testing.assert_array_equal(cached.tokens, ref.tokens)
    np.testing.assert_array_equal(cached.num_masked, ref.num_masked)
    tokens = np.asarray(cached.tokens).reshape(init.shape)
    np.testing.assert_array_equal(tokens[:, 1], 5)
    np.testing.assert_array_equal(tokens[:, 3], np.where(tokens[:, 2] == 9, 10, 7))
    final = np.asarray(final)
    np.testing.assert_array_equal(final[:, :-1], tokens[:, :-1])
    assert (final[:, -1] == MASK).all()  # the last frame is never committed
    decode_calls = [f for f, m in calls if m.any()]
    commits = [f for f, m in calls if not m.any()]
    assert decode_calls == [0] * num_steps + [2] * num_steps + [3] * num_steps  # frame 1 given: no steps
    assert commits == [0, 1, 2]


def test_maskgit_near_deterministic_logits_recover_target():
    b, n = B, N
    target = _np_rng(3).integers(0, V, size=n)
    peaked = 40.0 * np.eye(V)[target]  # p(target) = 1 - 15 e^-40
    init = jnp.full((b, n), MASK, jnp.int32)
    state = _decode_table(peaked, init, key(7), 1.0)
    np.testing.assert_array_equal(np.asarray(state.tokens), np.broadcast_to(target, (b, n)))
    # Greedy decoding of arbitrary logits returns their per-position arg-max.
    table = _np_rng(4).normal(size=(n, V))
    greedy = _decode_table(table, init, key(7), 0.0)  # traced temperature: same compilation
    np.testing.assert_array_equal(np.asarray(greedy.tokens), np.broadcast_to(table.argmax(-1), (b, n)))


def test_maskgit_position_dependent_model():
    """A model that predicts 'token = position mod V' from its input (it reads the tokens)."""
    b, n = 2, 33

    def logits_fn(tokens):
        pos = jnp.broadcast_to(jnp.arange(tokens.shape[1]) % V, tokens.shape)
        # Depends on the input so the loop cannot be hoisted: known neighbours sharpen the prediction.
        sharp = 20.0 + jnp.sum(tokens != MASK, axis=-1, keepdims=True).astype(jnp.float32)
        return sharp[..., None] * jax.nn.one_hot(pos, V)

    state = maskgit_decode(
        logits_fn, jnp.full((b, n), MASK, jnp.int32), rng=key(0), num_steps=7, mask_id=MASK
    )
    np.testing.assert_array_equal(np.asarray(state.tokens), np.broadcast_to(np.arange(n) % V, (b, n)))
    assert int(state.step) == 7


def test_maskgit_in_vocab_mask_id_is_never_sampled():
    table = np.zeros((N, V))
    table[:, 0] = 100.0  # the model loves the mask token
    table[:, 5] = 3.0  # then 5: p = e^3 / (e^3 + 14) = 0.59 once 0 is excluded
    state = _decode_table(table, jnp.full((B, N), 0, jnp.int32), key(0), 1.0, mask_id=0)
    tokens = np.asarray(state.tokens)
    assert not (tokens == 0).any() and (tokens == 5).mean() > 0.4


# ----------------------------------------------------------------------------------------------
# Classifier-free guidance
# ----------------------------------------------------------------------------------------------


def test_cfg_logits_parametrisation():
    rng = _np_rng(5)
    cond, uncond = rng.normal(size=(2, 3, V)).astype(np.float32)
    np.testing.assert_array_equal(cfg_logits(cond, uncond, 0.0), uncond)
    np.testing.assert_allclose(cfg_logits(cond, uncond, 1.0), cond, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cfg_logits(cond, uncond, 3.0), 3 * cond - 2 * uncond, atol=1e-5)
    # MAGVIT/Muse's (1 + s) cond - s uncond is scale = 1 + s.
    s = 2.0
    np.testing.assert_allclose(cfg_logits(cond, uncond, 1 + s), (1 + s) * cond - s * uncond, atol=1e-5)


def _cond_uncond_tables(n, seed):
    rng = _np_rng(seed)
    return jnp.asarray(rng.normal(size=(n, V)), jnp.float32), jnp.asarray(
        rng.normal(size=(n, V)), jnp.float32
    )


def test_guided_wrapper_single_doubled_pass():
    b, n = 3, 10
    cond_t, uncond_t = _cond_uncond_tables(n, 6)
    calls = []

    def logits_fn_2b(tokens):
        calls.append(tokens.shape)
        half = tokens.shape[0] // 2
        np.testing.assert_array_equal(tokens[:half], tokens[half:])
        return jnp.concatenate(
            [jnp.broadcast_to(cond_t, (half, n, V)), jnp.broadcast_to(uncond_t, (half, n, V))]
        )

    tokens = jnp.zeros((b, n), jnp.int32)
    out = guided(logits_fn_2b, 2.5)(tokens)
    assert calls == [(2 * b, n)] and out.shape == (b, n, V)
    np.testing.assert_allclose(
        out, np.broadcast_to(uncond_t + 2.5 * (cond_t - uncond_t), (b, n, V)), atol=1e-5
    )
    with pytest.raises(ValueError, match="doubled batch"):
        guided(lambda t: jnp.zeros(t[:1].shape + (V,)), 1.0)(tokens)  # returns 1 row, not 2B


@jax.jit
def _guided_vs_plain(cond_t, uncond_t, init, rng, scale):
    """(unconditional, conditional, guided with `scale`) samples, same rng, one compilation."""

    def fn(table):  # reads its input, so the three runs really differ step by step
        return lambda tokens: jnp.broadcast_to(table, tokens.shape + (V,)) + 0.1 * (tokens != MASK)[..., None]

    def logits_fn_2b(tokens):
        half = tokens.shape[0] // 2
        return jnp.concatenate([fn(cond_t)(tokens[:half]), fn(uncond_t)(tokens[half:])])

    def run(logits_fn):
        return maskgit_decode(logits_fn, init, rng=rng, num_steps=6, mask_id=MASK).tokens

    return run(fn(uncond_t)), run(fn(cond_t)), run(guided(logits_fn_2b, scale))


def test_guidance_scale_0_reproduces_unconditional_sampling():
    b, n = 4, 30
    cond_t, uncond_t = _cond_uncond_tables(n, 7)
    init = jnp.full((b, n), MASK, jnp.int32)
    uncond, cond, guided_0 = map(np.asarray, _guided_vs_plain(cond_t, uncond_t, init, key(11), 0.0))
    np.testing.assert_array_equal(guided_0, uncond)
    np.testing.assert_array_equal(np.asarray(_guided_vs_plain(cond_t, uncond_t, init, key(11), 1.0)[2]), cond)
    assert not np.array_equal(cond, uncond)


# ----------------------------------------------------------------------------------------------
# sample_logits
# ----------------------------------------------------------------------------------------------


_sample = jax.jit(sample_logits, static_argnames=("temperature", "top_k", "top_p"))
_sample_traced = jax.jit(sample_logits)  # every option traced: one compilation for all values


def _random_logits(seed, b=64, v=50):
    return jnp.asarray(_np_rng(seed).normal(size=(b, v)) * 2, jnp.float32)


def test_sample_logits_greedy_limits():
    logits = _random_logits(0)
    argmax = np.asarray(logits).argmax(-1)
    k = key(0)
    np.testing.assert_array_equal(_sample(k, logits, top_k=1), argmax)
    np.testing.assert_array_equal(_sample(k, logits, top_p=1e-6), argmax)
    np.testing.assert_array_equal(_sample(k, logits, temperature=0.0), argmax)
    # Temperature -> 0 approaches greedy (well-separated logits: gaps of 0.1, T = 1e-3).
    spaced = jnp.asarray(np.stack([_np_rng(i).permutation(50) * 0.1 for i in range(64)]), jnp.float32)
    np.testing.assert_array_equal(_sample_traced(k, spaced, 1e-3, None, None), np.asarray(spaced).argmax(-1))
    # Traced options: temperature 0 (via jnp.where), top_k 1, tiny top_p.
    np.testing.assert_array_equal(_sample_traced(k, logits, 0.0, None, None), argmax)
    np.testing.assert_array_equal(_sample_traced(k, logits, 1.0, 1, None), argmax)
    np.testing.assert_array_equal(_sample_traced(k, logits, 1.0, None, 1e-6), argmax)
    assert not np.array_equal(_sample_traced(k, logits, 1.0, None, None), argmax)  # sampling is not greedy


def test_sample_logits_top_k_top_p_support_and_frequencies():
    probs = np.array([0.3, 0.05, 0.25, 0.02, 0.2, 0.18])
    draws = 4000
    logits = jnp.asarray(np.broadcast_to(np.log(probs), (draws, 6)), jnp.float32)
    samples = np.asarray(_sample(key(1), logits, top_k=3))  # static top_k: the lax.top_k path
    top3 = {0, 2, 4}
    assert set(np.unique(samples)) == top3
    freq = np.bincount(samples, minlength=6)[[0, 2, 4]] / draws
    np.testing.assert_allclose(freq, probs[[0, 2, 4]] / probs[[0, 2, 4]].sum(), atol=0.03)

    def support(temperature, top_k, top_p, seed=2):  # traced options: one compilation for all of these
        return set(np.unique(np.asarray(_sample_traced(key(seed), logits, temperature, top_k, top_p))))

    assert support(1.0, 3, None) == top3
    # top_p = 0.7: cumulative mass 0.3, 0.55, 0.75 -> the nucleus is {0, 2, 4}; 0.5 -> {0, 2}.
    assert support(1.0, 6, 0.7) == top3
    assert support(1.0, 6, 0.5) == {0, 2}
    # top-p after top-k renormalises over the top-k: {0, 2, 4} -> 0.40, 0.33, 0.27; p = 0.6 -> {0, 2}.
    assert support(1.0, 3, 0.6) == {0, 2}
    assert support(1.0, 6, 1.0) == set(range(6))
    # Temperature flattens: with T = 5 the top-3 frequencies move towards uniform (0.34, 0.33, 0.32).
    hot = np.bincount(np.asarray(_sample_traced(key(1), logits, 5.0, 3, 1.0)), minlength=6)
    assert hot[[1, 3, 5]].sum() == 0 and hot[4] / draws > 0.28


def test_sample_logits_reproducible_and_path_independent():
    logits = _random_logits(1)
    k1, k2 = key(5), key(6)
    a = np.asarray(_sample(k1, logits, top_k=5, top_p=0.9))
    np.testing.assert_array_equal(a, np.asarray(_sample(k1, logits, top_k=5, top_p=0.9)))
    assert not np.array_equal(a, np.asarray(_sample(k2, logits, top_k=5, top_p=0.9)))
    # Static and traced options run different code (lax.top_k vs one full sort, no-op filters
    # skipped) yet draw the same tokens for the same key.
    np.testing.assert_array_equal(a, np.asarray(_sample_traced(k1, logits, 1.0, 5, 0.9)))
    plain = np.asarray(_sample(k1, logits))
    np.testing.assert_array_equal(plain, np.asarray(_sample_traced(k1, logits, 1.0, 50, 1.0)))
    np.testing.assert_array_equal(plain, np.asarray(_sample(k1, logits, top_k=50, top_p=1.0)))
    assert a.dtype == np.int32 and a.shape == (64,)


def _joint_from_groups(group_logits):
    """[..., G, n] per-digit logits -> [..., n^G] joint log-probs (id = sum_j digit_j n^j), by brute force."""
    lp = np.asarray(jax.nn.log_softmax(group_logits, axis=-1))
    g, n = lp.shape[-2:]
    ids = np.arange(n**g)
    digits = (ids[:, None] // n ** np.arange(g)) % n  # [V, G]
    return sum(lp[..., j, :][..., digits[:, j]] for j in range(g))


def test_factorised_sampling_is_the_joint_distribution():
    """A bit-group head's codes, drawn group by group, follow the product distribution: frequencies, the
    greedy code, the returned log-probability and guidance all match the brute-force joint."""
    from videogen.lm.sampling import _sample_with_logprob, cfg_logits

    rng = _np_rng(3)
    groups = jnp.asarray(rng.normal(size=(3, 4)) * 1.5, jnp.float32)  # G = 3 digits of n = 4: 64 codes
    joint = _joint_from_groups(groups)
    draws = 20000
    tiled = jnp.broadcast_to(groups, (draws, 3, 4))
    codes = np.asarray(sample_logits(key(0), tiled, factorised=True))
    assert codes.dtype == np.int32 and codes.min() >= 0 and codes.max() < 64
    np.testing.assert_allclose(np.bincount(codes, minlength=64) / draws, np.exp(joint), atol=0.012)
    assert int(sample_logits(key(0), groups, 0.0, factorised=True)) == int(joint.argmax())
    tok, logprob = _sample_with_logprob(key(1), tiled[:50], 1.0, None, None, True)
    np.testing.assert_allclose(np.asarray(logprob), joint[np.asarray(tok)], atol=1e-5)
    # Guidance on the group logits = guidance on the joint log-probs (it is linear; each group renormalises).
    uncond = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    guided = _joint_from_groups(cfg_logits(groups, uncond, 2.5))
    direct = cfg_logits(joint, _joint_from_groups(uncond), 2.5)
    np.testing.assert_allclose(guided, np.asarray(jax.nn.log_softmax(jnp.asarray(direct))), atol=1e-5)
    # top-k acts per group: with k = 1 every digit is its group's argmax.
    np.testing.assert_array_equal(
        np.asarray(sample_logits(key(2), tiled[:8], 1.0, 1, factorised=True)), np.full(8, joint.argmax())
    )


def test_factorised_maskgit_and_ar_never_build_the_joint_vocabulary():
    """2^18 codes as 2 groups of 2^9: decoding works and no array in the traced program reaches 2^18
    entries per token (the joint would be [B, N, 262144])."""
    b, n, g, width = 2, 6, 2, 512
    table = jnp.asarray(_np_rng(4).normal(size=(n, g, width)), jnp.float32)
    mask = width**g  # outside the code range

    def logits_fn(tokens):
        return jnp.broadcast_to(table, (tokens.shape[0],) + table.shape)

    def run(rng):
        return maskgit_decode(
            logits_fn, jnp.full((b, n), mask, jnp.int32), rng=rng, mask_id=mask, num_steps=3, factorised=True
        ).tokens

    tokens = np.asarray(jax.jit(run)(key(0)))
    assert tokens.shape == (b, n) and tokens.min() >= 0 and tokens.max() < width**g

    def step_fn(state, token, index):
        return jnp.broadcast_to(table[index % n], (b, g, width)), state

    def run_ar(rng):
        return ar_decode(
            step_fn,
            jnp.zeros(()),
            first_token=jnp.zeros((b,), jnp.int32),
            rng=rng,
            num_tokens=n,
            factorised=True,
        )[0]

    assert np.asarray(jax.jit(run_ar)(key(1))).max() < width**g
    for fn in (run, run_ar):
        sizes = [
            math.prod(v.aval.shape)
            for eqn in _all_eqns(jax.make_jaxpr(fn)(key(0)).jaxpr)
            for v in eqn.outvars
            if hasattr(v.aval, "shape")
        ]
        assert max(sizes) < width**g, max(sizes)
    with pytest.raises(ValueError, match="mask_id"):
        maskgit_decode(logits_fn, jnp.full((b, n), 5, jnp.int32), rng=key(0), mask_id=5, factorised=True)


def _all_eqns(jaxpr):
    """Every equation of a jaxpr, including those inside loops and conditionals."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _all_eqns(getattr(inner, "jaxpr", inner))


# ----------------------------------------------------------------------------------------------
# Autoregressive decoding
# ----------------------------------------------------------------------------------------------

T_AR = 12


def _counting_step(state, token, index):
    """Toy cached model: next token = (prev + 1) % V, peaked; the 'cache' records what was fed where."""
    cache, calls = state
    cache = cache.at[:, index].set(token)
    logits = 30.0 * jax.nn.one_hot((token + 1) % V, V)
    return logits, (cache, calls + 1)


_traces = []


@functools.partial(jax.jit, static_argnames=("temperature",))
def _ar(rng, first, forced=None, temperature=1.0):
    _traces.append(1)
    b = first.shape[0]
    state = (jnp.full((b, T_AR + 4), -1, jnp.int32), jnp.zeros((), jnp.int32))
    return ar_decode(
        _counting_step,
        state,
        first_token=first,
        rng=rng,
        num_tokens=T_AR,
        forced_tokens=forced,
        temperature=temperature,
        start_index=2,
    )


def test_ar_decode_sequence_state_and_single_compile():
    first = jnp.array([0, 5, 15], jnp.int32)
    out_a, (cache, calls) = _ar(jax.random.key(0), first)  # default threefry keys in this test
    traced, compiled = len(_traces), _ar._cache_size()
    out_b, _ = _ar(jax.random.key(1), first)
    out_c, _ = _ar(jax.random.key(2), first)
    assert len(_traces) == traced and _ar._cache_size() == compiled, "a new rng must not retrace or recompile"
    np.testing.assert_array_equal(out_b, out_c)
    expected = (np.asarray(first)[:, None] + 1 + np.arange(T_AR)) % V
    np.testing.assert_array_equal(out_a, expected)
    np.testing.assert_array_equal(out_b, expected)
    assert out_a.shape == (3, T_AR) and out_a.dtype == jnp.int32
    assert int(calls) == T_AR
    # Step i was called at index start_index + i with the previous token.
    cache = np.asarray(cache)
    np.testing.assert_array_equal(cache[:, 2], first)
    np.testing.assert_array_equal(cache[:, 3 : 2 + T_AR], expected[:, :-1])
    assert (cache[:, :2] == -1).all() and (cache[:, 2 + T_AR :] == -1).all()
    greedy, _ = _ar(jax.random.key(0), first, temperature=0.0)
    np.testing.assert_array_equal(greedy, expected)


def test_ar_decode_forced_prompts_of_different_lengths():
    first = jnp.array([0, 0], jnp.int32)
    forced = np.full((2, T_AR), -1, np.int32)
    forced[0, :3] = [7, 9, 3]  # a 3-token prompt
    forced[1, :1] = [11]  # a 1-token prompt
    out, _ = _ar(key(0), first, jnp.asarray(forced))
    out = np.asarray(out)
    np.testing.assert_array_equal(out[0], [7, 9, 3] + [(3 + 1 + i) % V for i in range(T_AR - 3)])
    np.testing.assert_array_equal(out[1], [11] + [(11 + 1 + i) % V for i in range(T_AR - 1)])


def test_ar_decode_guided_step_scale_0_is_unconditional():
    b, steps = 4, 10
    rng = _np_rng(8)
    cond_w, uncond_w = (jnp.asarray(rng.normal(size=(V, V)), jnp.float32) for _ in range(2))

    def step(weights):
        return lambda state, token, index: (weights[token] + 0.01 * state, state + 1)

    def step_2b(state, token, index):
        half = token.shape[0] // 2
        logits = jnp.concatenate([cond_w[token[:half]], uncond_w[token[half:]]]) + 0.01 * state
        return logits, state + 1

    @jax.jit
    def run(rng, scale):  # (unconditional, conditional, guided) with the same rng
        first = jnp.zeros((b,), jnp.int32)
        state = jnp.zeros((), jnp.float32)
        return tuple(
            ar_decode(fn, state, first_token=first, rng=rng, num_tokens=steps)[0]
            for fn in (step(uncond_w), step(cond_w), guided_step(step_2b, scale))
        )

    uncond, cond, guided_0 = map(np.asarray, run(key(3), 0.0))
    np.testing.assert_array_equal(guided_0, uncond)
    np.testing.assert_array_equal(np.asarray(run(key(3), 1.0)[2]), cond)
    assert not np.array_equal(uncond, cond)


def test_ar_decode_validates_shapes():
    state = (jnp.zeros((2, 20), jnp.int32), jnp.zeros((), jnp.int32))
    with pytest.raises(ValueError, match="forced_tokens"):
        ar_decode(
            _counting_step,
            state,
            first_token=jnp.zeros((2,), jnp.int32),
            rng=jax.random.key(0),
            num_tokens=4,
            forced_tokens=jnp.zeros((2, 5), jnp.int32),
        )
    with pytest.raises(ValueError, match="first_token"):
        ar_decode(
            _counting_step,
            state,
            first_token=jnp.zeros((2, 1), jnp.int32),
            rng=jax.random.key(0),
            num_tokens=4,
        )
