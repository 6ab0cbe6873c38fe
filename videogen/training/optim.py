"""The optimizer both trainers use, and the loaders that read a checkpoint's raw params (its state's tree)."""

from __future__ import annotations

import jax
import optax

__all__ = ["make_optimizer"]


def make_optimizer(config, decay_mask=None) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Global-norm clipping -> AdamW (decay on kernels only: ``decay_mask(params)``, default ``ndim > 1``);
    linear warmup + cosine decay schedule.

    The transformation runs at learning rate 1 and the step multiplies its updates by the schedule's
    value, passed in from the host each step (``-lr * (adam + wd * p)`` is exactly ``optax.adamw(lr)``):
    the compiled step then does not depend on ``steps``/``lr``/``warmup_steps``, so extending a run's
    ``steps`` on resume, or calling a trainer's ``train`` again in one process, reuses it.
    """
    o = config.optim
    steps = max(1, int(config.steps))
    warmup = min(int(o.warmup_steps), steps - 1)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=o.lr,
        warmup_steps=warmup,
        decay_steps=steps,
        end_value=o.lr * o.min_lr_ratio,
    )
    if decay_mask is None:
        decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
    tx = optax.chain(
        optax.clip_by_global_norm(o.grad_clip) if o.grad_clip > 0 else optax.identity(),
        optax.adamw(1.0, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=decay_mask),
    )
    return tx, schedule
