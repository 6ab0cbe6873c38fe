"""The tokenizer's train state and update step, which tokenizer/train.py runs and `make bench` / `videogen plan`
time and compile: the config's checks against the mesh, the state's shardings and its creation already sharded,
the jitted update step (reconstruction + quantizer losses, the optional GAN of tokenizer/gan.py, EMA), and the
checkpoint items (model: EMA params + quantizer state; train: params, optimizer state, step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tokenizer import losses as losses_lib
from tokenizer.core import (
    COMPUTE_ONLY_MODEL_KEYS,
    INIT_KEY_IMPL,
    Tokenizer,
    abstract_storable,
    abstract_tokenizer,
    autoencoder_config,
    quantizer_kwargs,
    storable,
    to_float,
    unstore,
)
from tokenizer.gan import (
    disc_logits,
    disc_update,
    gan_config,
    gan_enabled,
    init_disc_state,
    make_disc,
    make_disc_optimizer,
)
from tokenizer.model import LOGICAL_AXIS_RULES, amplify_chroma, check_input_shape
from tokenizer.quantizers import LFQ
from videogen import errors
from videogen.training import checkpointing, loop
from videogen.training import mesh as mesh_lib
from videogen.training.loop import batch_sharding, replicated

# Compiled programs, kept per process (videogen.training.loop.ProgramCache) and keyed by every config entry they
# depend on: train() called again -- a resume with more steps, tests, notebooks -- does not recompile. These
# entries are left out of the key.
PROGRAMS = loop.ProgramCache(
    (
        "steps",
        "seed",
        "batch_size",
        "data",
        "data_threads",
        "eval",
        "log_every",
        "ckpt_every",
        "max_to_keep",
        "quiet",
        "optim.lr",
        "optim.warmup_steps",
        "optim.min_lr_ratio",
    )
)


# ============================================================================================
# 1. The config against the mesh (checked before anything is built)
# ============================================================================================


def check_config(config, mesh) -> None:
    d = config.data
    try:
        ae = autoencoder_config(config)
        check_input_shape(ae, int(d.num_frames), int(d.resolution), int(d.resolution))
    except ValueError as e:  # the config's model against its own quantizer and clip shape: the user's to fix
        raise errors.UsageError(str(e)) from e
    dp = mesh_lib.data_parallel_size(mesh)
    for name, bs in (("batch_size", config.batch_size), ("eval.batch_size", config.eval.batch_size)):
        if bs % dp:
            raise errors.UsageError(
                f"{name}={bs} must be a multiple of the data-parallel size {dp} of mesh {dict(mesh.shape)}; use "
                f"{math.ceil(bs / dp) * dp}, or set --config.mesh.data to a divisor (on CPU, "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N sets the devices)."
            )


# ============================================================================================
# 2. Train state (model + optimizer), born sharded
# ============================================================================================


def state_shardings(config, mesh, tx):
    """Shardings of the train state, from the params' logical axis names and LOGICAL_AXIS_RULES.

    Params (and EMA params) get their logical names mapped to mesh axes (a dim the axes do not divide stays
    unsharded); every optimizer slot that mirrors a param (Adam mu/nu) gets that param's sharding; scalars
    (counts, step) and quantizer state are replicated.
    """
    graphdef, abs_params, abs_rest = abstract_tokenizer(config)
    with nnx.logical_axis_rules(loop.logical_axis_rules(config, LOGICAL_AXIS_RULES)):
        param_sh = nnx.as_pure(nnx.get_named_sharding(abs_params, mesh))
    pure_params = nnx.as_pure(abs_params)
    param_sh = jax.tree.map(
        lambda sh, a: mesh_lib.replicate_indivisible(sh, a.shape, mesh), param_sh, pure_params
    )
    rep = replicated(mesh)
    shardings = {
        "step": rep,
        "params": param_sh,
        "opt_state": loop.opt_shardings(tx, pure_params, param_sh, mesh),
        "ema": param_sh,
        "rest": jax.tree.map(lambda _: rep, nnx.as_pure(abs_rest)),
    }
    if gan_enabled(config):  # the discriminator (tokenizer/gan.py) is small: replicated, data-parallel
        abs_disc = jax.eval_shape(lambda: init_disc_state(config, 0))
        shardings["disc"] = jax.tree.map(lambda _: rep, abs_disc)
    return graphdef, shardings


def init_state(config, mesh, tx, shardings):
    """Creates params, quantizer state, optimizer state and EMA directly in their shardings (one jit)."""
    ae_config = autoencoder_config(config)
    q_kw = quantizer_kwargs(config)

    def init(seed):
        tok = Tokenizer(ae_config, q_kw, rngs=nnx.Rngs(jax.random.key(seed, impl=INIT_KEY_IMPL)))
        _, params, rest = nnx.split(tok, nnx.Param, ...)
        params, rest = nnx.as_pure(params), nnx.as_pure(rest)
        ema = jax.tree.map(lambda p: p + 0.0, params)  # a distinct buffer: the step donates both
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": tx.init(params),
            "ema": ema,
            "rest": rest,
        }
        if gan_enabled(config):
            state["disc"] = init_disc_state(config, seed + 1)
        return state

    fn = PROGRAMS.get(PROGRAMS.key(config, mesh, "init"), lambda: jax.jit(init, out_shardings=shardings))
    return fn(int(config.seed))


def init_disc_sharded(config, shardings) -> dict:
    """A fresh discriminator state in its (replicated) shardings: for a GAN switched on at a resume."""
    return jax.jit(lambda: init_disc_state(config, int(config.seed) + 1), out_shardings=shardings["disc"])()


def abstract_state(config, mesh, tx, shardings):
    """The train state as ``jax.ShapeDtypeStruct`` leaves carrying ``shardings`` (the restore target)."""
    return loop.abstract_like(jax.eval_shape(lambda: init_state(config, mesh, tx, shardings)), shardings)


# ============================================================================================
# 3. Update step
# ============================================================================================


def make_train_step(config, graphdef, tx, shardings, mesh):
    """The jitted step ``(state, video uint8, lr) -> (state, metrics)``; ``state``'s buffers are donated.

    Loss = ``recon_weight * L1|L2(decode(quantize(encode(x))), x)`` (pixels weighted by the target's edges
    with ``loss.edge_weight > 0``, see :mod:`tokenizer.losses`) + the quantizer's aux loss (LFQ
    entropy + commitment, VQ commitment/codebook, FSQ none). With ``loss.entropy_anneal_steps > 0``
    the LFQ entropy weight moves linearly from ``loss.entropy_weight_start`` to
    ``quantizer.lfq.entropy_weight`` over that many steps. Updates are ``lr * tx(grads)`` (see
    :func:`make_optimizer`). EMA of params with decay ``min(ema_decay, (1 + step) / (10 + step))``
    (the warm-up keeps early EMA weights usable).
    """
    key = PROGRAMS.key(config, mesh, "train_step")
    if key in PROGRAMS.programs:
        return PROGRAMS.programs[key]
    recon_kind = config.loss.recon
    if recon_kind not in ("l1", "l2"):
        raise ValueError(f"loss.recon={recon_kind!r}: must be 'l1' or 'l2'.")
    recon_weight = float(config.loss.recon_weight)
    edge_weight = float(config.loss.get("edge_weight", 0.0))
    if edge_weight < 0:
        raise ValueError(f"loss.edge_weight={edge_weight}: must be >= 0 (0 = plain mean over pixels).")
    anneal_steps = int(config.loss.get("entropy_anneal_steps", 0))
    w_start = float(config.loss.get("entropy_weight_start", 0.0))
    ema_decay = float(config.ema_decay)
    chroma_gain = float(autoencoder_config(config).chroma_gain)
    perceptual_weight = float(config.loss.get("perceptual_weight", 0.0))
    perceptual_params = losses_lib.load_perceptual_params() if perceptual_weight > 0 else None
    gan = gan_config(config)
    use_gan = gan_enabled(config)
    disc_graphdef = nnx.split(make_disc(config, 0))[0] if use_gan else None
    disc_tx = make_disc_optimizer(config) if use_gan else None

    def train_step(state, video, lr):
        step = state["step"]
        x = to_float(video)
        # 0 before gan.start_step: the decoder first learns to reconstruct; then the adversarial terms.
        gan_on = (step >= int(gan.start_step)).astype(jnp.float32) if use_gan else None

        def loss_fn(params):
            tok = nnx.merge(graphdef, params, state["rest"])
            z = tok.autoencoder.encode(x)
            z_q, _, aux = tok.quantizer(z, train=True)
            x_rec = tok.autoencoder.decode(z_q)
            # In the autoencoder's working colour space (chroma scaled by model.chroma_gain; identity at 1):
            # there the colour modes weigh as much in the loss as in the encoder's input.
            err = amplify_chroma(x_rec - x, chroma_gain)
            per_pixel = jnp.abs(err) if recon_kind == "l1" else jnp.square(err)
            recon = losses_lib.edge_weighted_mean(per_pixel, x, edge_weight)
            aux_loss = aux["loss"]
            if anneal_steps > 0 and isinstance(tok.quantizer, LFQ):
                frac = jnp.minimum(step.astype(jnp.float32) / anneal_steps, 1.0)
                w = w_start + (tok.quantizer.entropy_weight - w_start) * frac
                aux_loss = aux_loss + (w - tok.quantizer.entropy_weight) * aux["entropy_loss"]
                aux = {**aux, "entropy_weight": w}
            loss = recon_weight * recon + aux_loss
            extra = {}
            if perceptual_params is not None:
                extra["perceptual_loss"] = losses_lib.perceptual_loss(perceptual_params, x_rec, x)
                loss = loss + perceptual_weight * extra["perceptual_loss"]
            if use_gan:
                extra["g_loss"] = losses_lib.hinge_g_loss(
                    disc_logits(disc_graphdef, state["disc"]["params"], x_rec)
                )
                loss = loss + float(gan.weight) * gan_on * extra["g_loss"]
            mse = jnp.mean(jnp.square(jnp.clip(x_rec, -1, 1) - x))
            metrics = {
                "loss": loss,
                "recon_loss": recon,
                "aux_loss": aux_loss,
                **extra,
                "psnr": 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10)),
                **{f"q/{k}": v for k, v in aux.items() if k != "loss"},
            }
            # Quantizer state written during the forward (VQ EMA codebook, restarts, rng counter).
            _, params_now, rest = nnx.split(tok, nnx.Param, ...)
            return loss, (metrics, nnx.as_pure(params_now), nnx.as_pure(rest), x_rec)

        grads, (metrics, params, rest, x_rec) = jax.grad(loss_fn, has_aux=True)(state["params"])
        new_disc = None
        if use_gan:
            new_disc, d_metrics = disc_update(
                gan, disc_graphdef, disc_tx, state["disc"], x, jax.lax.stop_gradient(x_rec), gan_on
            )
            metrics.update(d_metrics)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        params = optax.apply_updates(params, jax.tree.map(lambda u: lr * u, updates))
        ema, decay = loop.ema_update(state["ema"], params, step, ema_decay)
        metrics.update(grad_norm=optax.tree.norm(grads), lr=lr, ema_decay=decay)
        new_state = {"step": step + 1, "params": params, "opt_state": opt_state, "ema": ema, "rest": rest}
        if new_disc is not None:
            new_state["disc"] = new_disc
        return new_state, metrics

    rep = replicated(mesh)
    step_fn = jax.jit(
        train_step,
        in_shardings=(shardings, batch_sharding(mesh), rep),
        out_shardings=(shardings, rep),
        donate_argnums=0,
    )
    PROGRAMS.programs[key] = step_fn
    return step_fn


# ============================================================================================
# 4. Checkpoints (orbax, videogen/training/checkpointing.py): items model / train / pipeline / integrity (fingerprints)
# ============================================================================================


def resume_keys(config) -> list[str]:
    """Config entries that fix the checkpoint's array shapes (a resumed run must keep them)."""
    keys = [f"model.{k}" for k in config.model if k not in COMPUTE_ONLY_MODEL_KEYS]
    return keys + ["quantizer.kind", f"quantizer.{config.quantizer.kind}"]


def _split_items(state) -> tuple[dict, dict]:
    """The train state as the two orbax items: what inference needs, and what only training needs."""
    model = {"ema": state["ema"], "rest": state["rest"]}
    train = {"step": state["step"], "params": state["params"], "opt_state": state["opt_state"]}
    if "disc" in state:  # GAN runs: the discriminator resumes too
        train["disc"] = state["disc"]
    return model, train


def save_checkpoint(mngr, step: int, state, pipeline_state: dict, *, force: bool = False) -> bool:
    model, train_item = _split_items(state)
    return checkpointing.save(
        mngr, step, model=storable(model), train=train_item, pipeline_state=pipeline_state, force=force
    )


def restore_checkpoint(
    mngr,
    step: int,
    abstract_state,
    *,
    init_disc: Callable[[], dict] | None = None,
    log: Callable[[str], None] = print,
):
    """Restores the whole train state into the shardings of ``abstract_state`` (any mesh: the arrays come back
    with the shardings it carries), plus the pipeline JSON; fingerprints verified.

    The GAN may be switched on or off between runs of one workdir (the usual recipe: reconstruct first, add
    the adversarial loss to a trained autoencoder later). A checkpoint without a discriminator, resumed
    with the GAN on, gets a fresh one from ``init_disc``; a checkpoint's discriminator, resumed with the GAN
    off, is read (so the fingerprint still checks) and left out of the state, with a line saying so."""
    model, train_item = _split_items(abstract_state)
    saved_train_keys = set(mngr.item_metadata(step)["train"].keys())
    want_disc, has_disc = "disc" in train_item, "disc" in saved_train_keys
    if want_disc and not has_disc:
        if init_disc is None:
            raise ValueError(f"checkpoint step {step} has no discriminator and no init_disc was given")
        train_item = {k: v for k, v in train_item.items() if k != "disc"}
    elif has_disc and not want_disc:
        replicated = abstract_state["step"].sharding
        train_item = {
            **train_item,
            "disc": jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=replicated),
                mngr.item_metadata(step)["train"]["disc"],
            ),
        }
    r_model, r_train, pipe = checkpointing.restore(
        mngr, step, model=abstract_storable(model), train=train_item
    )
    state = {**r_train, "ema": r_model["ema"], "rest": unstore(r_model["rest"], abstract_state["rest"])}
    if want_disc and not has_disc:
        state["disc"] = init_disc()
        log(
            f"[tokenizer] checkpoint step {step} was trained without the GAN: its discriminator starts fresh now "
            "(loss.gan.start_step counts from step 0 of the run, not from this resume)."
        )
    elif has_disc and not want_disc:
        del state["disc"]
        log(
            f"[tokenizer] the GAN is off (loss.gan.weight=0) but checkpoint step {step} has a discriminator: it is "
            "not used, and checkpoints saved from now on will not have it."
        )
    return state, pipe
