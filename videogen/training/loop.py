"""The training loop both trainers run (tokenizer/train.py, videogen/train.py), big_vision style, and the set-up
they share. Each trainer keeps its own set-up (mesh, model + optimizer born sharded, data) and its update step,
and hands them to :func:`run`:

    state, resume = loop.restore_or_init(mngr, workdir, config, tag=..., restore=..., init=..., resume_keys=...)
    ...
    final = loop.run("lm", config, workdir, state, resume=resume, pipeline=pipeline, mngr=mngr,
                     preemption=preemption, update=update, save=save_checkpoint, evaluate=evaluate, ...)

:func:`run` steps through ``range(start, config.steps)``: metrics averaged over ``log_every`` steps into
metrics.jsonl and TensorBoard (videogen/training/metrics_log.py), a watch on loss / grad_norm that raises
checkpointing.NonFiniteError before anything non-finite is saved, timing (the first step, compile included,
kept apart from the steady ones), a checkpoint every ``ckpt_every`` steps and at the end (atomic, async),
SIGTERM answered with a save after the current step, evaluation every ``eval.every`` steps and at the end
(single-process runs; a step saved but not evaluated before a preemption is evaluated first on resume), and
a progress bar.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec
from tqdm import tqdm

from videogen import config_checks
from videogen.data.pipeline import Pipeline, PipelineConfig, resume_step
from videogen.training import checkpointing
from videogen.training import mesh as mesh_lib
from videogen.training.config import to_plain
from videogen.training.metrics_log import MetricsLog

__all__ = [
    "ProgramCache",
    "Resume",
    "abstract_like",
    "batch_sharding",
    "ema_update",
    "logical_axis_rules",
    "lr_table",
    "make_mesh",
    "measure_matmul_flops",
    "opt_shardings",
    "replicated",
    "restore_or_init",
    "run",
    "train_pipeline",
    "write_config",
]


# ============================================================================================
# Set-up both trainers share
# ============================================================================================


class ProgramCache:
    """Compiled programs kept per process, keyed by every config entry they depend on, so train() called
    again (a resume with more steps, tests, notebooks) does not recompile. ``not_in_program``: the dotted
    config entries left out of the key (steps, schedule, data, eval, logging, ...)."""

    def __init__(self, not_in_program: Sequence[str]):
        self.not_in_program = tuple(not_in_program)
        self.programs: dict[tuple, Any] = {}

    def key(self, config, mesh, what: str, *extra) -> tuple:
        c = to_plain(config)
        for dotted in self.not_in_program:
            *parents, leaf = dotted.split(".")
            node = c
            for name in parents:
                node = node.get(name, {})
            node.pop(leaf, None)
        return (what, json.dumps(c, sort_keys=True, default=str), mesh, *extra)

    def get(self, key: tuple, build: Callable[[], Any]):
        """The program under ``key``, built by ``build()`` the first time."""
        if key not in self.programs:
            self.programs[key] = build()
        return self.programs[key]


def logical_axis_rules(config, default: tuple) -> tuple:
    """``config.logical_axis_rules`` as nnx wants them (tuples), or ``default`` when unset."""
    rules = config.get("logical_axis_rules", None)
    if not rules:
        return default
    return tuple(
        (name, None if axis is None else (axis if isinstance(axis, str) else tuple(axis)))
        for name, axis in rules
    )


def make_mesh(config, devices: Sequence[jax.Device] | None = None):
    """Mesh from ``config.mesh`` (``{'data': -1, 'fsdp': 1, 'tensor': 1}``: pure data parallelism) over
    ``devices`` (default: all); a bad shape names config.mesh and the fix."""
    axes = to_plain(config.mesh)
    config_checks.check_mesh(axes, jax.device_count() if devices is None else len(devices))
    return mesh_lib.make_mesh(axes, devices=devices)


def batch_sharding(mesh) -> NamedSharding:
    """A batch's leading dimension split over the mesh's data axes (videogen.training.mesh.BATCH_AXES)."""
    return NamedSharding(mesh, PartitionSpec(mesh_lib.batch_axes(mesh)))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def opt_shardings(tx: optax.GradientTransformation, abs_params, param_sh, mesh):
    """The optimizer state's shardings: every slot that mirrors a param (Adam mu/nu) like that param, scalars
    (counts) replicated. ``abs_params``: the pure params' abstract tree."""
    abs_opt = jax.eval_shape(tx.init, abs_params)
    rep = replicated(mesh)
    return optax.tree_map_params(tx, lambda _, s: s, abs_opt, param_sh, transform_non_params=lambda _: rep)


def abstract_like(abstract, shardings):
    """``abstract``'s leaves as ``jax.ShapeDtypeStruct`` carrying ``shardings`` (a restore target)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def ema_update(ema, params, step, ema_decay: float):
    """``(new EMA, decay)``: decay ``min(ema_decay, (1 + step) / (10 + step))`` (the warm-up keeps early EMA
    weights usable). Inside the jitted update step."""
    stepf = step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + stepf) / (10.0 + stepf))
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params), decay


class Resume(NamedTuple):
    """Where a run starts: the checkpoint step it resumed from (None: initialised), the train step and the
    data pipeline's step."""

    resumed_from: int | None
    step: int
    data_step: int


def restore_or_init(
    mngr,
    workdir: Path,
    config,
    *,
    tag: str,
    restore: Callable[[int], tuple[Any, dict]],
    init: Callable[[], Any],
    resume_keys: Sequence[str],
    hints: dict[str, str] | None = None,
) -> tuple[Any, Resume]:
    """The train state: restored from the newest checkpoint that restores and verifies (``restore(step)`` ->
    ``(state, pipeline JSON)``, into this mesh's shardings), else ``init()``.

    First the config's ``resume_keys`` (those that fix the checkpoint's shapes) are checked against the
    workdir's config.json, naming the field (``hints``: why it may differ) before anything compiles."""
    config_checks.check_resume_compatible(
        workdir, to_plain(config), resume_keys, tag=tag, hints=hints, has_checkpoint=bool(mngr.all_steps())
    )
    resumed_from, restored = checkpointing.restore_latest(mngr, restore, workdir=workdir, tag=tag)
    t0 = time.perf_counter()
    if resumed_from is None:
        state, data_step = init(), 0
    else:
        state, pipe_state = restored
        data_step, note = resume_step(pipe_state, int(config.batch_size), int(config.seed))
        if note:
            print(f"[{tag}] resume: {note}.")
    start = int(jax.device_get(state["step"]))
    print(
        f"[{tag}] {'resumed from step ' + str(start) if resumed_from is not None else 'initialised'} in "
        f"{time.perf_counter() - t0:.1f}s; data pipeline at step {data_step}"
    )
    return state, Resume(resumed_from, start, data_step)


def train_pipeline(config, source, mesh, *, start_step: int, transform, text_tokenizer=None) -> Pipeline:
    """Sharded global batches of ``config.batch_size`` from ``source``, from the saved position on."""
    return Pipeline(
        source,
        PipelineConfig(
            global_batch_size=int(config.batch_size),
            seed=int(config.seed),
            num_threads=int(config.get("data_threads", 0)),
        ),
        mesh=mesh,
        text_tokenizer=text_tokenizer,
        start_step=start_step,
        transform=transform,
    )


def lr_table(schedule, steps: int) -> np.ndarray:
    """The schedule's value at every step, on the host (the step takes its lr as an argument)."""
    return np.asarray(jax.vmap(schedule)(jnp.arange(max(steps, 1))), np.float32)


def write_config(workdir: Path, config) -> None:
    """``workdir/config.json``: the resolved config (process 0)."""
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(config.to_json(indent=1, sort_keys=True) + "\n")


def measure_matmul_flops(mesh=None, *, n: int = 2048, dtype: str = "float32", repeats: int = 5) -> float:
    """Measured dense matmul FLOP/s of one ``[n, n] @ [n, n]`` on the default device, times the number of
    devices in ``mesh`` (the CPU stand-in for a datasheet peak: ``--config.peak_flops=measure``)."""
    x = jnp.ones((n, n), dtype)
    f = jax.jit(lambda a: a @ a)
    f(x).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(repeats):
        f(x).block_until_ready()
    per_device = 2 * n**3 * repeats / (time.perf_counter() - t0)
    return per_device * (1 if mesh is None else mesh.devices.size)


# ============================================================================================
# The loop
# ============================================================================================


def run(
    tag: str,
    config,
    workdir: Path,
    state,
    *,
    resume: Resume,
    pipeline: Pipeline,
    mngr,
    preemption: checkpointing.Preemption,
    update: Callable[[Any, dict, int], tuple[Any, dict]],
    save: Callable[..., bool],
    evaluate: Callable[[Any, int], dict],
    eval_line: Callable[[dict], str],
    eval_image: str,
    throughput: Callable[[int, float], dict],
    postfix: Callable[[dict], dict],
    eval_if_finished: bool = False,
    final_throughput: bool = False,
) -> dict:
    """Runs steps ``resume.step .. config.steps - 1``; returns the final metrics.

    ``update(state, batch, step) -> (state, metrics)``: one step on the pipeline's next batch (metrics hold
    ``loss`` and ``grad_norm``, watched for non-finite values). ``save(mngr, step, state, pipeline_state,
    force=True)``: the trainer's checkpoint items. ``evaluate(state, step) -> metrics`` ({}: nothing
    evaluated), logged as ``eval/*`` with ``samples/step_N.png`` under TensorBoard tag ``eval_image`` and the
    line ``[tag] step N eval: <eval_line(metrics)>``. ``throughput(steps, seconds)``: the timing metrics of
    a log row (also of the final metrics with ``final_throughput``); ``postfix(metrics)``: the progress bar's.
    ``eval_if_finished``: a run that starts at ``steps`` or later evaluates its step even if it was evaluated.
    Evaluation runs in single-process runs only (it gathers on one host).
    """
    steps, eval_every, log_every = int(config.steps), int(config.eval.every), int(config.log_every)
    evaluates = jax.process_count() == 1
    start = resume.step
    log = MetricsLog(workdir)
    final: dict[str, Any] = {
        "resumed_from": resume.resumed_from,
        "start_step": start,
        "data_start_step": resume.data_step,
    }
    pending: list[dict] = []
    timing = {"first_step_s": None, "train_s": 0.0, "timed_steps": 0}
    pbar = tqdm(
        total=steps,
        initial=start,
        desc=tag,
        unit="step",
        dynamic_ncols=True,
        disable=bool(config.get("quiet", False)) or jax.process_index() > 0,
    )
    watch = checkpointing.FiniteWatch()  # loss / grad_norm of every step, checked at log and save points

    def run_eval(step: int) -> None:
        em = evaluate(state, step)
        if em:
            log(step, "eval", em)
            log.image(step, eval_image, workdir / "samples" / f"step_{step:06d}.png")
            final.update({f"eval/{k}": v for k, v in em.items()})
            pbar.write(f"[{tag}] step {step} eval: " + eval_line(em))

    batches = iter(pipeline)
    try:
        if evaluates and eval_if_finished and start >= steps:
            pbar.write(f"[{tag}] already at step {start} >= steps={steps}: evaluating only.")
            run_eval(start)
        elif (
            evaluates
            and start
            and (start >= steps or (eval_every and start % eval_every == 0))
            and not log.has(start, "eval")
        ):
            # The run before saved this step's checkpoint and stopped (preempted) before its eval.
            pbar.write(f"[{tag}] step {start} was saved but not evaluated: evaluating it first.")
            run_eval(start)
        t_mark, n_mark = time.perf_counter(), 0
        for step in range(start, steps):
            state, metrics = update(state, next(batches), step)
            pending.append(metrics)
            done = step + 1
            watch.append(done, metrics)
            if timing["first_step_s"] is None:  # compile + first step, kept out of the throughput
                jax.block_until_ready(state["step"])
                timing["first_step_s"] = time.perf_counter() - t_mark
                t_mark, n_mark = time.perf_counter(), 0
            else:
                n_mark += 1
            pbar.update(1)
            if done % log_every == 0 or done == steps:
                m = {k: float(np.mean([float(x[k]) for x in jax.device_get(pending)])) for k in pending[-1]}
                pending = []
                dt = time.perf_counter() - t_mark
                if n_mark:
                    timing["train_s"] += dt
                    timing["timed_steps"] += n_mark
                    m.update(throughput(n_mark, dt))
                log(done, "train", m)
                watch.check(last_saved=mngr.latest_step, workdir=workdir)
                final.update({f"train/{k}": v for k, v in m.items()})
                pbar.set_postfix(**postfix(m))
                t_mark, n_mark = time.perf_counter(), 0
            preempted = preemption.requested(done)
            if mngr.should_save(done) or done == steps or preempted:
                watch.check(last_saved=mngr.latest_step, workdir=workdir)  # never save non-finite state
                save(mngr, done, state, pipeline.state(), force=True)  # async: returns once on host
            if preempted:
                final["preempted"] = True
                pbar.write(
                    f"[{tag}] preempted: saved step {done} in {workdir / 'checkpoints'}; rerun to resume."
                )
                break
            if evaluates and ((eval_every and done % eval_every == 0) or done == steps):
                run_eval(done)
                t_mark, n_mark = time.perf_counter(), 0
    finally:
        pbar.close()
        mngr.wait_until_finished()
        mngr.close()
        log.close()
    final["step"] = int(jax.device_get(state["step"]))
    final["data_step"] = pipeline.state()["step"]
    final["first_step_s"] = timing["first_step_s"]
    if timing["timed_steps"]:
        final["s_per_step"] = timing["train_s"] / timing["timed_steps"]
        if final_throughput:
            final.update(throughput(timing["timed_steps"], timing["train_s"]))
    return final
