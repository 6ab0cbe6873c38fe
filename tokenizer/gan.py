"""The tokenizer's optional GAN (``loss.gan``): the discriminator's config, its state (params, optimizer, LeCAM
EMAs) and its update step. The discriminator and the losses are in tokenizer/losses.py; tokenizer/train.py adds
the generator term to its loss and calls :func:`disc_update` inside its jitted step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from tokenizer import losses as losses_lib
from tokenizer.core import INIT_KEY_IMPL
from tokenizer.losses import Discriminator3D
from videogen.training.config import to_plain

__all__ = [
    "disc_logits",
    "disc_update",
    "gan_config",
    "gan_enabled",
    "init_disc_state",
    "make_disc",
    "make_disc_optimizer",
]


def gan_config(config) -> ml_collections.ConfigDict:
    """``config.loss.gan`` over its defaults (weight 0: off)."""
    g = ml_collections.ConfigDict(
        {
            "weight": 0.0,
            "start_step": 0,
            "disc_channels": 32,
            "disc_channel_multipliers": (1, 2, 4, 4),
            "lecam_weight": 0.001,
            "lecam_decay": 0.999,
            "r1_weight": 0.0,
            "lr": 1e-4,
            "b1": 0.0,
            "b2": 0.99,
        }
    )
    g.update(to_plain(config.loss.get("gan", {})))
    return g


def gan_enabled(config) -> bool:
    return float(gan_config(config).weight) > 0


def make_disc(config, seed: int) -> Discriminator3D:
    g = gan_config(config)
    return Discriminator3D(
        int(g.disc_channels),
        tuple(g.disc_channel_multipliers),
        rngs=nnx.Rngs(jax.random.key(seed, impl=INIT_KEY_IMPL)),
    )


def make_disc_optimizer(config) -> optax.GradientTransformation:
    g = gan_config(config)
    return optax.adam(float(g.lr), b1=float(g.b1), b2=float(g.b2))


def init_disc_state(config, seed) -> dict:
    params = nnx.as_pure(nnx.state(make_disc(config, seed), nnx.Param))
    return {
        "params": params,
        "opt_state": make_disc_optimizer(config).init(params),
        "lecam": {"real": jnp.zeros((), jnp.float32), "fake": jnp.zeros((), jnp.float32)},
    }


def disc_logits(graphdef, params, clips):
    """The discriminator (``graphdef`` of :func:`make_disc`) with ``params`` on ``clips``."""
    return nnx.merge(graphdef, params)(clips)


def disc_update(gan, graphdef, tx, disc: dict, real, fake, gan_on) -> tuple[dict, dict]:
    """One discriminator step: hinge + LeCAM (+ R1); no update before gan.start_step (``gan_on`` 0).

    ``gan``: :func:`gan_config`; ``tx``: :func:`make_disc_optimizer`; ``disc``: the state of
    :func:`init_disc_state`; ``fake``: the reconstructions, gradient stopped. Returns the new state and the
    metrics d_loss, lecam_loss, r1, d_real, d_fake."""

    def d_loss_fn(dp):
        real_logits, fake_logits = disc_logits(graphdef, dp, real), disc_logits(graphdef, dp, fake)
        hinge = losses_lib.hinge_d_loss(real_logits, fake_logits)
        lecam = losses_lib.lecam_loss(real_logits, fake_logits, disc["lecam"]["real"], disc["lecam"]["fake"])
        loss = hinge + float(gan.lecam_weight) * lecam
        r1 = jnp.zeros(())
        if float(gan.r1_weight) > 0:
            r1 = losses_lib.r1_penalty(lambda v: disc_logits(graphdef, dp, v), real)
            loss = loss + float(gan.r1_weight) * r1
        return loss, {
            "d_loss": hinge,
            "lecam_loss": lecam,
            "r1": r1,
            "d_real": jnp.mean(real_logits),
            "d_fake": jnp.mean(fake_logits),
        }

    d_grads, d_metrics = jax.grad(d_loss_fn, has_aux=True)(disc["params"])
    updates, d_opt = tx.update(d_grads, disc["opt_state"], disc["params"])
    d_params = optax.apply_updates(disc["params"], jax.tree.map(lambda u: gan_on * u, updates))
    keep = lambda new, old: jnp.where(gan_on > 0, new, old)  # noqa: E731  (frozen optimizer too)
    d_opt = jax.tree.map(keep, d_opt, disc["opt_state"])
    decay = float(gan.lecam_decay)
    lecam = {
        "real": keep(
            decay * disc["lecam"]["real"] + (1 - decay) * d_metrics["d_real"], disc["lecam"]["real"]
        ),
        "fake": keep(
            decay * disc["lecam"]["fake"] + (1 - decay) * d_metrics["d_fake"], disc["lecam"]["fake"]
        ),
    }
    return {"params": d_params, "opt_state": d_opt, "lecam": lecam}, d_metrics
