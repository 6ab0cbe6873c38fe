"""Tests of the text-to-video transformer (videogen.lm.model): cache, positions, masks, heads, sharding."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from videogen.lm.model import (
    DEFAULT_LOGICAL_AXIS_RULES,
    Transformer,
    TransformerConfig,
    block_causal_mask,
    block_ids,
    causal_mask,
    code_groups,
    code_log_prob,
    codes_from_groups,
    flops_per_token,
    full_code_log_probs,
    key_padding_mask,
    logical_to_mesh_spec,
    make_attention_mask,
    make_positions,
    matmul_param_count,
    param_count,
    param_shardings,
    prefix_bidirectional_video_mask,
    sample_codes,
    video_token_ids,
)
from videogen.training import mesh as mesh_lib


def _video_logits(out):
    return out["video"] if isinstance(out, dict) else out


def _forward_fn(model, mode="causal"):
    """A jitted full (no-cache) forward over (state, tokens, positions)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def f(state, tokens, positions):
        return _video_logits(nnx.merge(graphdef, state)(tokens, positions, mode=mode)[0])

    return functools.partial(f, state)


def _rows(cfg, text, codes):
    """[B, Lt + N] unified ids from text ids [B, Lt] and video codes [B, N]."""
    return jnp.concatenate([jnp.asarray(text, jnp.int32), video_token_ids(cfg, codes)], axis=1)


def _random_row(cfg, seed, batch=2):
    rng = np.random.default_rng(seed)
    text = rng.integers(4, cfg.text_vocab_size, (batch, cfg.max_text_len))
    text[:, 0] = 2  # BOS
    text[0, -1] = cfg.text_pad_id  # a PAD key in row 0 exercises key padding
    codes = rng.integers(0, cfg.codebook_size, (batch, cfg.num_video_tokens))
    return _rows(cfg, text, codes)


# ----------------------------------------------------------------------------- KV cache


def test_cached_decode_matches_full_pass_and_compiles_once():
    cfg = TransformerConfig.tiny(head="softmax", codebook_size=32, video_grid=(2, 2, 3))
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    tokens = _random_row(cfg, 0)
    positions = make_positions(cfg, 2)
    seq = tokens.shape[1]  # 4 text + 12 video = 16
    full = np.asarray(_forward_fn(model)(tokens, positions))

    traces = {"prefill": 0, "decode": 0}

    def run(kind, state, cache, tok, pos, idx):
        traces[kind] += 1  # Python side effect: runs once per trace (= per compilation)
        return nnx.merge(graphdef, state)(tok, pos, mode="causal", cache=cache, cache_index=idx)

    prefill = jax.jit(functools.partial(run, "prefill"))
    decode = jax.jit(functools.partial(run, "decode"))
    max_len = seq + 3  # slots past the sequence stay masked
    for prompt_len in (cfg.max_text_len + 3, cfg.max_text_len + 6):
        cache = model.init_cache(2, max_len, jnp.float32)
        logits, cache = prefill(state, cache, tokens[:, :prompt_len], positions[:, :prompt_len], jnp.int32(0))
        np.testing.assert_allclose(logits, full[:, :prompt_len], atol=1e-5, rtol=1e-5)
        for p in range(prompt_len, seq):
            logits, cache = decode(state, cache, tokens[:, p : p + 1], positions[:, p : p + 1], jnp.int32(p))
            np.testing.assert_allclose(logits[:, 0], full[:, p], atol=1e-5, rtol=1e-5)
        written = np.asarray(cache["tokens"])
        assert (written[:, :seq] == np.asarray(tokens)).all() and (written[:, seq:] == -1).all()
    assert traces == {"prefill": 2, "decode": 1}
    assert decode._cache_size() == 1


def test_block_causal_chunked_cache_matches_full_pass():
    """Frame-by-frame (block-causal) decoding with a bitgroups head: prefill text + frame 0, then the
    whole of frame 1 as one chunk, equals the full block-causal pass; MASK tokens included."""
    cfg = TransformerConfig.tiny(video_grid=(3, 2, 2))
    model = Transformer(cfg, rngs=nnx.Rngs(1))
    tokens = _random_row(cfg, 1)
    tokens = tokens.at[:, -3:].set(cfg.mask_token_id)
    positions = make_positions(cfg, 2)
    full = np.asarray(_forward_fn(model, "block_causal")(tokens, positions))
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, cache, tok, pos, idx):
        return nnx.merge(graphdef, state)(tok, pos, mode="block_causal", cache=cache, cache_index=idx)

    frame = 4
    cache = model.init_cache(2, tokens.shape[1], jnp.float32)
    cuts = [0, cfg.max_text_len + frame, cfg.max_text_len + 2 * frame, tokens.shape[1]]
    for a, b in zip(cuts[:-1], cuts[1:]):
        logits, cache = step(state, cache, tokens[:, a:b], positions[:, a:b], jnp.int32(a))
        assert logits.shape == (2, b - a, cfg.num_groups, cfg.group_size)
        np.testing.assert_allclose(logits, full[:, a:b], atol=1e-5, rtol=1e-5)


def test_frame_causal_maskgit_with_kv_cache_samples_as_the_full_pass():
    """maskgit_frames sampling with the KV cache (text prefilled, one frame per call) draws the same codes
    as the loop that runs the whole sequence every step (f32, guidance 2); example 1 is given its first
    frame (a continuation), example 0 nothing."""
    from videogen.train import maskgit_video_codes

    cfg = TransformerConfig.tiny(video_grid=(3, 2, 2))
    model = Transformer(cfg, rngs=nnx.Rngs(3))
    graphdef, state = nnx.split(model)
    rows = _random_row(cfg, 2)
    text2 = jnp.concatenate(
        [rows[:, : cfg.max_text_len], jnp.zeros_like(rows[:, : cfg.max_text_len])], axis=0
    )
    codes = rows[:, cfg.max_text_len :] - cfg.video_offset
    given = (jnp.arange(2)[:, None] == 1) & (jnp.arange(cfg.num_video_tokens)[None] < 4)
    init = jnp.where(given, codes, cfg.codebook_size)

    @functools.partial(jax.jit, static_argnames="kv_cache")
    def draw(state, kv_cache):
        return maskgit_video_codes(
            nnx.merge(graphdef, state),
            "maskgit_frames",
            text2,
            init,
            guidance=2.0,
            rng=jax.random.key(7),
            num_steps=3,
            temperature=1.0,
            kv_cache=kv_cache,
        )

    cached, full = np.asarray(draw(state, True)), np.asarray(draw(state, False))
    np.testing.assert_array_equal(cached, full)
    np.testing.assert_array_equal(cached[1, :4], np.asarray(codes)[1, :4])
    assert ((cached >= 0) & (cached < cfg.codebook_size)).all()


# ----------------------------------------------------------------------------- positions


def test_text_positions_carry_information():
    """With bidirectional text, attention without positions would see the caption as a set. Permuting
    the text tokens changes the video logits; permuting (token, position) pairs together does not."""
    cfg = TransformerConfig.tiny(head="softmax", codebook_size=32)
    model = Transformer(cfg, rngs=nnx.Rngs(2))
    fwd = _forward_fn(model, "prefix_bidirectional")
    text = np.array([[2, 5, 9, 13]])
    codes = np.arange(cfg.num_video_tokens)[None] % cfg.codebook_size
    positions = make_positions(cfg, 1)
    base = np.asarray(fwd(_rows(cfg, text, codes), positions))
    perm = np.array([0, 2, 3, 1])
    permuted = np.asarray(fwd(_rows(cfg, text[:, perm], codes), positions))
    video = slice(cfg.max_text_len, None)
    assert np.abs(permuted[:, video] - base[:, video]).max() > 1e-3
    # Same (token, position) pairs in another sequence order: attention is permutation-equivariant.
    full_perm = np.concatenate([perm, np.arange(cfg.max_text_len, positions.shape[1])])
    moved = np.asarray(fwd(_rows(cfg, text[:, perm], codes), positions[:, full_perm]))
    np.testing.assert_allclose(moved[:, video], base[:, video], atol=1e-5, rtol=1e-5)


def test_text_rope_is_standard_1d_rope():
    from videogen.lm.model import rope_angles

    pos = make_positions(TransformerConfig.tiny(), 1)[:, :4]
    cos, _ = rope_angles(pos, 8, 10000.0)
    i = np.arange(4)[:, None]
    np.testing.assert_allclose(cos[0, :, 0], np.cos(i * 10000.0 ** (-2.0 * np.arange(4) / 8)), atol=1e-6)


def test_video_rope_is_relative_in_t_h_w():
    """No text: shifting every video t (or h) index by a constant leaves all logits unchanged,
    shifting a single frame does not."""
    cfg = TransformerConfig.tiny(max_text_len=0, head="softmax", codebook_size=32, video_grid=(3, 2, 2))
    model = Transformer(cfg, rngs=nnx.Rngs(3))
    fwd = _forward_fn(model, "prefix_bidirectional_video")
    tokens = video_token_ids(cfg, np.random.default_rng(3).integers(0, 32, (1, 12)))
    positions = make_positions(cfg, 1)
    base = np.asarray(fwd(tokens, positions))
    np.testing.assert_allclose(fwd(tokens, make_positions(cfg, 1, t_offset=7)), base, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(fwd(tokens, positions.at[..., 1].add(5)), base, atol=2e-5, rtol=1e-5)
    one_frame = positions.at[:, 8:, 0].add(1)  # frame 2 moves away from frames 0 and 1
    assert np.abs(np.asarray(fwd(tokens, one_frame)) - base).max() > 1e-3


# ----------------------------------------------------------------------------- heads


def test_bitgroups_log_probs_normalise_and_factorise():
    cfg = TransformerConfig.tiny()  # K = 6 bits, g = 3: two 8-way groups
    assert (cfg.code_bits, cfg.num_groups, cfg.group_size) == (6, 2, 8)
    logits = jnp.asarray(2.0 * np.random.default_rng(0).standard_normal((3, 5, 2, 8)), jnp.float32)
    full = np.asarray(full_code_log_probs(cfg, logits))  # [3, 5, 64]
    np.testing.assert_allclose(np.exp(full).sum(-1), 1.0, atol=1e-5)
    # Direct: log p(c) = log_softmax(group 0)[c & 7] + log_softmax(group 1)[c >> 3].
    ls = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    c = np.arange(64)
    np.testing.assert_allclose(full, ls[..., 0, c & 7] + ls[..., 1, c >> 3], atol=1e-5)
    codes = jnp.asarray(np.random.default_rng(0).integers(0, 64, (3, 5)))
    np.testing.assert_allclose(
        code_log_prob(cfg, logits, codes),
        np.take_along_axis(full, np.asarray(codes)[..., None], -1)[..., 0],
        atol=1e-5,
    )
    np.testing.assert_array_equal(codes_from_groups(cfg, code_groups(cfg, codes)), codes)
    # Per-group argmax is the joint argmax of the factorised distribution.
    np.testing.assert_array_equal(sample_codes(cfg, None, logits, temperature=0), full.argmax(-1))
    s = sample_codes(cfg, jax.random.key(1), logits)
    assert s.shape == (3, 5) and int(s.min()) >= 0 and int(s.max()) < 64


def test_softmax_head_utilities_and_text_head():
    cfg = TransformerConfig.tiny(head="softmax", codebook_size=32, text_loss=True)
    model = Transformer(cfg, rngs=nnx.Rngs(4))
    tokens = _random_row(cfg, 4, batch=1)
    graphdef, state = nnx.split(model)
    out = jax.jit(lambda s, t, p: nnx.merge(graphdef, s)(t, p)[0])(state, tokens, make_positions(cfg, 1))
    assert out["video"].shape == (1, 12, 32) and out["text"].shape == (1, 12, cfg.text_vocab_size)
    full = full_code_log_probs(cfg, out["video"])
    np.testing.assert_allclose(full, jax.nn.log_softmax(out["video"]), atol=1e-5)
    np.testing.assert_array_equal(
        sample_codes(cfg, None, out["video"], temperature=0), out["video"].argmax(-1)
    )


def test_bitgroups_config_validation():
    with pytest.raises(ValueError, match="power-of-2"):
        TransformerConfig.tiny(codebook_size=48)
    with pytest.raises(ValueError, match="must divide K=6"):
        TransformerConfig.tiny(group_bits=4)
    with pytest.raises(ValueError, match="num_kv_heads"):
        TransformerConfig.tiny(num_kv_heads=3)
    big = TransformerConfig(codebook_size=2**18, group_bits=9, head="bitgroups")
    assert (big.num_groups, big.group_size, big.mask_token_id) == (2, 512, 512 + 2**18)


# ----------------------------------------------------------------------------- GQA


def test_gqa_matches_mha_with_tied_kv_heads():
    gqa_cfg = TransformerConfig.tiny(head="softmax", codebook_size=32)  # 4 heads, 2 kv heads
    mha_cfg = TransformerConfig.tiny(head="softmax", codebook_size=32, num_kv_heads=4)
    gqa = Transformer(gqa_cfg, rngs=nnx.Rngs(5))
    mha = Transformer(mha_cfg, rngs=nnx.Rngs(6))
    # Copy every param; tie k/v: query head h of the GQA model reads kv head h // 2.
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    src = jax.tree.leaves(nnx.state(gqa, nnx.Param), is_leaf=is_var)
    dst = jax.tree.leaves(nnx.state(mha, nnx.Param), is_leaf=is_var)
    tied = 0
    for s, d in zip(src, dst, strict=True):
        value = s[...]
        if value.shape != d[...].shape:
            value, tied = jnp.repeat(value, 2, axis=1), tied + 1
        d[...] = value
    assert tied == 2 * gqa_cfg.num_layers  # wk and wv of every layer
    tokens = _random_row(gqa_cfg, 5)
    positions = make_positions(gqa_cfg, 2)
    np.testing.assert_allclose(
        _forward_fn(mha)(tokens, positions), _forward_fn(gqa)(tokens, positions), atol=1e-5, rtol=1e-5
    )
    cache = gqa.init_cache(2, 20)
    assert cache["layers"][0]["k"].shape == (2, 20, 2, 8) and len(cache["layers"]) == 2
    # jax.nn.dot_product_attention (GQA-aware; XLA on CPU, may be cuDNN on GPU) gives the same result.
    dpa = Transformer(dataclasses.replace(gqa_cfg, attention_impl="dot_product_attention"), rngs=nnx.Rngs(5))
    np.testing.assert_allclose(
        _forward_fn(dpa)(tokens, positions), _forward_fn(gqa)(tokens, positions), atol=1e-5, rtol=1e-5
    )


def _reference_attention(q, k, v, mask):
    """Plain softmax attention, differentiated by JAX: ``q [B, S, H, D]``, ``k, v [B, T, Hkv, D]``."""
    b, s, h, d = q.shape
    g = h // k.shape[2]
    scores = jnp.einsum(
        "bshd,bthd->bhst", q.astype(jnp.float32), jnp.repeat(k, g, axis=2).astype(jnp.float32)
    )
    scores = jnp.where(mask, scores * d**-0.5, -1e30)
    probs = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("bhst,bthd->bshd", probs, jnp.repeat(v, g, axis=2).astype(jnp.float32))


@pytest.mark.parametrize(
    "heads,kv_heads,dtype", [(4, 4, "float32"), (4, 2, "float32"), (6, 1, "float32"), (4, 2, "bfloat16")]
)
def test_attention_custom_vjp_matches_autodiff(heads, kv_heads, dtype):
    from videogen.lm.model import _attend

    keys = jax.random.split(jax.random.key(heads * 10 + kv_heads), 5)
    q = jax.random.normal(keys[0], (2, 7, heads, 8)).astype(dtype)
    k = jax.random.normal(keys[1], (2, 9, kv_heads, 8)).astype(dtype)
    v = jax.random.normal(keys[2], (2, 9, kv_heads, 8)).astype(dtype)
    mask = (jax.random.uniform(keys[3], (2, 1, 7, 9)) > 0.4).at[:, :, 0, :].set(False)  # row 0: no key at all
    weights = jax.random.normal(keys[4], (2, 7, heads, 8))

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32) * weights)

    ours = lambda q, k, v: _attend(q, k, v, mask, "xla")  # noqa: E731
    ref = lambda q, k, v: _reference_attention(q, k, v, mask)  # noqa: E731
    tol = 1e-5 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(
        np.asarray(ours(q, k, v), np.float32), np.asarray(ref(q, k, v)), atol=tol, rtol=tol
    )
    got = jax.grad(loss(ours), argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(loss(ref), argnums=(0, 1, 2))(
        q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32)
    )
    for name, g_ours, g_ref in zip("qkv", got, want):
        assert g_ours.dtype == jnp.dtype(dtype), name
        np.testing.assert_allclose(
            np.asarray(g_ours, np.float32), np.asarray(g_ref), atol=tol * 4, rtol=tol * 4, err_msg=f"d{name}"
        )
    # A query row without any visible key gets no gradient (as autodiff of the select gives).
    assert float(jnp.abs(got[0][:, 0].astype(jnp.float32)).max()) == 0.0


def test_model_gradients_match_dot_product_attention():
    cfg = TransformerConfig.tiny(head="softmax", codebook_size=32)  # GQA: 4 heads, 2 kv heads
    tokens, positions = _random_row(cfg, 3), make_positions(cfg, 2)

    def grads(impl):
        model = Transformer(dataclasses.replace(cfg, attention_impl=impl), rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(model)

        def loss(params):
            logits = nnx.merge(graphdef, params)(tokens, positions, mode="prefix_bidirectional_video")[0]
            return jnp.mean(jax.nn.log_softmax(logits)[..., 3])

        return jax.tree.leaves(jax.grad(loss)(params))

    for ours, ref in zip(grads("xla"), grads("dot_product_attention"), strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- masks


def test_mask_helpers_have_the_right_pattern():
    cfg = TransformerConfig.tiny(video_grid=(2, 1, 2), max_text_len=2)
    # [T0 T1 | f0 f0 f1 f1]
    tokens = _rows(cfg, [[2, 5]], [[1, 2, 3, 4]])
    positions = make_positions(cfg, 1)
    is_video = np.array([[0, 0, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(causal_mask(3)[0, 0], np.tril(np.ones((3, 3), bool)))
    prefix = np.array(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        bool,
    )
    np.testing.assert_array_equal(prefix_bidirectional_video_mask(jnp.asarray(is_video))[0, 0], prefix)
    bidir_text = prefix.copy()
    bidir_text[0, 1] = True
    np.testing.assert_array_equal(
        prefix_bidirectional_video_mask(jnp.asarray(is_video), text_bidirectional=True)[0, 0], bidir_text
    )
    block = np.array(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        bool,
    )
    np.testing.assert_array_equal(block_causal_mask(block_ids(cfg, tokens, positions))[0, 0], block)
    np.testing.assert_array_equal(make_attention_mask(cfg, tokens, positions, "block_causal")[0, 0], block)
    np.testing.assert_array_equal(
        make_attention_mask(cfg, tokens, positions, "causal")[0, 0], np.tril(np.ones((6, 6), bool))
    )
    # Key padding: PAD keys hidden except slot 0; an all-PAD (dropped) caption keeps its null key.
    padded = _rows(cfg, [[2, 0], [0, 0]], [[1, 2, 3, 4]] * 2)
    np.testing.assert_array_equal(key_padding_mask(padded)[:, 0, 0], [[1, 0, 1, 1, 1, 1], [1, 0, 1, 1, 1, 1]])
    m = make_attention_mask(cfg, padded, make_positions(cfg, 2), "prefix_bidirectional_video")
    assert not bool(m[:, 0, :, 1].any()) and bool(m[:, 0, 2:, 0].all())
    with pytest.raises(ValueError, match="mode"):
        make_attention_mask(cfg, tokens, positions, "bogus")


# ----------------------------------------------------------------------------- dtypes, remat, sharding


def test_bf16_compute_is_finite_with_float32_params():
    cfg = TransformerConfig.tiny(dtype="bfloat16")
    model = Transformer(cfg, rngs=nnx.Rngs(7))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    tokens, positions = _random_row(cfg, 7), make_positions(cfg, 2)
    logits = _forward_fn(model)(tokens, positions)
    assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
    graphdef, state = nnx.split(model)
    jaxpr = str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(tokens, positions)[0])(state))
    assert "dot_general" in jaxpr and "bf16" in jaxpr
    assert model.init_cache(1, 8)["layers"][0]["k"].dtype == jnp.bfloat16


def test_remat_policies_appear_in_the_backward_pass():
    tokens = _random_row(TransformerConfig.tiny(), 8)
    positions = make_positions(TransformerConfig.tiny(), 2)

    def grad_jaxpr(remat):
        model = Transformer(TransformerConfig.tiny(remat=remat, num_layers=1), rngs=nnx.Rngs(8))
        graphdef, state = nnx.split(model)
        loss = lambda s: jnp.mean(nnx.merge(graphdef, s)(tokens, positions)[0] ** 2)  # noqa: E731
        return str(jax.make_jaxpr(jax.grad(loss))(state))

    assert "remat" not in grad_jaxpr("none")
    assert "remat" in grad_jaxpr("full")
    dots = grad_jaxpr("dots")
    assert "remat" in dots and "DotsSaveable(only_if_no_batch_dims=True)" in dots
    with pytest.raises(ValueError, match="remat"):
        TransformerConfig.tiny(remat="some")


def test_logical_axis_names_on_every_param():
    cfg = TransformerConfig.tiny(text_loss=True, video_pos_emb=True)
    model = Transformer(cfg, rngs=nnx.Rngs(9))
    allowed = {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp", "norm", "position"}
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable))
    for v in leaves:
        names = v.get_metadata().get("out_sharding")
        assert names is not None and len(names) == v[...].ndim and set(names) <= allowed, names
    meta = lambda v: v.get_metadata()["out_sharding"]  # noqa: E731
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    assert meta(attn.wq) == ("embed", "heads", "head_dim")
    assert meta(attn.wk) == meta(attn.wv) == ("embed", "kv_heads", "head_dim")
    assert meta(attn.wo) == ("heads", "head_dim", "embed")
    assert meta(mlp.w_gate) == meta(mlp.w_up) == ("embed", "mlp") and meta(mlp.w_down) == ("mlp", "embed")
    assert meta(model.embed.text) == meta(model.embed.video) == ("vocab", "embed")
    assert meta(model.final_norm.scale) == ("norm",) and meta(model.video_pos) == ("position", "embed")
    assert param_count(model) == sum(int(np.prod(v[...].shape)) for v in leaves)
    abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))  # traced init: same shapes
    assert [x.shape for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))] == [
        x.shape for x in jax.tree.leaves(nnx.state(model, nnx.Param))
    ]
    rules = dict(DEFAULT_LOGICAL_AXIS_RULES)
    assert rules["activation_batch"] == ("data", "fsdp") and rules["embed"] == "fsdp"
    assert all(rules[n] == "tensor" for n in ("mlp", "heads", "kv_heads", "vocab"))
    assert logical_to_mesh_spec(("embed", "heads", "head_dim")) == PartitionSpec("fsdp", "tensor", None)
    assert logical_to_mesh_spec(
        ("activation_batch", "activation_length", "activation_embed"), mesh_axis_names=("data", "tensor")
    ) == PartitionSpec("data", None, None)
    with nnx.logical_axis_rules(DEFAULT_LOGICAL_AXIS_RULES):
        spec = nnx.get_partition_spec(nnx.state(attn, nnx.Param))["wq"]
    assert tuple(spec.get_value()) == ("fsdp", "tensor", None)


def test_sharded_forward_matches_single_device():
    cfg = TransformerConfig.tiny(head="softmax", codebook_size=32)
    model = Transformer(cfg, rngs=nnx.Rngs(10))
    tokens, positions = _random_row(cfg, 10), make_positions(cfg, 2)
    expected = np.asarray(_forward_fn(model)(tokens, positions))
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    graphdef, state = nnx.split(model)
    shardings = nnx.as_pure(param_shardings(state, mesh))
    pure = jax.device_put(nnx.as_pure(state), shardings)
    assert pure["blocks"][0]["attn"]["wq"].sharding.spec == PartitionSpec("fsdp", "tensor", None)

    def f(pure, tokens, positions):
        s = jax.tree.map(
            lambda v, x: v.replace(x), state, pure, is_leaf=lambda x: isinstance(x, nnx.Variable)
        )
        return nnx.merge(graphdef, s)(tokens, positions)[0]

    with jax.set_mesh(mesh):
        assert "sharding_constraint" in str(jax.make_jaxpr(f)(pure, tokens, positions))
        got = jax.jit(f)(pure, tokens, positions)
    assert "sharding_constraint" not in str(jax.make_jaxpr(f)(pure, tokens, positions))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- flops


def test_flops_per_token_by_hand():
    cfg = TransformerConfig.tiny(
        head="softmax", codebook_size=32, num_layers=2, d_model=32, num_heads=4, num_kv_heads=2, mlp_dim=64
    )
    # Per layer: q 32*32 + k, v 2 * 32*16 + o 32*32 + MLP 3*32*64 = 1024 + 1024 + 1024 + 6144 = 9216.
    n = 2 * 9216 + 32 * 32  # + video head d x C
    assert matmul_param_count(cfg) == n == 19456
    assert flops_per_token(cfg, 100) == 6 * n + 12 * 2 * 32 * 100 / 2
    assert flops_per_token(cfg, 100, causal=False) == 6 * n + 12 * 2 * 32 * 100
    bits = TransformerConfig.tiny(text_loss=True)  # bitgroups head: d x G 2^g = 32 x 16, text head 32 x 16
    assert matmul_param_count(bits) == 2 * 9216 + 32 * 16 + 32 * 16


# ----------------------------------------------------------------------------- position and caption options


_OPTIONS = dict(video_pos_emb=True, rope_video="grid", text_bidirectional=True)


def test_position_options_cached_decode_matches_full_pass():
    """Learned (t, h, w) embeddings, per-axis rotary ladders and a bidirectional caption keep the KV-cached
    decode (whole caption prefilled, then one token at a time) equal to the full pass."""
    cfg = TransformerConfig.tiny(head="softmax", codebook_size=32, video_grid=(2, 2, 3), **_OPTIONS)
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    tokens, positions = _random_row(cfg, 0), make_positions(cfg, 2)
    full = np.asarray(_forward_fn(model)(tokens, positions))
    assert model.video_pos[...].shape == (2 + 2 + 3, cfg.d_model)

    @jax.jit
    def step(state, cache, tok, pos, idx):
        return nnx.merge(graphdef, state)(tok, pos, mode="causal", cache=cache, cache_index=idx)

    prompt = cfg.max_text_len + 2
    logits, cache = step(
        state,
        model.init_cache(2, tokens.shape[1], jnp.float32),
        tokens[:, :prompt],
        positions[:, :prompt],
        jnp.int32(0),
    )
    np.testing.assert_allclose(logits, full[:, :prompt], atol=1e-5, rtol=1e-5)
    for p in range(prompt, tokens.shape[1]):
        logits, cache = step(state, cache, tokens[:, p : p + 1], positions[:, p : p + 1], jnp.int32(p))
        np.testing.assert_allclose(logits[:, 0], full[:, p], atol=1e-5, rtol=1e-5)


def test_text_bidirectional_lets_the_caption_see_itself():
    for bidirectional in (False, True):
        cfg = TransformerConfig.tiny(head="softmax", codebook_size=32, text_bidirectional=bidirectional)
        fwd = _forward_fn(Transformer(cfg, rngs=nnx.Rngs(1)))
        tokens, positions = _random_row(cfg, 1, batch=1), make_positions(cfg, 1)
        changed = tokens.at[0, 2].set(tokens[0, 2] % 11 + 4)  # a later caption token
        moved = np.abs(
            np.asarray(fwd(changed, positions))[:, :2] - np.asarray(fwd(tokens, positions))[:, :2]
        ).max()
        assert (moved > 1e-4) == bidirectional
    with pytest.raises(ValueError, match="text_bidirectional"):
        TransformerConfig.tiny(text_bidirectional=True, text_loss=True)


def test_video_position_embedding_is_absolute():
    """Rotary alone is blind to a shift of every frame index; the learned embeddings are not."""
    for absolute in (False, True):
        cfg = TransformerConfig.tiny(
            max_text_len=0, head="softmax", codebook_size=32, video_grid=(3, 2, 2), video_pos_emb=absolute
        )
        fwd = _forward_fn(Transformer(cfg, rngs=nnx.Rngs(3)), "prefix_bidirectional_video")
        tokens = video_token_ids(cfg, np.random.default_rng(3).integers(0, 32, (1, 12)))
        shift = np.abs(
            np.asarray(fwd(tokens, make_positions(cfg, 1, t_offset=1)))
            - np.asarray(fwd(tokens, make_positions(cfg, 1)))
        ).max()
        assert (shift > 1e-4) == absolute


def test_grid_rope_ladder_spans_each_axis():
    from videogen.lm.model import rope_frequencies

    freq = rope_frequencies(32, 10000.0, "grid", (37, 8, 8))
    for axis, extent in enumerate((37, 8, 8)):
        mine = freq[np.arange(16) % 3 == axis]
        assert mine[0] == pytest.approx(1.0) and mine[-1] == pytest.approx(np.pi / 2 / (4 * extent))
        assert np.all(np.diff(mine) < 0)
    # The shared ladder's fastest w pair turns ~0.32 rad per column; the grid ladder's turns 1 rad.
    shared = rope_frequencies(32, 10000.0)
    assert shared[2] == pytest.approx(10000.0 ** (-4 / 32)) and shared[2] < 0.33
    with pytest.raises(ValueError, match="rope_video"):
        TransformerConfig.tiny(rope_video="spiral")
