"""Trains the video tokenizer: causal 3D CNN autoencoder (tokenizer/model.py) + LFQ/FSQ/VQ bottleneck.

Run (configs are Python files with ``get_config(arg)``; ``path:arg`` picks a variant)::

    python -m tokenizer.train --config experiments/tokenizer_world.py:tiny --workdir runs/tok_tiny
    python -m tokenizer.train --config experiments/tokenizer_world.py --workdir runs/tok_world \\
        --config.steps=20000 --config.model.dtype=bfloat16

Overrides are ``--config.KEY=VALUE`` (or plain ``KEY=VALUE``), dotted for nested keys; VALUE is read
as a Python literal (``3``, ``1e-3``, ``(1, 2, 2)``, ``True``, ``None``) and otherwise kept as a string
(``--config.quantizer.kind=fsq``). Unknown keys are errors, except under ``quantizer`` whose
sections are the quantizers' constructor arguments (``--config.quantizer.lfq.max_entropy_group_bits=8``).

Re-running a command on the same workdir resumes from its latest checkpoint: params, optimizer
state, EMA params, quantizer state, step counter and the data pipeline's position.

Workdir::

    config.json           the resolved config; load_tokenizer() rebuilds the model from it
    checkpoints/<step>/   orbax items: model (EMA params + quantizer state), train (params, optimizer
                          state, step), pipeline (JSON: the data position), integrity (JSON: fingerprints)
    checkpoints.corrupt/  damaged checkpoints set aside on resume (see videogen/training/checkpointing.py)
    .lock                 held while a run uses the workdir (a second run is refused)
    tb/                   TensorBoard scalars: train/*, eval/*
    samples/              step_<N>.gif/.mp4 per eval: each cell is original | reconstruction (EMA); step_<N>.png
                          the same as a still (one row per clip), also in TensorBoard's Images tab
    metrics.jsonl         every logged and evaluated metric, one JSON object per line

Library use::

    metrics = train(config, workdir)                        # final metrics dict

A trained tokenizer is loaded, and clips encoded and decoded, by tokenizer/core.py (public part:
tokenizer/api.py); config files are read by videogen/training/config.py, the command line is videogen/training/trainer_cli.py,
the train loop (logging, non-finite watch, timing, preemption, saving, eval) is videogen/training/loop.py's, the GAN's
discriminator tokenizer/gan.py's.

The train state (born sharded), the update step and the checkpoint items are tokenizer/train_step.py's (so
`make bench` and `videogen plan` time and compile the same step without importing this trainer).

Sections below: 1 shard & transfer, 2 train loop (inside it: set up mesh, state, data, step, loop), CLI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax
import ml_collections
from flax import nnx

from tokenizer import evaluate as eval_lib
from tokenizer.core import (
    COMPUTE_ONLY_MODEL_KEYS,
    INIT_KEY_IMPL,
    Tokenizer,
    abstract_tokenizer,
    autoencoder_config,
    checkpoint_manager,
    decode_indices,
    encode_video,
    eval_data_spec,
    latest_step,
    load_tokenizer,
    quantizer_kwargs,
    train_data_spec,
)
from tokenizer.model import check_input_shape
from tokenizer.train_step import (
    abstract_state,
    check_config,
    init_disc_sharded,
    init_state,
    make_train_step,
    restore_checkpoint,
    resume_keys,
    save_checkpoint,
    state_shardings,
)
from videogen.data.sources import build_source
from videogen.training import checkpointing, loop
from videogen.training.config import apply_overrides, load_config
from videogen.training.loop import batch_sharding, make_mesh
from videogen.training.mesh import describe_shardings
from videogen.training.optim import make_optimizer
from videogen.training.trainer_cli import run_cli

# The library this trainer builds on (tokenizer/core.py, videogen/training/config.py, videogen/training/loop.py, ...),
# re-exported: `from tokenizer.train import load_tokenizer` and the like keep working.
__all__ = [
    "COMPUTE_ONLY_MODEL_KEYS",
    "INIT_KEY_IMPL",
    "Tokenizer",
    "abstract_tokenizer",
    "apply_overrides",
    "autoencoder_config",
    "batch_sharding",
    "check_input_shape",
    "checkpoint_manager",
    "decode_indices",
    "describe_shardings",
    "encode_video",
    "eval_data_spec",
    "latest_step",
    "load_config",
    "load_tokenizer",
    "init_state",
    "main",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "quantizer_kwargs",
    "state_shardings",
    "train",
    "train_data_spec",
]


# ============================================================================================
# 1. Shard & transfer
# ============================================================================================
# The Pipeline (videogen/data/pipeline.py) renders/reads clips on the host and hands each process's
# slice to jax.make_array_from_process_local_data: batches arrive as global uint8 arrays
# [B, T, H, W, 3] split over the mesh's ('data', 'fsdp') axes (videogen.training.loop.batch_sharding). They travel as
# uint8 (4x less than float32) and are converted to [-1, 1] float inside the jitted step. Only "video" is kept.


def _video_only(example: dict) -> dict:
    return {"video": example["video"], "caption": example["caption"]}


# ============================================================================================
# 2. Train loop (videogen/training/loop.py)
# ============================================================================================


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
    """Trains (or resumes) a tokenizer in ``workdir``; returns the final metrics (train/*, eval/*, timing).

    One run per workdir (a second is refused: videogen.training.checkpointing.WorkdirLock). Resumes from the newest
    checkpoint that restores and verifies (a damaged newer one is set aside, and the log says so). SIGTERM
    saves a checkpoint after the current step and returns with ``final['preempted'] = True``. A non-finite
    loss or gradient norm raises checkpointing.NonFiniteError before anything non-finite is saved.
    """
    with (
        checkpointing.WorkdirLock(workdir, tag="tokenizer"),
        checkpointing.Preemption("tokenizer") as preemption,
    ):
        return _train(config, workdir, preemption)


def _train(config, workdir, preemption: checkpointing.Preemption) -> dict:
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    # --- 1. set up mesh -------------------------------------------------------------------------------
    mesh = make_mesh(config)
    check_config(config, mesh)
    print(
        f"[tokenizer] mesh {dict(mesh.shape)} on {len(mesh.devices.flat)} {jax.devices()[0].platform} devices"
    )

    # --- 2. model + optimizer, born sharded (or restored into the same shardings) ---------------------
    tx, schedule = make_optimizer(config)
    graphdef, shardings = state_shardings(config, mesh, tx)
    mngr = checkpoint_manager(workdir, config)
    state, resume = loop.restore_or_init(  # newest good step, into this mesh's shardings
        mngr,
        workdir,
        config,
        tag="tokenizer",
        restore=lambda s: restore_checkpoint(
            mngr,
            s,
            abstract_state(config, mesh, tx, shardings),
            init_disc=lambda: init_disc_sharded(config, shardings),
        ),
        init=lambda: init_state(config, mesh, tx, shardings),
        resume_keys=resume_keys(config),
    )
    n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    print(
        f"[tokenizer] {n_params:,} params; compression {autoencoder_config(config).compression}; quantizer "
        f"{config.quantizer.kind} ({nnx.merge(graphdef, state['params'], state['rest']).quantizer.codebook_size} "
        f"codes)\n" + describe_shardings(state, shardings)
    )
    loop.write_config(workdir, config)

    # --- 3. shard & transfer: sharded global batches from the pipeline's saved position ---------------
    source = build_source(train_data_spec(config), "train")
    eval_source, eval_clips = eval_lib.eval_source(config, config.eval.split, strict=False)
    pipeline = loop.train_pipeline(config, source, mesh, start_step=resume.data_step, transform=_video_only)

    # --- 4. update step -------------------------------------------------------------------------------
    train_step = make_train_step(config, graphdef, tx, shardings, mesh)
    lrs = loop.lr_table(schedule, int(config.steps))  # the schedule, on the host

    # --- 6. train loop --------------------------------------------------------------------------------
    if jax.process_count() > 1:  # evaluation gathers whole batches on one host: run it afterwards, on one
        print(
            "[tokenizer] multi-process run: evaluation during training is off; evaluate the workdir afterwards "
            "with `python -m tokenizer.evaluate --workdir ...` (one process)."
        )

    def evaluate(state, step: int) -> dict:
        tok = nnx.merge(graphdef, state["ema"], state["rest"])  # EMA weights (dropped before the next step)
        e = config.eval
        return eval_lib.evaluate_tokenizer(
            tok.autoencoder,
            tok.quantizer,
            eval_source,
            batch_size=int(e.batch_size),
            mesh=mesh,
            num_clips=eval_clips,
            judge=bool(e.judge) and config.data.get("kind", "world") == "world",
            num_samples=int(e.num_samples),
            sample_path=workdir / "samples" / f"step_{step:06d}.gif",
        )

    final = loop.run(
        "tokenizer",
        config,
        workdir,
        state,
        resume=resume,
        pipeline=pipeline,
        mngr=mngr,
        preemption=preemption,
        update=lambda state, batch, step: train_step(state, batch["video"], lrs[step]),
        save=save_checkpoint,
        evaluate=evaluate,
        eval_line=lambda em: (
            f"PSNR {em['psnr']:.2f} dB, SSIM {em['ssim']:.3f}, usage {em['usage']:.3f} "
            f"({em['used_codes']:.0f} codes), perplexity {em['perplexity']:.1f}"
            + (f", judge {em['judge_all_correct']:.3f}" if "judge_all_correct" in em else "")
        ),
        eval_image="eval/reconstructions",
        throughput=lambda n, dt: {"steps_per_sec": n / dt, "clips_per_sec": n * int(config.batch_size) / dt},
        postfix=lambda m: {"loss": f"{m['loss']:.4f}", "psnr": f"{m['psnr']:.1f}"},
        eval_if_finished=True,
    )
    final["num_params"] = n_params
    return final


# ============================================================================================
# CLI
# ============================================================================================


def main(argv: list[str] | None = None) -> dict:
    return run_cli(
        argv,
        prog="python -m tokenizer.train",
        description="Train the video tokenizer.",
        example_config="experiments/tokenizer_world.py:tiny",
        train_fn=train,
        kind="tokenizer",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
