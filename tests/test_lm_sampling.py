"""The one guided next-token decoder of videogen/lm/core.py (:func:`videogen.lm.next_token_codes`) behind text-to-video
sampling, frame prediction and the continuation windows, pinned down at a fixed seed.

Each case is decoded twice: by the samplers themselves (KV cache, prefill, empty context slots, skipped steps)
and by a reference that runs the whole sequence ``[text | given codes | codes drawn so far]`` through the model
for every new code (no cache, no empty slots), draws each code with the key the samplers' documented schedule
gives it, at temperature 1 with guidance. Same codes, exactly: a change to the decoding, its positions or its
use of the rng shows here. A tiny random-init LM with a bit-group head and one with a softmax head.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videogen.lm import core as lm
from videogen.lm import sampling
from videogen.lm.model import Transformer, TransformerConfig, make_positions, video_logits, video_token_ids

T, H, W = 3, 2, 2  # latent grid: 3 frames of P = 4 tokens
P, N = H * W, T * H * W
L = 4  # text tokens
GUIDANCE = 2.5


@pytest.fixture(scope="module", params=["bitgroups", "softmax"])
def model(request):
    kw = {} if request.param == "bitgroups" else {"head": "softmax", "group_bits": None}
    cfg = TransformerConfig.tiny(video_grid=(T, H, W), max_text_len=L, **kw)
    return Transformer(cfg, rngs=nnx.Rngs(3))


@pytest.fixture(scope="module")
def text2():
    cond = np.random.default_rng(0).integers(1, 16, (2, L)).astype(np.int32)
    return jnp.asarray(np.concatenate([cond, np.zeros_like(cond)]))  # [cond; null (PAD)]


def reference(model, text2, given: np.ndarray, count: int, key_of) -> np.ndarray:
    """Codes of video tokens ``p .. p + count - 1`` after ``given`` [B, p]: code ``t`` drawn from the model's
    guided log-probs at video token ``t - 1`` (the last text token for ``t = 0``) with ``key_of(t)``."""
    tcfg = model.config
    forward = jax.jit(lambda tokens: video_logits(model(tokens, make_positions(tcfg, 4), mode="causal")[0]))
    seq = np.full((2, N), -1, np.int32)  # codes; -1: not drawn yet (invisible to the positions before it)
    p = given.shape[1]
    seq[:, :p] = given
    for t in range(p, p + count):
        ids = np.where(seq >= 0, np.asarray(video_token_ids(tcfg, seq)), -1)
        logits = forward(jnp.concatenate([text2, jnp.asarray(np.concatenate([ids, ids]))], axis=1))
        lp = lm.code_logits(tcfg, logits[:, L + t - 1])
        guided = sampling.cfg_logits(lp[:2], lp[2:], GUIDANCE)
        seq[:, t] = np.asarray(sampling.sample_logits(key_of(t), guided, 1.0, factorised=lm.factorised(tcfg)))
    return seq[:, p : p + count]


def test_text_to_video_sampler(model, text2):
    graphdef, state = nnx.split(model)
    fn = lm._sampler(graphdef, model.config, "next_token", 1, 1.0, None, "cosine")
    key = jax.random.key(7)
    got = np.asarray(fn(state, text2, key, jnp.float32(GUIDANCE)))
    k0, rest = jax.random.split(key)  # code 0 from the prefill, then one key per cached step
    keys = jax.random.split(rest, N - 1)
    want = reference(model, text2, np.zeros((2, 0), np.int32), N, lambda t: k0 if t == 0 else keys[t - 1])
    np.testing.assert_array_equal(got, want)


def test_frame_prediction_sampler(model, text2):
    """The first frame's codes given: teacher-forced through the cache, the rng going to the steps alone."""
    graphdef, state = nnx.split(model)
    fn = lm._sampler(graphdef, model.config, "next_token", 1, 1.0, None, "cosine", known=P)
    codes = np.random.default_rng(1).integers(0, 64, (2, N)).astype(np.int32)
    key = jax.random.key(8)
    got = np.asarray(fn(state, text2, key, jnp.float32(GUIDANCE), jnp.asarray(codes)))
    np.testing.assert_array_equal(got[:, :P], codes[:, :P])
    keys = jax.random.split(key, N - 1)
    np.testing.assert_array_equal(
        got[:, P:], reference(model, text2, codes[:, :P], N - P, lambda t: keys[t - 1])
    )


@pytest.mark.parametrize("c", [0, 1, 2])
def test_continuation_window_decoder(model, text2, c):
    """A window of a Continuation with K = 2 context frames, c of them given: the prefill holds K frames of
    slots (the last K - c empty), new code j is video token c P + j, and only the wanted codes are compared
    (the steps after them skip the model call)."""
    K, n_new = 2, (T - 2 + 1) * P
    ctx = np.random.default_rng(2).integers(0, 64, (2, K * P)).astype(np.int32)
    key = jax.random.key(9)
    active = n_new if c == 0 else n_new - P
    decode = jax.jit(
        lambda ctx, c, key: lm.next_token_codes(
            model,
            text2,
            n_new,
            guidance=GUIDANCE,
            rng=key,
            context=ctx,
            context_len=c * P,
            active=jnp.where(c == 0, n_new, n_new - P),
        )
    )
    got = np.asarray(decode(jnp.asarray(ctx), jnp.int32(c), key))
    k0, rest = jax.random.split(key)
    keys = jax.random.split(rest, n_new - 1)
    want = reference(
        model, text2, ctx[:, : c * P], active, lambda t: k0 if t == c * P else keys[t - c * P - 1]
    )
    np.testing.assert_array_equal(got[:, :active], want)
