"""Trains the text-to-video transformer (videogen/lm/model.py) on codes of a frozen video tokenizer.

Run (configs are Python files with ``get_config(arg)``; ``path:arg`` picks a variant)::

    python -m tokenizer.train --config experiments/tokenizer_world.py:tiny --workdir runs/tok_tiny
    python -m videogen.train --config experiments/lm_world.py:tiny --workdir runs/lm_tiny \\
        --config.tokenizer_workdir=runs/tok_tiny
    python -m videogen.train --config experiments/lm_world.py --workdir runs/lm_world \\
        --config.tokenizer_workdir=runs/tok_world --config.objective=next_token --config.peak_flops=989e12

Overrides are ``--config.KEY=VALUE`` (dotted for nested keys), as in ``tokenizer.train``.

Objectives (``next_token``, ``maskgit``, ``maskgit_frames``): their sequences, masks and losses are
videogen/lm/objectives.py's, described there; guidance training drops a caption with probability
``text.drop_prob``.

Gradient accumulation (``grad_accum_steps = A``): the global batch is built (masks, caption drop)
once, then a ``lax.scan`` over ``A`` microbatches sums ``grad(sum of weighted NLL)``; dividing by
the batch's total weight makes the update identical to the un-accumulated one.

Throughput: ``tokens/s`` counts every sequence position (text + video) of the global batch;
``TFLOP/s = flops_per_token(model, seq_len) * tokens / s`` (6N + attention; causal halves
attention for next_token). ``MFU = FLOP/s / config.peak_flops`` -- the accelerator's (all devices
of the mesh together) dense peak for the compute dtype, e.g. ``989e12`` for one H100 SXM in bf16.
On CPU pass the measured matmul peak: ``--config.peak_flops=measure`` times a 2048^2 matmul in the
compute dtype (:func:`measure_matmul_flops`); with ``peak_flops=None`` the log says ``MFU n/a``.

Workdir::

    config.json             the resolved config (model.codebook_size / video_grid filled in)
    text_tokenizer.model    sentencepiece model trained from the data's captions (reused if present)
    checkpoints/<step>/     orbax items: model (EMA params), train (params, optimizer state, step),
                            pipeline (JSON: the data position), integrity (JSON: array fingerprints)
    checkpoints.corrupt/    damaged checkpoints set aside on resume; .lock: held while a run uses it
    tb/, metrics.jsonl      TensorBoard scalars train/* eval/*, and the same as JSON lines
    samples/step_N.gif      samples of the eval prompts (EMA weights) when sample.num_prompts > 0; step_N.png
                            the same as a captioned still, also in TensorBoard's Images tab; on the built-in
                            world the judge scores them: eval/judge_all_correct, judge_colour/shape/size/motion

Library use::

    metrics = train(config, workdir)

A trained LM is loaded and sampled by videogen/lm/core.py (``load_lm``, ``sample``; re-exported here).

The train loop (logging, non-finite watch, timing, preemption, saving, eval) is videogen/training/loop.py's.

The train state (born sharded), the update and eval steps and the checkpoint items are
videogen/lm/train_step.py's (so `make bench` and `videogen plan` time and compile the same step without
importing this trainer).

Sections: 1 tokenizers, 2 shard & transfer, 3 train loop (inside it: set up mesh, state, data, step, loop), CLI.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from tokenizer import codes as tok_codes
from tokenizer.core import checkpoint_manager, to_float
from videogen import config_checks, errors
from videogen.data import code_cache
from videogen.data.pipeline import Pipeline, PipelineConfig
from videogen.data.sources import build_source, captions
from videogen.data.sources import eval_spec as make_eval_spec
from videogen.data.text import MODEL_FILENAME, TextTokenizer, train_text_tokenizer
from videogen.data.video_io import contact_sheet, gif_grid
from videogen.errors import UsageError
from videogen.eval import judge
from videogen.lm import (
    OBJECTIVES,
    abstract_model,
    attention_is_causal,
    check_objective,
    lm_throughput,
    load_lm,
    load_tokenizer_for_lm,
    make_optimizer,
    maskgit_video_codes,
    sample,
    train_seq_len,
    transformer_config,
)
from videogen.lm.model import flops_per_token
from videogen.lm.objectives import (
    build_sequences,
    check_prefix_weights,
    mask_kwargs,
    motion_emphasis,
)
from videogen.lm.train_step import (
    PROGRAMS,
    RESUME_HINTS,
    RESUME_KEYS,
    abstract_state,
    axis_rules,
    check_batch,
    describe_shardings,
    init_state,
    make_eval_step,
    make_train_step,
    restore_checkpoint,
    save_checkpoint,
    sharding_context,
    state_shardings,
)
from videogen.training import checkpointing, loop
from videogen.training.config import apply_overrides, load_config, to_plain
from videogen.training.loop import batch_sharding, make_mesh, measure_matmul_flops
from videogen.training.trainer_cli import run_cli

# The library this trainer builds on (videogen/lm/core.py, videogen/lm/objectives.py, videogen/training/loop.py,
# videogen/training/config.py), re-exported: `from videogen.train import sample` and the like keep working.
__all__ = [
    "OBJECTIVES",
    "abstract_model",
    "apply_overrides",
    "attention_is_causal",
    "batch_sharding",
    "build_sequences",
    "init_state",
    "make_eval_step",
    "make_train_step",
    "load_config",
    "load_lm",
    "load_tokenizer_for_lm",
    "main",
    "make_mesh",
    "make_optimizer",
    "maskgit_video_codes",
    "measure_matmul_flops",
    "motion_emphasis",
    "sample",
    "state_shardings",
    "train",
    "transformer_config",
]


# ============================================================================================
# 1. Tokenizers: the frozen video tokenizer (EMA) and the text tokenizer
# ============================================================================================


def latent_grid(autoencoder, num_frames: int, resolution: int) -> tuple[int, int, int]:
    """Token grid ``(t, h, w)`` of a clip; a clear error when the clip shape does not fit the tokenizer."""
    try:
        return tuple(autoencoder.latent_shape(int(num_frames), int(resolution), int(resolution))[:3])
    except ValueError as e:
        raise UsageError(
            f"data ({num_frames} frames of {resolution}x{resolution}) is incompatible with the "
            f"tokenizer (compression {autoencoder.config.compression}): {e}"
        ) from e


def text_tokenizer_for(config, workdir: Path, source) -> TextTokenizer:
    """The workdir's ``text_tokenizer.model``; trained from the source's captions when absent."""
    path = Path(workdir) / MODEL_FILENAME
    if not path.is_file() and jax.process_index() == 0:  # one writer; other processes wait below
        t0 = time.perf_counter()
        train_text_tokenizer(
            captions(source, int(config.text.num_captions)), path, vocab_size=int(config.text.vocab_size)
        )
        print(f"[lm] trained text tokenizer {path} in {time.perf_counter() - t0:.1f}s")
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("videogen_text_tokenizer")
    tt = TextTokenizer(path, int(config.text.max_length))
    if tt.vocab_size > int(config.text.vocab_size):
        raise ValueError(
            f"{path} has {tt.vocab_size} pieces > text.vocab_size={config.text.vocab_size}; "
            "raise text.vocab_size or delete the model to retrain it."
        )
    return tt


def make_encoder(autoencoder, quantizer, mesh):
    """Jitted ``video uint8 [B, T, H, W, 3] -> codes int32 [B, t, h, w]``, batch split like the data."""
    graphdef, tok_state = nnx.split((autoencoder, quantizer))
    out_sh = batch_sharding(mesh)

    def encode(tok_state, video):
        ae, q = nnx.merge(graphdef, tok_state)
        _, idx, _ = q(ae.encode(to_float(video)), train=False)
        return idx.astype(jnp.int32)

    fn = PROGRAMS.get(("encode", graphdef, mesh), lambda: jax.jit(encode, out_shardings=out_sh))
    return lambda video: fn(tok_state, video)


# ============================================================================================
# 2. Shard & transfer
# ============================================================================================
# The Pipeline (videogen/data/pipeline.py) hands each process's slice of a global batch to
# jax.make_array_from_process_local_data: batches arrive split over the mesh's ('data', 'fsdp') axes
# (videogen.training.loop.batch_sharding), the clip as uint8 [B, T, H, W, 3] (encoded to codes on the devices by the
# frozen tokenizer, make_encoder) or, with a code cache, its codes int32 [B, t, h, w]; the caption as text
# ids [B, L].


def _text_only(example: dict) -> dict:
    """What the LM reads of an example: its clip (or cached codes) and caption (metadata dropped)."""
    pixels_or_codes = "codes" if "codes" in example else "video"
    return {pixels_or_codes: example[pixels_or_codes], "caption": example["caption"]}


def _train_source(config, source, encode, tokenizer, mesh, workdir: Path):
    """``source``, or with ``code_cache.num_clips > 0`` its first clips' codes: encoded once per tokenizer
    (videogen/data/code_cache.py), reused by every LM trained on it."""
    cache_cfg = config.get("code_cache", None) or {}
    if int(cache_cfg.get("num_clips", 0)) <= 0:
        return source
    if jax.process_count() > 1:
        raise UsageError(
            "code_cache.num_clips > 0 is single-process for now: set --config.code_cache."
            "num_clips=0 on a multi-host run (each step then encodes its batch)."
        )
    bsh = batch_sharding(mesh)
    cached, _ = code_cache.load_or_build(
        source,
        lambda video: jax.device_get(encode(jax.device_put(video, bsh))),
        num_clips=int(cache_cfg.num_clips),
        batch_size=int(config.batch_size),
        data_spec=to_plain(config.data),
        weights_hash=tok_codes.weights_hash(*tokenizer),
        directory=config.tokenizer_workdir,
        fallback_directory=workdir,
        path=cache_cfg.get("path", None),
    )
    return cached


# ============================================================================================
# 3. Train loop (videogen/training/loop.py)
# ============================================================================================


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> dict:
    """Trains (or resumes) the LM in ``workdir``; returns the final metrics. ``devices``: the mesh's
    devices (default all).

    One run per workdir (the second is refused: videogen.training.checkpointing.WorkdirLock). Resumes from the newest
    checkpoint that restores and verifies, on whatever mesh this run has. SIGTERM saves a checkpoint after the
    current step and returns with ``final['preempted'] = True``; a non-finite loss or gradient norm raises
    checkpointing.NonFiniteError before anything non-finite is saved.
    """
    with contextlib.ExitStack() as stack:
        preemption = stack.enter_context(checkpointing.Preemption("lm"))
        return _train(config, workdir, devices, preemption, stack)


def _train(
    config, workdir, devices, preemption: checkpointing.Preemption, stack: contextlib.ExitStack
) -> dict:
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config)
    check_objective(config.objective)
    workdir = Path(workdir)
    rules = axis_rules(config)

    # --- 1. set up mesh -------------------------------------------------------------------------------
    mesh = make_mesh(config, devices)
    check_batch(config, mesh)
    print(f"[lm] mesh {dict(mesh.shape)} on {mesh.devices.size} {mesh.devices.flat[0].platform} devices")

    # --- 2. tokenizers (the video tokenizer first: a bad tokenizer_workdir fails before anything is written)
    ae, quantizer, tok_config = load_tokenizer_for_lm(config.get("tokenizer_workdir"), mesh=mesh)
    with config.unlocked():  # saved absolute: `videogen sample` / `continue` / load_lm work from any folder
        config.tokenizer_workdir = str(Path(config.tokenizer_workdir).resolve())
    grid = latent_grid(ae, config.data.num_frames, config.data.resolution)
    config_checks.check_lm_vocab(config, quantizer.codebook_size, config.get("tokenizer_workdir"))
    tcfg = transformer_config(config, quantizer.codebook_size, grid)
    masks = mask_kwargs(config)
    if masks["prefix_weights"]:
        if config.objective != "maskgit_frames" or masks["clean_context"]:
            raise errors.UsageError(
                f"maskgit.prefix_weights={masks['prefix_weights']} draws the clean prefix of objective "
                f"'maskgit_frames' without clean_context (here objective={config.objective!r}, clean_context="
                f"{masks['clean_context']}): drop it, or use that objective."
            )
        try:
            check_prefix_weights(masks["prefix_weights"], tcfg.video_grid[0])
        except ValueError as e:
            raise errors.UsageError(str(e)) from e
    workdir.mkdir(parents=True, exist_ok=True)
    # One run per workdir: the lock is released when train() returns or raises.
    stack.enter_context(checkpointing.WorkdirLock(workdir, tag="lm"))
    source = build_source(to_plain(config.data), "train")
    eval_spec = make_eval_spec(to_plain(config.data), to_plain(config.eval.get("data", {})))
    text_tok = text_tokenizer_for(config, workdir, source)
    with config.unlocked():
        config.model.codebook_size = tcfg.codebook_size
        config.model.video_grid = tcfg.video_grid
        config.model.group_bits = tcfg.group_bits
    encode = make_encoder(ae, quantizer, mesh)

    # --- 3. model + optimizer, born sharded (or restored into the same shardings) ---------------------
    tx, schedule = make_optimizer(config)
    graphdef, rest, shardings = state_shardings(tcfg, mesh, tx, rules)
    mngr = checkpoint_manager(workdir, config)
    state, resume = loop.restore_or_init(  # newest good step, into this mesh's shardings
        mngr,
        workdir,
        config,
        tag="lm",
        restore=lambda s: restore_checkpoint(mngr, s, abstract_state(tcfg, tx, shardings, int(config.seed))),
        init=lambda: init_state(
            tcfg, tx, shardings, int(config.seed), key=PROGRAMS.key(config, mesh, "init", tcfg)
        ),
        resume_keys=RESUME_KEYS,
        hints=RESUME_HINTS,
    )
    n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    seq_len = train_seq_len(config, tcfg)
    print(
        f"[lm] {n_params:,} params; objective {config.objective}; {tcfg.num_layers} layers d={tcfg.d_model} "
        f"{tcfg.dtype} remat={tcfg.remat}; head {tcfg.head}; codebook {tcfg.codebook_size}; grid {tcfg.video_grid}"
        f"; sequence {tcfg.max_text_len} text + {tcfg.num_video_tokens} video; "
        f"{flops_per_token(tcfg, seq_len, causal=attention_is_causal(config.objective)) / 1e6:.2f} MFLOP/token\n"
        + describe_shardings(state, shardings)
    )
    peak = config.get("peak_flops")
    if peak == "measure":
        peak = measure_matmul_flops(mesh, dtype=tcfg.dtype)
        print(
            f"[lm] peak_flops=measure: {peak / 1e12:.3g} TFLOP/s ({tcfg.dtype} matmul x {mesh.devices.size} "
            "devices)"
        )
    peak = float(peak) if peak else None
    if not peak:
        print("[lm] MFU n/a (set --config.peak_flops to the mesh's peak FLOP/s; on CPU: measure)")
    loop.write_config(workdir, config)

    # --- 4. shard & transfer and 5. update step -------------------------------------------------------
    train_source = _train_source(config, source, encode, (ae, quantizer), mesh, workdir)
    pipeline = loop.train_pipeline(
        config, train_source, mesh, start_step=resume.data_step, transform=_text_only, text_tokenizer=text_tok
    )
    train_step = make_train_step(config, tcfg, graphdef, rest, tx, shardings, mesh)
    lrs = loop.lr_table(schedule, int(config.steps))

    def update(state, batch, step: int):
        with sharding_context(mesh, rules):
            codes = batch["codes"] if "codes" in batch else encode(batch["video"])
            return train_step(state, codes, batch["text_ids"], lrs[step])

    # --- 7. train loop --------------------------------------------------------------------------------
    def evaluate(state, step: int) -> dict:  # single-process (loop.run): sampling gathers videos on one host
        e = config.eval
        out: dict[str, Any] = {}
        if int(e.num_batches) > 0:
            ev_pipe = Pipeline(
                build_source(eval_spec, e.split),
                PipelineConfig(global_batch_size=int(config.batch_size), seed=0, shuffle=False),
                mesh=mesh,
                text_tokenizer=text_tok,
                transform=_text_only,
            )
            ev_step = make_eval_step(config, tcfg, graphdef, rest, mesh)
            tot = np.zeros(3)
            for i, batch in zip(range(int(e.num_batches)), ev_pipe):
                with sharding_context(mesh, rules):
                    r = ev_step(
                        state["ema"], encode(batch["video"]), batch["text_ids"], jax.random.key(1000 + i)
                    )
                tot += np.asarray(jax.device_get(r), np.float64)
            out.update(loss=tot[0] / max(tot[2], 1), accuracy=tot[1] / max(tot[2], 1))
        if int(config.sample.num_prompts) > 0:
            s = config.sample
            prompts = captions(build_source(eval_spec, e.split), int(s.num_prompts))
            model = nnx.merge(graphdef, state["ema"], rest)
            t_s = time.perf_counter()
            videos = sample(
                model,
                (ae, quantizer),
                text_tok,
                prompts,
                objective=config.objective,
                num_steps=int(s.num_steps),
                guidance=float(s.guidance),
                temperature=float(s.temperature),
                top_k=s.top_k,
                top_p=s.get("top_p", None),
                seed=int(s.seed),
            )
            out["sample_s"] = time.perf_counter() - t_s
            if bool(e.get("judge", True)) and config.data.get("kind", "world") == "world":
                verdicts = judge.score(list(videos), prompts)
                out.update(
                    {f"judge_{k}": v for k, v in verdicts.items() if k not in ("num_clips", "verdicts")}
                )
            (workdir / "samples").mkdir(exist_ok=True)
            gif_grid(videos, workdir / "samples" / f"step_{step:06d}.gif")
            contact_sheet(list(videos), prompts, path=workdir / "samples" / f"step_{step:06d}.png")
        return out

    final = loop.run(
        "lm",
        config,
        workdir,
        state,
        resume=resume,
        pipeline=pipeline,
        mngr=mngr,
        preemption=preemption,
        update=update,
        save=save_checkpoint,
        evaluate=evaluate,
        eval_line=lambda em: ", ".join(f"{k} {v:.4g}" for k, v in em.items()),
        eval_image="eval/samples",
        throughput=lambda n, dt: lm_throughput(config, tcfg, n, dt, peak),
        postfix=lambda m: {
            "loss": f"{m['loss']:.4f}",
            "acc": f"{m['accuracy']:.3f}",
            "tflops": f"{m.get('tflops_per_sec', float('nan')):.3g}",
            "mfu": f"{m['mfu']:.1%}" if "mfu" in m else "n/a",
        },
        final_throughput=True,
    )
    final["num_params"] = n_params
    return final


# ============================================================================================
# CLI
# ============================================================================================


def main(argv: list[str] | None = None) -> dict:
    return run_cli(
        argv,
        prog="python -m videogen.train",
        description="Train the text-to-video transformer on tokenizer codes.",
        example_config="experiments/lm_world.py:tiny --config.tokenizer_workdir=runs/tok_tiny",
        train_fn=train,
        kind="lm",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
