"""Tests for tokenizer.quantizers: LFQ, FSQ, VQ, the factory and CodeUsage."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tokenizer.quantizers import FSQ, LFQ, VQ, CodeUsage, batch_code_stats, make_quantizer

SHAPE = (2, 3, 4, 4)  # [B, T, H, W]; channels appended per quantizer

# Module-level jitted entry points: nnx.jit caches on the module's graphdef and the input
# shapes, so tests that reuse a configuration share one compilation (eager op-by-op
# dispatch would compile every primitive separately and dominate the runtime).
_apply = nnx.jit(lambda q, z, train: q(z, train=train), static_argnames="train")
_decode = nnx.jit(lambda q, ids: q.indices_to_codes(ids))
_encode = nnx.jit(lambda q, codes: q.codes_to_indices(codes))


def _make(kind):
    if kind == "lfq":
        return make_quantizer("lfq", num_bits=6, scale_codes=True)
    if kind == "fsq":
        return make_quantizer("fsq", levels=(8, 5, 3, 4))
    return make_quantizer("vq", codebook_size=16, code_dim=8, rngs=nnx.Rngs(0))


def _normal(seed, shape, scale=1.0):
    # numpy data: jax.random in eager mode would compile a kernel per new shape.
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _latents(q, seed=0, scale=1.0):
    return _normal(seed, SHAPE + (q.code_dim,), scale)


# ----------------------------------------------------------------------------
# Protocol: shapes, round trips, straight-through
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lfq", "fsq", "vq"])
def test_shapes_and_aux(kind):
    q = _make(kind)
    z = _latents(q)  # [B, T, H, W, C]
    z_q, idx, aux = _apply(q, z, train=True)
    assert z_q.shape == z.shape and z_q.dtype == jnp.float32
    assert idx.shape == SHAPE and idx.dtype == jnp.int32
    assert np.asarray(idx).min() >= 0 and np.asarray(idx).max() < q.codebook_size
    for key in ("loss", "perplexity", "codebook_usage_batch"):
        assert key in aux
    for key, value in aux.items():
        assert value.shape == (), key
        assert np.isfinite(float(value)), key
    n_unique = len(np.unique(np.asarray(idx)))
    assert float(aux["codebook_usage_batch"]) == pytest.approx(n_unique / q.codebook_size)


@pytest.mark.parametrize("kind", ["lfq", "fsq", "vq"])
def test_round_trips(kind):
    q = _make(kind)
    z = _latents(q, scale=2.0)
    z_q, idx, _ = _apply(q, z, train=False)
    codes = _decode(q, idx)
    # z_q is the straight-through value: equal to the decoded code up to float rounding of z + (c - z).
    np.testing.assert_allclose(np.asarray(z_q), np.asarray(codes), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(_encode(q, codes)), np.asarray(idx))
    # Every id of the (small) codebook survives ids -> codes -> ids exactly.
    all_ids = np.arange(q.codebook_size, dtype=np.int32).reshape(-1, 2)
    all_codes = _decode(q, all_ids)
    np.testing.assert_array_equal(np.asarray(_encode(q, all_codes)), np.asarray(all_ids))
    if kind != "fsq":  # FSQ's input space is pre-tanh, so its codes are not fixed points there.
        # ids -> codes -> quantizer -> ids: LFQ/VQ codes are fixed points of the quantizer.
        _, idx2, _ = _apply(q, all_codes, train=False)
        np.testing.assert_array_equal(np.asarray(idx2), np.asarray(all_ids))


@nnx.jit
def _st_grad(q, z, w):
    """d sum(z_q * w) / dz: isolates the straight-through path from the aux losses."""
    return jax.grad(lambda z: jnp.sum(q(z, train=False)[0] * w))(z)


def test_lfq_straight_through_is_identity():
    q = LFQ(5, normalize=False)
    z = _normal(1, SHAPE + (5,))
    w = _normal(2, z.shape)
    np.testing.assert_allclose(np.asarray(_st_grad(q, z, w)), np.asarray(w), rtol=0, atol=0)


def test_lfq_straight_through_with_norm_equals_norm_vjp():
    # With the (parameter-free) RMS norm in front, the quantizer must be transparent to
    # gradients: d sum(z_q w)/dz == d sum(normalize(z) w)/dz.
    q = LFQ(5, scale_codes=True)
    z = _normal(1, SHAPE + (5,))
    w = _normal(2, z.shape)
    expected = jax.jit(jax.grad(lambda z: jnp.sum(q.normalize(z) * w)))(z)
    got = _st_grad(q, z, w)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(np.asarray(got))) and np.abs(np.asarray(got)).max() > 0


def test_fsq_straight_through_equals_bound_derivative():
    levels = (8, 5, 3, 4)
    q = FSQ(levels)
    z = _normal(3, SHAPE + (4,))
    w = _normal(4, z.shape)
    got = np.asarray(_st_grad(q, z, w))
    # Analytic: d/dz [tanh(z + shift) h - offset] / (L // 2) = (1 - tanh^2(z + shift)) h / (L // 2).
    lv = np.asarray(levels, np.float64)
    h = (lv - 1) * (1 - 1e-3) / 2
    offset = np.where(lv % 2 == 0, 0.5, 0.0)
    shift = np.arctanh(offset / h)
    deriv = (1 - np.tanh(np.asarray(z, np.float64) + shift) ** 2) * h / (np.asarray(levels) // 2)
    np.testing.assert_allclose(got, np.asarray(w) * deriv, rtol=1e-4, atol=1e-6)


def test_vq_straight_through_gradient():
    q = _make("vq")
    z = _latents(q)
    w = _normal(5, z.shape)
    got = np.asarray(_st_grad(q, z, w))
    assert np.all(np.isfinite(got)) and np.abs(got).max() > 0
    # The lookup is transparent: the gradient is that of the input l2 normalisation alone.
    expected = jax.jit(jax.grad(lambda z: jnp.sum(z / jnp.linalg.norm(z, axis=-1, keepdims=True) * w)))(z)
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------
# LFQ entropy
# ----------------------------------------------------------------------------


def _np_lfq_entropies(z, temperature, scale, normalize=True, eps=1e-6):
    """Full-codebook reference in float64: softmax over -||z_n - c||^2 / T for all 2^K codes."""
    z = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
    k = z.shape[-1]
    if normalize:
        z = z / np.sqrt(np.mean(z**2, axis=-1, keepdims=True) + eps) * scale
    ids = np.arange(2**k)
    codes = np.where((ids[:, None] >> np.arange(k)[None, :]) & 1, scale, -scale)  # [2^K, K]
    logits = -np.sum((z[:, None, :] - codes[None]) ** 2, axis=-1) / temperature  # [N, 2^K]
    logits -= logits.max(axis=-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    p = np.exp(log_p)
    per_sample = np.mean(-(p * log_p).sum(-1))
    avg = p.mean(0)
    batch = -(avg[avg > 0] * np.log(avg[avg > 0])).sum()
    q = np.where(z > 0, scale, -scale)
    commit = np.mean((z - q) ** 2)
    return per_sample, batch, commit


@pytest.mark.parametrize("temperature, scale_codes", [(0.01, False), (0.1, True), (1.0, True)])
def test_lfq_entropy_matches_full_enumeration(temperature, scale_codes):
    k = 4
    q = LFQ(
        k,
        temperature=temperature,
        scale_codes=scale_codes,
        entropy_weight=0.3,
        commitment_weight=0.7,
        batch_entropy_weight=1.5,
    )
    assert q.entropy_groups == ((0, 4),)  # small K: one group, i.e. the full codebook
    z = _normal(7, SHAPE + (k,))
    _, _, aux = _apply(q, z, train=True)
    per, batch, commit = _np_lfq_entropies(z, temperature, 1 / math.sqrt(k) if scale_codes else 1.0)
    assert float(aux["per_sample_entropy"]) == pytest.approx(per, abs=1e-5)
    assert float(aux["batch_entropy"]) == pytest.approx(batch, abs=1e-5)
    assert float(aux["commit_loss"]) == pytest.approx(commit, abs=1e-6)
    assert float(aux["entropy_loss"]) == pytest.approx(per - 1.5 * batch, abs=2e-5)
    assert float(aux["loss"]) == pytest.approx(0.3 * (per - 1.5 * batch) + 0.7 * commit, abs=2e-5)
    assert float(aux["perplexity"]) == pytest.approx(math.exp(batch), rel=1e-5)
    if temperature == 1.0:
        # Guard against a vacuous comparison: at T=1 neither term is ~0.
        assert per > 0.1 and batch > 0.1


@pytest.mark.parametrize("group_bits", [1, 2, 3])
def test_lfq_grouped_entropy_exact_per_sample_and_upper_bound_batch(group_bits):
    k = 4
    z = np.array(_normal(8, SHAPE + (k,)))
    # Tie bit 2 to bit 0 and bit 3 to the flip of bit 1: for every group size below, some
    # tied pair straddles two groups, so the groups are far from independent.
    z[..., 2], z[..., 3] = z[..., 0], -z[..., 1]
    z = jnp.asarray(z)
    q = LFQ(k, temperature=0.5, entropy_group_bits=group_bits)
    assert sum(size for _, size in q.entropy_groups) == k and len(q.entropy_groups) > 1
    _, _, aux = _apply(q, z, train=False)
    per, batch, _ = _np_lfq_entropies(z, 0.5, 1.0)
    # Per-sample assignment factorises over groups: exact.
    assert float(aux["per_sample_entropy"]) == pytest.approx(per, abs=1e-5)
    # Batch term: sum of marginal entropies >= joint entropy (subadditivity), strict here.
    assert float(aux["batch_entropy"]) >= batch - 1e-6
    assert float(aux["batch_entropy"]) > batch + 0.1


def test_lfq_grouped_batch_entropy_exact_for_independent_groups():
    # A batch that is the Cartesian product of group-0 latents and group-1 latents makes the
    # batch-averaged assignment exactly a product over groups, so the grouped estimate is exact.
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 2))  # 5 settings of bits 0-1
    b = rng.normal(size=(7, 2))  # 7 settings of bits 2-3
    z = np.concatenate([np.repeat(a, 7, 0), np.tile(b, (5, 1))], axis=-1).astype(np.float32)  # [35, 4]
    q = LFQ(4, temperature=0.5, normalize=False, entropy_group_bits=2)
    _, _, aux = _apply(q, jnp.asarray(z), train=False)
    per, batch, _ = _np_lfq_entropies(z, 0.5, 1.0, normalize=False)
    assert float(aux["per_sample_entropy"]) == pytest.approx(per, abs=1e-5)
    assert float(aux["batch_entropy"]) == pytest.approx(batch, abs=1e-5)


def test_lfq_large_codebook_groups_and_runs():
    q = LFQ(18)
    assert q.codebook_size == 2**18 and q.entropy_groups == ((0, 9), (9, 9))
    assert LFQ(12).entropy_groups == ((0, 12),)
    z = _normal(9, (2, 2, 4, 4, 18))
    z_q, idx, aux = _apply(q, z, train=True)
    np.testing.assert_array_equal(np.asarray(_encode(q, z_q)), np.asarray(idx))
    ids = jnp.asarray(np.random.default_rng(10).integers(0, 2**18, 64), jnp.int32)
    np.testing.assert_array_equal(np.asarray(_encode(q, _decode(q, ids))), np.asarray(ids))
    # The grouped perplexity is a product of per-group perplexities, each at most 2^9.
    assert 1.0 <= float(aux["perplexity"]) <= 2.0**18
    assert float(aux["codebook_usage_batch"]) == pytest.approx(len(np.unique(np.asarray(idx))) / 2**18)
    # The aux loss (entropy at T=0.01 plus commitment) trains the encoder: finite, nonzero gradient.
    g = np.asarray(nnx.jit(jax.grad(lambda z, q: q(z, train=True)[2]["loss"]))(z, q))
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_lfq_index_bit_order():
    q = LFQ(3, normalize=False)
    z = jnp.asarray([[1.0, -1.0, -1.0], [-1.0, 2.0, 3.0], [0.0, 0.5, -0.1]])
    _, idx, _ = _apply(q, z, train=False)
    np.testing.assert_array_equal(np.asarray(idx), [1, 6, 2])  # sum_i 2^i 1{z_i > 0}; 0 counts as negative


# ----------------------------------------------------------------------------
# FSQ
# ----------------------------------------------------------------------------


def test_fsq_codes_on_grid():
    levels = (8, 5, 3, 4)
    q = FSQ(levels)
    z = _latents(q, scale=4.0)  # large inputs hit the saturated ends of every channel
    z_q, _, aux = _apply(q, z, train=True)
    z_q = np.asarray(z_q)
    for c, l in enumerate(levels):
        grid = (np.arange(l) - l // 2) / (l // 2)
        dist = np.abs(z_q[..., c][..., None] - grid).min(-1)
        assert dist.max() < 1e-6, f"channel {c} off grid"
    assert np.all(z_q >= -1.0) and np.all(z_q <= 1.0)
    assert float(aux["loss"]) == 0.0
    # bound(0) = 0 for odd and even levels (the half-step offset is compensated by the shift).
    np.testing.assert_allclose(
        np.asarray(nnx.jit(lambda q, z: q.bound(z))(q, np.zeros(4, np.float32))), 0.0, atol=1e-6
    )


def test_fsq_dense_sweep_hits_every_code():
    levels = (8, 5, 4)
    q = FSQ(levels)
    sweep = np.linspace(-6, 6, 41, dtype=np.float32)
    grid = np.stack(np.meshgrid(sweep, sweep, sweep, indexing="ij"), -1).reshape(-1, 3)
    _, idx, _ = _apply(q, jnp.asarray(grid), train=False)
    assert len(np.unique(np.asarray(idx))) == math.prod(levels) == q.codebook_size


def test_fsq_default_levels_codebook():
    levels = (8, 8, 8, 5, 5)
    q = FSQ(levels)
    assert q.codebook_size == 12800 and q.code_dim == 5
    # Each channel alone realises exactly L levels over a sweep ...
    sweep = np.linspace(-8, 8, 401, dtype=np.float32)
    for c, l in enumerate(levels):
        z = np.zeros((401, 5), np.float32)
        z[:, c] = sweep
        z_q, _, _ = _apply(q, z, train=False)
        assert len(np.unique(np.asarray(z_q[:, c]))) == l
    # ... and all prod(levels) ids decode to distinct grid points that re-encode exactly.
    ids = np.arange(q.codebook_size, dtype=np.int32)
    codes = np.asarray(_decode(q, ids))
    assert len(np.unique(codes, axis=0)) == 12800
    np.testing.assert_array_equal(np.asarray(_encode(q, codes)), ids)


# ----------------------------------------------------------------------------
# VQ
# ----------------------------------------------------------------------------


def _unit_rows(q):
    """The VQ codes (l2-normalised codebook rows) in numpy."""
    cb = np.asarray(q.codebook[...], np.float64)
    return cb / np.linalg.norm(cb, axis=-1, keepdims=True)


def _concentrated_batch(q, seed, n_tokens=128, noise=0.05):
    """Tokens clustered around codebook rows 0 and 1, shaped [B, T, H, W, D]."""
    cb = _unit_rows(q)
    rng = np.random.default_rng(seed)
    centers = cb[rng.integers(0, 2, n_tokens)]
    z = centers + noise * rng.normal(size=centers.shape)
    return jnp.asarray(z.reshape(4, 2, 4, 4, q.code_dim), jnp.float32)


def _vq_state(q):
    return [np.array(v[...]) for v in (q.codebook, q.ema_count, q.ema_sum, q.restart_rng.count)]


def test_vq_restarts_dead_codes():
    q = VQ(16, 8, rngs=nnx.Rngs(0), decay=0.5, restart_threshold=0.1)
    state0 = _vq_state(q)
    _, idx0, aux0 = _apply(q, _concentrated_batch(q, 100), train=False)
    assert set(np.unique(np.asarray(idx0))) == {0, 1}  # only two codes in use
    # Evaluation never touches the state (EMA, codebook, restart rng).
    assert float(aux0["restarted_codes"]) == 0.0
    for a, b in zip(state0, _vq_state(q)):
        np.testing.assert_array_equal(a, b)

    restarted, restarted_ids = 0.0, set()
    for s in range(8):
        before = _unit_rows(q)
        _, _, aux = _apply(q, _concentrated_batch(q, s), train=True)
        restarted += float(aux["restarted_codes"])
        # The EMA rescales every row, but only a restart changes an unused row's direction.
        moved = np.sum(_unit_rows(q) * before, -1) < 0.999
        restarted_ids |= set(np.flatnonzero(moved)) - {0, 1}
    assert restarted > 0 and len(restarted_ids) >= 8
    assert int(q.restart_rng.count[...]) == 8  # one restart key per training step

    z_eval = _concentrated_batch(q, 200)
    # Restarted codes now sit on input data: each is within the cluster noise of some input.
    cb = _unit_rows(q)
    zn = np.asarray(z_eval).reshape(-1, 8)
    zn = zn / np.linalg.norm(zn, axis=-1, keepdims=True)
    best_sim = (cb[sorted(restarted_ids)] @ zn.T).max(-1)
    assert best_sim.min() > 0.9
    # And they get used: more distinct codes cover a fresh batch from the same distribution.
    _, idx1, aux1 = _apply(q, z_eval, train=False)
    assert len(np.unique(np.asarray(idx1))) > 2
    assert float(aux1["codebook_usage_batch"]) > 2 / 16


def test_vq_ema_moves_code_toward_inputs():
    decay, eps = 0.9, 0.1  # a large Laplace eps so the test can see the smoothing
    q = VQ(16, 8, rngs=nnx.Rngs(1), decay=decay, eps=eps, restart_threshold=0.0)
    u = np.random.default_rng(3).normal(size=8)
    u /= np.linalg.norm(u)
    z = np.broadcast_to(u.astype(np.float32), (2, 1, 2, 2, 8)).copy()  # 8 identical tokens
    _, idx, _ = _apply(q, z, train=False)
    k = int(np.asarray(idx).reshape(-1)[0])
    cos_before = float(_unit_rows(q)[k] @ u)
    cb0, count0, sum0 = (np.asarray(v[...], np.float64) for v in (q.codebook, q.ema_count, q.ema_sum))

    _, _, aux = _apply(q, z, train=True)
    assert float(aux["restarted_codes"]) == 0.0
    # Reference EMA update with Laplace smoothing.
    counts = np.zeros(16)
    counts[k] = 8
    sums = np.zeros((16, 8))
    sums[k] = 8 * u
    count1 = decay * count0 + (1 - decay) * counts
    sum1 = decay * sum0 + (1 - decay) * sums
    n = count1.sum()
    expected = sum1 / ((count1 + eps) / (n + 16 * eps) * n)[:, None]
    np.testing.assert_allclose(np.asarray(q.ema_count[...]), count1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(q.codebook[...]), expected, rtol=1e-5, atol=1e-6)
    cos_after = float(_unit_rows(q)[k] @ u)
    assert cos_after > cos_before
    # Unused codes keep their direction (their rows are only rescaled by the smoothing).
    others = [i for i in range(16) if i != k]
    cb1 = np.asarray(q.codebook[...], np.float64)
    cos_self = (
        np.sum(cb1[others] * cb0[others], -1)
        / np.linalg.norm(cb1[others], axis=-1)
        / np.linalg.norm(cb0[others], axis=-1)
    )
    np.testing.assert_allclose(cos_self, 1.0, atol=1e-5)


def test_vq_learned_codebook_gets_gradients_only_on_used_rows():
    q = VQ(16, 8, rngs=nnx.Rngs(3), update="learned", restart_threshold=0.0)
    assert isinstance(q.codebook, nnx.Param) and not hasattr(q, "ema_sum")
    z = _latents(q)
    used = np.unique(np.asarray(_apply(q, z, train=False)[1]))
    grads = nnx.jit(nnx.grad(lambda m, z: m(z, train=True)[2]["loss"]))(q, z)
    g = np.asarray(grads["codebook"][...])
    assert np.abs(g[used]).sum(-1).min() > 0
    unused = np.setdiff1d(np.arange(16), used)
    np.testing.assert_array_equal(g[unused], 0.0)
    # Only the codebook is a Param; EMA counts are Buffers that optimizers won't see.
    assert set(nnx.state(q, nnx.Param).keys()) == {"codebook"}


# ----------------------------------------------------------------------------
# Usage statistics and factory
# ----------------------------------------------------------------------------


def test_code_usage_exact():
    usage = CodeUsage(8)
    usage.update(np.array([[0, 0], [1, 2]]))
    usage.update(jnp.asarray([2, 2, 5]))
    counts = np.array([2, 1, 3, 1]) / 7.0
    entropy = -np.sum(counts * np.log(counts))
    assert usage.total == 7 and usage.used == 4
    assert usage.usage_fraction == 0.5
    assert usage.entropy == pytest.approx(entropy, rel=1e-12)
    assert usage.perplexity == pytest.approx(np.exp(entropy), rel=1e-12)
    assert usage.summary()["usage"] == 0.5
    # Uniform use of m codes has perplexity exactly m.
    usage.reset()
    usage.update(np.tile(np.arange(6), 5))
    assert usage.perplexity == pytest.approx(6.0, rel=1e-12) and usage.usage_fraction == 6 / 8
    with pytest.raises(ValueError):
        usage.update([8])


def test_code_usage_large_codebook_and_batch_stats_agree():
    usage = CodeUsage(2**18)
    ids = np.random.default_rng(0).integers(0, 2**18, (4, 1000)).astype(np.int32)
    usage.update(ids)
    u, ppl = jax.jit(batch_code_stats, static_argnums=1)(ids, 2**18)
    assert float(u) == pytest.approx(usage.usage_fraction, rel=1e-6)
    assert float(ppl) == pytest.approx(usage.perplexity, rel=1e-4)


def test_make_quantizer():
    rngs = nnx.Rngs(0)
    assert isinstance(make_quantizer("lfq", num_bits=10, rngs=rngs), LFQ)
    assert isinstance(make_quantizer("FSQ", levels=[8, 8, 8, 5, 5], rngs=rngs), FSQ)
    vq = make_quantizer("vq", codebook_size=32, code_dim=4, rngs=rngs, update="learned")
    assert isinstance(vq, VQ) and (vq.codebook_size, vq.code_dim) == (32, 4)
    with pytest.raises(ValueError):
        make_quantizer("rq")
    with pytest.raises(ValueError):  # L=2 has no bounded interval around 0 with the half-step shift
        make_quantizer("fsq", levels=(8, 2))
