"""The LM's train state and update step, which videogen/train.py runs and `make bench` / `videogen plan` time and
compile: the batch against the mesh, the state's shardings (params and Adam slots from the logical axis rules)
and its creation already sharded, the jitted update and eval steps (sequences, masks and losses from
videogen/lm/objectives.py; gradient accumulation; EMA), and the checkpoint items (model: EMA params; train:
params, optimizer state, step) with the config entries a resume must keep.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tokenizer.core import INIT_KEY_IMPL
from videogen.errors import UsageError
from videogen.lm.core import abstract_model, check_objective
from videogen.lm.model import DEFAULT_LOGICAL_AXIS_RULES, Transformer, param_shardings
from videogen.lm.objectives import (
    build_sequences,
    continuation_kwargs,
    loss_terms,
    mask_kwargs,
    motion_emphasis,
    text_targets,
)
from videogen.training import checkpointing, loop
from videogen.training import mesh as mesh_lib
from videogen.training.loop import batch_sharding, replicated

# Compiled programs, kept per process (videogen.training.loop.ProgramCache) and keyed by every config entry they
# depend on, so train() called again (a resume, tests) does not recompile. These entries are left out of the key.
PROGRAMS = loop.ProgramCache(
    (
        "steps",
        "batch_size",
        "data",
        "data_threads",
        "eval",
        "sample",
        "log_every",
        "ckpt_every",
        "code_cache",
        "max_to_keep",
        "quiet",
        "peak_flops",
        "tokenizer_workdir",
        "text.num_captions",
        "optim.lr",
        "optim.warmup_steps",
        "optim.min_lr_ratio",
    )
)


def axis_rules(config) -> tuple:
    return loop.logical_axis_rules(config, DEFAULT_LOGICAL_AXIS_RULES)


@contextlib.contextmanager
def sharding_context(mesh, rules):
    """Activation constraints (with_logical_constraint) are traced only under a set mesh + rules."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        yield


# ============================================================================================
# 1. The batch against the mesh (checked before anything is built)
# ============================================================================================


def check_batch(config, mesh) -> None:
    dp = mesh_lib.data_parallel_size(mesh)
    unit = dp * int(config.get("grad_accum_steps", 1))
    if int(config.batch_size) % unit:
        raise UsageError(
            f"batch_size={config.batch_size} must be a multiple of data-parallel size {dp} x "
            f"grad_accum_steps={config.get('grad_accum_steps', 1)} (mesh {dict(mesh.shape)}): use "
            f"{-(-int(config.batch_size) // unit) * unit}, or change config.mesh / grad_accum_steps."
        )


# ============================================================================================
# 2. Train state (model + optimizer), born sharded
# ============================================================================================


def state_shardings(tcfg, mesh, tx, rules):
    """Params (and EMA) from their logical names through ``rules``; Adam slots like their param;
    optimizer scalars and the step replicated."""
    graphdef, abs_params, abs_rest = abstract_model(tcfg)
    param_sh = nnx.as_pure(param_shardings(abs_params, mesh, rules))
    opt_sh = loop.opt_shardings(tx, nnx.as_pure(abs_params), param_sh, mesh)
    rep = replicated(mesh)
    return (
        graphdef,
        nnx.as_pure(abs_rest),
        {"step": rep, "params": param_sh, "opt_state": opt_sh, "ema": param_sh},
    )


def init_state(tcfg, tx, shardings, seed: int, key=None):
    """Params, optimizer state and EMA created directly in their shardings (one jit)."""

    def init(seed):
        model = Transformer(tcfg, rngs=nnx.Rngs(jax.random.key(seed, impl=INIT_KEY_IMPL)))
        params = nnx.as_pure(nnx.state(model, nnx.Param))
        return {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": tx.init(params),
            "ema": jax.tree.map(lambda p: p + 0.0, params),
        }

    if key is None:
        return jax.jit(init, out_shardings=shardings)(seed)
    return PROGRAMS.get(key, lambda: jax.jit(init, out_shardings=shardings))(seed)


def describe_shardings(state, shardings) -> str:
    """Compact table: every param's shape and sharding, with its optimizer slots' shardings."""
    return mesh_lib.describe_shardings({**state, "rest": {}}, shardings)


# ============================================================================================
# 3. Update and eval steps
# ============================================================================================


def make_train_step(config, tcfg, graphdef, rest, tx, shardings, mesh):
    """Jitted ``(state, codes, text_ids, lr) -> (state, metrics)``; the state is donated.

    The step's randomness (caption drop, MaskGIT masks) is ``fold_in(key(seed), step)``: a resumed
    run draws what the uninterrupted run would have.
    """
    objective = check_objective(config.objective)
    accum = int(config.get("grad_accum_steps", 1))
    if accum < 1 or int(config.batch_size) % accum:
        raise ValueError(f"grad_accum_steps={accum} must be >= 1 and divide batch_size={config.batch_size}.")
    key = PROGRAMS.key(config, mesh, "train_step", tcfg)
    if key in PROGRAMS.programs:
        return PROGRAMS.programs[key]
    drop_prob = float(config.text.drop_prob)
    masks = mask_kwargs(config)
    ema_decay = float(config.ema_decay)
    seed = int(config.seed)
    cont = continuation_kwargs(config)
    text_weight = float(config.get("text_loss_weight", 0.0)) if tcfg.text_loss else 0.0
    motion_weight = float(config.get("motion_weight", 0.0))

    def train_step(state, codes, text_ids, lr):
        step = state["step"]
        key = jax.random.fold_in(jax.random.key(seed), step)
        tokens, positions, targets, weights = build_sequences(
            tcfg, objective, codes, text_ids, key, drop_prob=drop_prob, **masks, **cont
        )
        if motion_weight:  # training only: eval losses stay the plain mean NLL, comparable across runs
            weights = weights * motion_emphasis(tcfg, targets, motion_weight)
        total = jnp.maximum(jnp.sum(weights), 1.0)
        text_total = jnp.maximum(jnp.sum(text_targets(tcfg, tokens)[1]), 1.0)  # whole batch, like `total`

        def loss_fn(params, tok, pos, tgt, w):
            model = nnx.merge(graphdef, params, rest)
            nll_sum, correct, text_nll_sum = loss_terms(model, tcfg, objective, tok, pos, tgt, w)
            return nll_sum / total + text_weight * text_nll_sum / text_total, (correct, text_nll_sum)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        if accum == 1:
            (loss, (correct, text_nll)), grads = grad_fn(state["params"], tokens, positions, targets, weights)
        else:
            bs = codes.shape[0]

            def micro(x):  # [B, ...] -> [A, B/A, ...]; microbatch a takes rows a, a + A, ...
                return jnp.swapaxes(x.reshape((bs // accum, accum) + x.shape[1:]), 0, 1)

            def body(carry, mb):
                g_acc, l_acc, c_acc, t_acc = carry
                (l, (c, t)), g = grad_fn(state["params"], *mb)
                return (jax.tree.map(jnp.add, g_acc, g), l_acc + l, c_acc + c, t_acc + t), None

            zeros = jax.tree.map(jnp.zeros_like, state["params"])
            mbs = tuple(micro(x) for x in (tokens, positions, targets, weights))
            (grads, loss, correct, text_nll), _ = jax.lax.scan(body, (zeros, 0.0, 0.0, 0.0), mbs)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], jax.tree.map(lambda u: lr * u, updates))
        ema, _ = loop.ema_update(state["ema"], params, step, ema_decay)
        metrics = {
            "loss": loss,
            "accuracy": correct / total,
            "grad_norm": optax.tree.norm(grads),
            "lr": lr,
            "scored_frac": total / weights.size,
        }
        if tcfg.text_loss:  # "loss" is then video NLL + text_weight * text NLL
            metrics["text_loss"] = text_nll / text_total
        return {"step": step + 1, "params": params, "opt_state": opt_state, "ema": ema}, metrics

    rep, bsh = replicated(mesh), batch_sharding(mesh)
    fn = jax.jit(
        train_step, in_shardings=(shardings, bsh, bsh, rep), out_shardings=(shardings, rep), donate_argnums=0
    )
    PROGRAMS.programs[key] = fn
    return fn


def make_eval_step(config, tcfg, graphdef, rest, mesh):
    """Jitted ``(params, codes, text_ids, key) -> (nll_sum, correct_sum, weight_sum)`` (no caption drop)."""
    objective = check_objective(config.objective)
    masks = mask_kwargs(config)
    cont = continuation_kwargs(config)

    def eval_step(params, codes, text_ids, key):
        tok, pos, tgt, w = build_sequences(
            tcfg, objective, codes, text_ids, key, drop_prob=0.0, **masks, **cont
        )
        nll, correct, _ = loss_terms(nnx.merge(graphdef, params, rest), tcfg, objective, tok, pos, tgt, w)
        return nll, correct, jnp.sum(w)

    return PROGRAMS.get(PROGRAMS.key(config, mesh, "eval_step", tcfg), lambda: jax.jit(eval_step))


# ============================================================================================
# 4. Checkpoints (orbax, videogen/training/checkpointing.py): items model (EMA) / train / pipeline / integrity
# ============================================================================================


def save_checkpoint(mngr, step: int, state, pipeline_state: dict, *, force: bool = False) -> bool:
    return checkpointing.save(
        mngr,
        step,
        model={"ema": state["ema"]},
        train={k: state[k] for k in ("step", "params", "opt_state")},
        pipeline_state=pipeline_state,
        force=force,
    )


def restore_checkpoint(mngr, step: int, abstract_state):
    """The train state in the shardings that ``abstract_state``'s leaves carry (any mesh), and the pipeline
    JSON; fingerprints verified (videogen.training.checkpointing.restore)."""
    r_model, r_train, pipe = checkpointing.restore(
        mngr,
        step,
        model={"ema": abstract_state["ema"]},
        train={k: abstract_state[k] for k in ("step", "params", "opt_state")},
    )
    return {**r_train, "ema": r_model["ema"]}, pipe


def abstract_state(tcfg, tx, shardings, seed: int = 0):
    """The train state as ``jax.ShapeDtypeStruct`` leaves carrying ``shardings`` (the restore target)."""
    return loop.abstract_like(jax.eval_shape(lambda: init_state(tcfg, tx, shardings, int(seed))), shardings)


# Config entries that fix the checkpoint's array shapes: a resumed run must keep them.
RESUME_KEYS = tuple(
    f"model.{k}"
    for k in "num_layers d_model num_heads num_kv_heads mlp_dim head group_bits codebook_size video_grid qk_norm "
    "head_dim text_loss video_pos_emb rope_video text_bidirectional scan_layers".split()
) + ("text.vocab_size", "text.max_length", "objective")
RESUME_HINTS = {
    k: "set by the tokenizer: tokenizer_workdir now points at a tokenizer other than the one this LM "
    "was trained on; point it back, or start a new --workdir"
    for k in ("model.codebook_size", "model.video_grid", "model.group_bits")
}
RESUME_HINTS["model.scan_layers"] = (
    "stacked and per-layer blocks are different checkpoint layouts (videogen.lm.model.stack_layer_params converts)"
)
# Same shapes, but another attention mask and loss: resuming would train (and sample) the model as what it is not.
RESUME_HINTS["objective"] = "each objective has its own attention mask and loss"
