"""``scan_layers=True`` (videogen.lm.model): blocks stacked on a 'layers' axis and run with nnx.scan give the
unrolled model's values (every mask mode, KV-cached decoding, gradients with remat), convert both ways
(stack_layer_params / unstack_layer_params), shard with the 'layers' axis replicated, and compile one block
instead of num_layers copies."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from videogen.lm.model import (
    DEFAULT_LOGICAL_AXIS_RULES,
    LAYER_AXIS,
    MASK_MODES,
    Transformer,
    TransformerConfig,
    make_positions,
    param_count,
    param_shardings,
    stack_layer_params,
    unstack_layer_params,
    video_token_ids,
    weight_decay_mask,
)
from videogen.training import mesh as mesh_lib

CFG = TransformerConfig.tiny(num_layers=3, video_grid=(3, 2, 2), text_loss=True)
_is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731


def _scanned(cfg: TransformerConfig) -> TransformerConfig:
    return dataclasses.replace(cfg, scan_layers=True)


def _rows(cfg, seed: int, batch: int = 2) -> jax.Array:
    """[text | video] ids with BOS, a PAD key (row 0) and a few [MASK] tokens."""
    rng = np.random.default_rng(seed)
    text = rng.integers(4, cfg.text_vocab_size, (batch, cfg.max_text_len))
    text[:, 0] = 2
    text[0, -1] = cfg.text_pad_id
    codes = rng.integers(0, cfg.codebook_size, (batch, cfg.num_video_tokens))
    tokens = jnp.concatenate([jnp.asarray(text, jnp.int32), video_token_ids(cfg, codes)], axis=1)
    return tokens.at[1, -3:].set(cfg.mask_token_id)


def _pair(cfg=CFG, seed=0):
    """(unrolled model, scanned model with the unrolled params converted in). The scanned model starts from
    another seed, so its values come only from the conversion."""
    unrolled = Transformer(cfg, rngs=nnx.Rngs(seed))
    scanned = Transformer(_scanned(cfg), rngs=nnx.Rngs(seed + 1))
    nnx.update(scanned, stack_layer_params(nnx.state(unrolled)))
    return unrolled, scanned


def _forward(model, mode):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, t, p: nnx.merge(graphdef, s)(t, p, mode=mode)[0]), state


def _close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5), a, b)


def test_same_init_layout_metadata_and_round_trip():
    unrolled = Transformer(CFG, rngs=nnx.Rngs(0))
    scanned = Transformer(_scanned(CFG), rngs=nnx.Rngs(0))
    assert param_count(scanned) == param_count(unrolled)
    stacked = stack_layer_params(nnx.state(unrolled, nnx.Param))
    got = nnx.state(scanned, nnx.Param)
    # same rng draws: a scanned model is the stacked unrolled one, values and out_sharding names alike
    assert jax.tree.structure(got) == jax.tree.structure(stacked)
    for a, b in zip(jax.tree.leaves(got, is_leaf=_is_var), jax.tree.leaves(stacked, is_leaf=_is_var)):
        np.testing.assert_array_equal(a[...], b[...])
        assert a.get_metadata()["out_sharding"] == b.get_metadata()["out_sharding"]
    wq = scanned.blocks.attn.wq
    assert wq[...].shape == (3, 32, 4, 8)
    assert wq.get_metadata()["out_sharding"] == (LAYER_AXIS, "embed", "heads", "head_dim")
    assert scanned.blocks.attn_norm.scale.get_metadata()["out_sharding"] == (LAYER_AXIS, "norm")
    # round trip, on a state (Variables and their names) and on a checkpoint's pure dict (str layer keys)
    back = unstack_layer_params(got)
    assert jax.tree.structure(back) == jax.tree.structure(nnx.state(unrolled, nnx.Param))
    for a, b in zip(
        jax.tree.leaves(back, is_leaf=_is_var),
        jax.tree.leaves(nnx.state(unrolled, nnx.Param), is_leaf=_is_var),
    ):
        np.testing.assert_array_equal(a[...], b[...])
        assert a.get_metadata()["out_sharding"] == b.get_metadata()["out_sharding"]
    pure = nnx.as_pure(nnx.state(unrolled, nnx.Param))
    pure = {**pure, "blocks": {str(k): v for k, v in pure["blocks"].items()}}
    _close(stack_layer_params(pure), nnx.to_pure_dict(got))
    assert set(unstack_layer_params(stack_layer_params(pure))["blocks"]) == {0, 1, 2}
    # weight decay: matrices only, the stacked norm scales [L, d] excluded as their [d] per-layer copies
    mask_u = stack_layer_params(weight_decay_mask(nnx.to_pure_dict(nnx.state(unrolled, nnx.Param))))
    mask_s = weight_decay_mask(nnx.to_pure_dict(got))
    assert all(jax.tree.leaves(jax.tree.map(lambda u, m: bool(np.all(u == m)), mask_u, mask_s)))
    assert not mask_s["blocks"]["attn_norm"]["scale"] and mask_s["blocks"]["attn"]["wq"]


@pytest.mark.parametrize("mode", MASK_MODES)
def test_logits_match_in_every_mask_mode(mode):
    unrolled, scanned = _pair()
    tokens, positions = _rows(CFG, 1), make_positions(CFG, 2)
    f_u, s_u = _forward(unrolled, mode)
    f_s, s_s = _forward(scanned, mode)
    want, got = f_u(s_u, tokens, positions), f_s(s_s, tokens, positions)
    assert set(got) == {"video", "text"}
    _close(got, want)


@pytest.mark.parametrize("remat", ["dots", "full"])
def test_gradients_match_with_remat_per_layer(remat):
    """Scanned + remat (per layer, inside the scan) has the unrolled model's gradients, stacked."""
    unrolled, scanned = _pair(dataclasses.replace(CFG, num_layers=2), seed=4)
    cfg_r = _scanned(dataclasses.replace(CFG, num_layers=2, remat=remat))
    scanned_r = Transformer(cfg_r, rngs=nnx.Rngs(9))
    nnx.update(scanned_r, nnx.state(scanned))
    tokens, positions = _rows(CFG, 4), make_positions(CFG, 2)

    def grads(model):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(p):
            out = nnx.merge(graphdef, p, rest)(tokens, positions, mode="block_causal")[0]
            return jnp.mean(out["video"] ** 2) + jnp.mean(out["text"] ** 2)

        jaxpr = str(jax.make_jaxpr(jax.grad(loss))(params))
        return nnx.as_pure(jax.jit(jax.grad(loss))(params)), jaxpr

    g_u, _ = grads(unrolled)
    g_s, jaxpr = grads(scanned_r)
    assert "scan" in jaxpr and "remat" in jaxpr
    _close(g_s, stack_layer_params(g_u))


def test_kv_cached_decoding_matches_unrolled():
    """Causal prefill + one-token decode steps, then MaskGIT on the prefilled text: the scanned model's
    logits and its stacked cache equal the unrolled model's."""
    unrolled, scanned = _pair(seed=2)
    tokens, positions = _rows(CFG, 2), make_positions(CFG, 2)
    seq, text_len = tokens.shape[1], CFG.max_text_len

    def stepper(model, mode):
        graphdef, state = nnx.split(model)
        f = jax.jit(lambda s, c, t, p, i: nnx.merge(graphdef, s)(t, p, mode=mode, cache=c, cache_index=i))
        return lambda c, a, b: f(state, c, tokens[:, a:b], positions[:, a:b], jnp.int32(a))

    caches, logits = {}, {}
    for name, model in (("u", unrolled), ("s", scanned)):
        step = stepper(model, "causal")
        cache = model.init_cache(2, seq, jnp.float32)
        outs = []
        for a, b in [(0, text_len + 2)] + [(p, p + 1) for p in range(text_len + 2, seq)]:
            out, cache = step(cache, a, b)
            outs.append(out["video"])
        maskgit = stepper(model, "prefix_bidirectional_video")
        text_cache = model.init_cache(2, seq, jnp.float32)
        _, text_cache = stepper(model, "causal")(text_cache, 0, text_len)
        mg, _ = maskgit(text_cache, text_len, seq)
        caches[name], logits[name] = cache, (jnp.concatenate(outs, axis=1), mg["video"])
    assert caches["s"]["layers"]["k"].shape == (3, 2, seq, CFG.num_kv_heads, CFG.resolved_head_dim)
    assert isinstance(caches["u"]["layers"], list)
    _close(logits["s"], logits["u"])
    stacked_u = {kv: jnp.stack([layer[kv] for layer in caches["u"]["layers"]]) for kv in ("k", "v")}
    _close(caches["s"]["layers"], stacked_u)


def test_sharding_leaves_the_layer_axis_replicated():
    """'layers' has no logical axis rule: the stacked axis is unsplit, the rest as in the unrolled model;
    the sharded scanned forward equals the single-device one."""
    assert LAYER_AXIS not in dict(DEFAULT_LOGICAL_AXIS_RULES)
    cfg = dataclasses.replace(CFG, num_layers=2, text_loss=False)
    _, scanned = _pair(cfg, seed=5)
    tokens, positions = _rows(cfg, 5), make_positions(cfg, 2)
    f, state = _forward(scanned, "causal")
    expected = f(state, tokens, positions)
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    shardings = nnx.as_pure(param_shardings(state, mesh))
    assert shardings["blocks"]["attn"]["wq"].spec == PartitionSpec(None, "fsdp", "tensor", None)
    assert shardings["blocks"]["mlp"]["w_down"].spec == PartitionSpec(None, "tensor", "fsdp")
    pure = jax.device_put(nnx.as_pure(state), shardings)
    placed = jax.tree.map(lambda v, x: v.replace(x), state, pure, is_leaf=_is_var)
    with jax.set_mesh(mesh), nnx.logical_axis_rules(DEFAULT_LOGICAL_AXIS_RULES):
        got = f(placed, tokens, positions)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_scan_compiles_one_block_not_num_layers():
    """The lowered forward of a 12-layer scanned model is as big as a 2-layer one's and several times
    smaller than the unrolled 12-layer program (fails if the scan were unrolled)."""
    tokens = _rows(CFG, 6)

    def n_ops(cfg):
        model = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(model)
        f = lambda s: nnx.merge(graphdef, s)(tokens, make_positions(cfg, 2), mode="causal")[0]  # noqa: E731
        return jax.jit(f).lower(state).as_text().count(" = ")

    base = dataclasses.replace(CFG, num_layers=12, text_loss=False)
    unrolled, scanned = n_ops(base), n_ops(_scanned(base))
    assert n_ops(_scanned(dataclasses.replace(base, num_layers=2))) == scanned
    assert unrolled > 4 * scanned, (unrolled, scanned)
