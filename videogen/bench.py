"""`make bench`: one table (and a JSON) of this machine's speed limits and of every stage's throughput.

    python -m videogen.bench                      # CPU always; also the GPU (bf16) when one is present
    python -m videogen.bench --quick --out b.json # small models, few steps (the test suite's smoke run)

Rows, per platform (all in one run, so they compare with each other):

* ``matmul peak`` -- measured FLOP/s of one square matmul in the compute dtype (float32 on CPU, bfloat16
  on GPU): the limit every MFU below is a fraction of (a datasheet peak is not reachable on a shared CPU).
* ``memory bandwidth`` -- measured bytes/s read by a sum over an array far larger than the caches.
* ``tokenizer train step`` / ``encode`` / ``decode`` -- frames per second of the video tokenizer
  (experiments/tokenizer_world.py: ``tiny`` on CPU, the default config on GPU), untrained weights.
* ``LM train`` -- tokens/s of the transformer train step (experiments/lm_world.py, ``tiny`` on CPU, default
  on GPU), its FLOP/s (``videogen.lm.model.flops_per_token``) and MFU = FLOP/s / the measured matmul peak;
  the next-token step is also timed with ``jax.nn.dot_product_attention`` as the reference for ours.
* ``AR sampling, batch B`` -- next-token decoding with the KV cache (classifier-free guidance, so the model
  runs 2B sequences), video tokens per second against the memory-bandwidth bound: every decoded token reads
  all weights once (shared by the batch) plus the whole static KV cache of the 2B sequences, so
  ``bound = B * bandwidth / (weight bytes + KV cache bytes)`` tokens/s. A CPU-sized model whose weights
  fit in the CPU's caches can beat this DRAM bound (> 100 %); at batch 8 compute, not memory, limits it.
* ``MaskGIT`` -- seconds per clip of 12-step MaskGIT decoding at batch 8 (tokens only; decode is above).
* ``data pipeline`` -- clips/s of the world source through the sharded input pipeline (64x64x17, batch 32).
* ``peak memory`` -- the process's peak resident memory (CPU) or the device's peak bytes in use (GPU).

The two limits are the fastest of their repeats (closest to what a shared machine can do); stage
figures are means over their repeats after a warm-up (compile) call. Models are untrained: speed does
not depend on the weights. ``--quick`` shrinks every model (about a minute on the shared 2-core VM, mostly
compiling); its figures are for smoke tests, not for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh

from tokenizer import core as tok_core
from tokenizer import train_step as tok_step
from videogen import bench_data
from videogen.data import pipeline, world
from videogen.lm import core as lm_lib
from videogen.lm import train_step as lm_step
from videogen.training import loop
from videogen.training.config import apply_overrides, load_config
from videogen.training.optim import make_optimizer

REPO = Path(__file__).resolve().parents[1]

# Row names, in table order; tests check every one is present.
ROWS = (
    "matmul_peak_flops",
    "memory_bandwidth_bytes_per_s",
    "tokenizer_train_frames_per_s",
    "tokenizer_encode_frames_per_s",
    "tokenizer_decode_frames_per_s",
    "lm_train_tokens_per_s",
    "lm_train_flops_per_s",
    "lm_train_mfu",
    "ar_sampling_b1_tokens_per_s",
    "ar_sampling_b1_bound_tokens_per_s",
    "ar_sampling_b8_tokens_per_s",
    "ar_sampling_b8_bound_tokens_per_s",
    "maskgit_seconds_per_clip",
    "data_pipeline_clips_per_s",
    "peak_memory_bytes",
)


def _timed(fn: Callable[[], Any], repeats: int, *, best: bool = False) -> float:
    """Seconds per call after one warm-up call (which compiles): the mean, or with ``best`` the fastest call
    (for the machine's limits: on a shared machine the fastest call is the closest to what it can do)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times) if best else sum(times) / repeats


# ============================================================================================
# Machine limits
# ============================================================================================


def matmul_peak(dev, *, n: int, dtype: str, repeats: int) -> float:
    """FLOP/s of ``[n, n] @ [n, n]`` on ``dev``."""
    x = jax.device_put(jnp.ones((n, n), dtype), dev)
    f = jax.jit(lambda a: a @ a)
    return 2 * n**3 / _timed(lambda: f(x), repeats, best=True)


def memory_bandwidth(dev, *, num_bytes: int, repeats: int) -> float:
    """Bytes/s read by a sum over an array far larger than the caches.

    Read-only, like a decode step streaming weights and KV cache; XLA:CPU's elementwise write loops
    are several times slower than its reductions, so a copy would understate what decoding can reach.
    """
    x = jax.device_put(jnp.ones((num_bytes // 4,), jnp.float32), dev)
    f = jax.jit(jnp.sum)
    return num_bytes / _timed(lambda: f(x), repeats, best=True)


# ============================================================================================
# Configs
# ============================================================================================


def tokenizer_config(on_gpu: bool, quick: bool):
    c = load_config(str(REPO / "experiments/tokenizer_world.py") + ("" if on_gpu else ":tiny"))
    # What conv_impl='auto' picks on each backend, said explicitly: 'auto' follows the default backend,
    # and on a GPU host the CPU column must still get the CPU's choice.
    c.model.conv_impl = "lax" if on_gpu else "matmul"
    if quick:  # the test suite's tiny shapes: 16x16x9, 2x8x8 compression
        apply_overrides(
            c,
            [
                "data.resolution=16",
                "data.num_frames=9",
                "model.channels=8",
                "model.num_groups=4",
                "model.channel_multipliers=(1,2)",
                "model.num_res_blocks=0",
                "model.use_adaptive_group_norm=False",
                "model.temporal_downsample=(True,)",
                "model.spatial_downsample=(True,)",
                "quantizer.lfq.num_bits=6",
            ],
        )
    return c


def lm_config(on_gpu: bool, quick: bool):
    c = load_config(str(REPO / "experiments/lm_world.py") + ("" if on_gpu else ":tiny"))
    if quick:
        apply_overrides(
            c,
            [
                "batch_size=8",
                "model.num_layers=2",
                "model.d_model=32",
                "model.num_heads=4",
                "model.num_kv_heads=2",
                "model.mlp_dim=64",
            ],
        )
    return c


def tokenizer_grid(tok_config, resolution: int | None = None, num_frames: int | None = None):
    """``((t, h, w), codebook_size)`` that ``tok_config``'s tokenizer gives a clip of its data shape (or the one
    given), from the config alone (abstract model: no weights, no compile) -- what ``bench_tokenizer``'s
    encode yields, for benchmarking the LM without timing the tokenizer."""
    tok = nnx.merge(*tok_core.abstract_tokenizer(tok_config))
    r = int(tok_config.data.resolution if resolution is None else resolution)
    t = int(tok_config.data.num_frames if num_frames is None else num_frames)
    return tuple(int(x) for x in tok.autoencoder.latent_shape(t, r, r)[:3]), int(tok.quantizer.codebook_size)


def _one_device_mesh(dev):
    """A (1, 1, 1) mesh on exactly ``dev``; mesh_lib.make_mesh would take the default backend's device
    whenever the counts match (on a 1-GPU machine the CPU rows would run on the GPU)."""
    return Mesh(
        np.asarray([dev]).reshape(1, 1, 1), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3
    )


def _world_batch(data: dict, batch: int) -> np.ndarray:
    src = world.WorldSource(
        world.WorldConfig(resolution=int(data["resolution"]), num_frames=int(data["num_frames"])), "train"
    )
    return np.stack([src[i]["video"] for i in range(batch)])


# ============================================================================================
# Stages
# ============================================================================================


def _tokenizer_step_seconds(dev, config, steps: int):
    """Mean seconds of the jitted tokenizer train step on one untrained batch; also the last state."""
    mesh = _one_device_mesh(dev)
    tx, _ = make_optimizer(config)
    graphdef, shardings = tok_step.state_shardings(config, mesh, tx)
    state = tok_step.init_state(config, mesh, tx, shardings)
    step = tok_step.make_train_step(config, graphdef, tx, shardings, mesh)
    b = int(config.batch_size)
    video_np = _world_batch(config.data, b)
    video = jax.device_put(video_np, loop.batch_sharding(mesh))
    lr = np.float32(1e-4)
    holder = {"state": state}

    def train_once():
        holder["state"], m = step(holder["state"], video, lr)
        return m["loss"]

    return _timed(train_once, steps), (graphdef, holder["state"], video, video_np)


def bench_tokenizer(dev, config, *, steps: int) -> tuple[dict, Any]:
    """Train-step, encode and decode frames/s; returns the rows and ``(grid, codebook_size)`` for the LM.

    Where the config's convs run as matmuls (``model.conv_impl='matmul'``, the CPU column), the same step
    with XLA's native conv (``'lax'``) is timed too, as the reference for that choice."""
    t_step, (graphdef, state, video, video_np) = _tokenizer_step_seconds(dev, config, steps)
    b = int(config.batch_size)
    frames = b * video_np.shape[1]
    tok = nnx.merge(graphdef, state["params"], state["rest"])
    ae, q = tok.autoencoder, tok.quantizer
    ids = tok_core.encode_video(ae, q, video)
    t_enc = _timed(lambda: tok_core.encode_video(ae, q, video), steps)
    t_dec = _timed(lambda: tok_core.decode_indices(ae, q, ids), steps)
    rows = {
        "tokenizer_train_frames_per_s": frames / t_step,
        "tokenizer_train_seconds_per_step": t_step,
        "tokenizer_encode_frames_per_s": frames / t_enc,
        "tokenizer_decode_frames_per_s": frames / t_dec,
        "tokenizer_batch": b,
        "tokenizer_clip": list(video_np.shape[1:4]),
    }
    if config.model.conv_impl == "matmul":
        lax_config = copy.deepcopy(config)
        lax_config.model.conv_impl = "lax"
        rows["tokenizer_train_lax_conv_seconds_per_step"] = _tokenizer_step_seconds(dev, lax_config, steps)[0]
    return rows, (tuple(int(x) for x in ids.shape[1:]), int(q.codebook_size))


class LMTrainStep:
    """Our LM train step exactly as the ``LM train`` rows time it (shared by :func:`bench_lm` and
    ``videogen.bench_peer``): the config's model on a one-device mesh on ``dev``, untrained state, one fixed
    batch of random codes and captions (``numpy`` seed 0), lr 1e-4.

    ``runner(objective)`` returns ``(run_once, cfg)``: ``run_once()`` applies one jitted train step to the
    shared state (donated and replaced) and returns the loss; ``cfg`` is the config with that objective."""

    def __init__(self, dev, config, grid, codebook_size: int):
        self.config = config
        self.mesh = _one_device_mesh(dev)
        self.rules = lm_step.axis_rules(config)
        self.tcfg = lm_lib.transformer_config(config, codebook_size, grid)
        self.tx, _ = lm_lib.make_optimizer(config)
        self.graphdef, self.rest, self.shardings = lm_step.state_shardings(
            self.tcfg, self.mesh, self.tx, self.rules
        )
        self.state = lm_step.init_state(self.tcfg, self.tx, self.shardings, int(config.seed))
        b = int(config.batch_size)
        rng = np.random.default_rng(0)
        bsh = loop.batch_sharding(self.mesh)
        self.codes = jax.device_put(rng.integers(0, codebook_size, (b,) + tuple(grid), dtype=np.int32), bsh)
        self.text = jax.device_put(
            rng.integers(1, self.tcfg.text_vocab_size, (b, self.tcfg.max_text_len), dtype=np.int32), bsh
        )

    def runner(self, objective: str = "next_token", *, attention_impl: str | None = None):
        cfg = self.config.copy_and_resolve_references()
        cfg.objective = objective
        tcfg, graphdef = self.tcfg, self.graphdef
        if attention_impl is not None and attention_impl != tcfg.attention_impl:
            tcfg = dataclasses.replace(tcfg, attention_impl=attention_impl)
            graphdef = lm_step.state_shardings(tcfg, self.mesh, self.tx, self.rules)[0]
        step = lm_step.make_train_step(cfg, tcfg, graphdef, self.rest, self.tx, self.shardings, self.mesh)

        def run_once():
            with lm_step.sharding_context(self.mesh, self.rules):
                self.state, m = step(self.state, self.codes, self.text, np.float32(1e-4))
            return m["loss"]

        return run_once, cfg


def bench_lm(
    dev, config, grid, codebook_size: int, peak: float, bandwidth: float, *, steps: int, quick: bool
) -> dict:
    """LM train tokens/s + MFU; AR sampling at batch 1 and 8 vs the bandwidth bound; MaskGIT s/clip."""
    lm = LMTrainStep(dev, config, grid, codebook_size)
    tcfg = lm.tcfg
    rows: dict[str, Any] = {}
    # The headline LM row is next-token; MaskGIT's step (same FLOPs but no causal halving) is extra.
    for objective in ("next_token",) if quick else ("next_token", "maskgit"):
        run_once, cfg = lm.runner(objective)
        dt = _timed(run_once, steps)
        thr = lm_lib.lm_throughput(cfg, tcfg, steps, dt * steps, peak)
        tag = "lm_train" if objective == "next_token" else "lm_train_maskgit"
        rows.update(
            {
                f"{tag}_tokens_per_s": thr["tokens_per_sec"],
                f"{tag}_flops_per_s": thr["tflops_per_sec"] * 1e12,
                f"{tag}_mfu": thr["mfu"],
                f"{tag}_seconds_per_step": dt,
            }
        )
        if objective == "next_token" and tcfg.attention_impl == "xla":
            # The reference for our attention (heads-major layout, custom VJP): the same step through
            # jax.nn.dot_product_attention (XLA's softmax attention, differentiated by JAX); same params.
            ref_once, _ = lm.runner(objective, attention_impl="dot_product_attention")
            rows["lm_train_reference_attention_seconds_per_step"] = _timed(ref_once, steps)
    state, graphdef, rest = lm.state, lm.graphdef, lm.rest
    rows["lm_batch"] = int(config.batch_size)
    rows["lm_params"] = int(sum(x.size for x in jax.tree.leaves(state["params"])))
    rows["lm_sequence"] = tcfg.max_seq_len
    rows["lm_dtype"] = tcfg.dtype

    model = lm_lib.for_decoding(nnx.merge(graphdef, state["ema"], rest))
    gdef, mstate = nnx.split(model)
    n = tcfg.num_video_tokens
    weight_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    itemsize = jnp.dtype(tcfg.dtype).itemsize
    rows["lm_weight_bytes"] = int(weight_bytes)
    for batch in (1, 8):
        fn = lm_lib._sampler(gdef, tcfg, "next_token", 12, 1.0, None, "cosine")
        text2 = jnp.ones((2 * batch, tcfg.max_text_len), jnp.int32)
        dt = _timed(lambda: fn(mstate, text2, jax.random.key(0), jnp.float32(3.0)), 1 if quick else 2)  # noqa: B023 (called at once)
        # The static cache holds 2B sequences of L + n slots; a decode step reads all of it and every weight.
        kv_bytes = (
            2
            * tcfg.num_layers
            * 2
            * batch
            * tcfg.max_seq_len
            * tcfg.num_kv_heads
            * tcfg.resolved_head_dim
            * itemsize
        )
        rows[f"ar_sampling_b{batch}_tokens_per_s"] = batch * n / dt
        rows[f"ar_sampling_b{batch}_bound_tokens_per_s"] = batch * bandwidth / (weight_bytes + kv_bytes)
        rows[f"ar_sampling_b{batch}_kv_cache_bytes"] = int(kv_bytes)
    fn = lm_lib._sampler(gdef, tcfg, "maskgit", 12, 1.0, None, "cosine")
    text2 = jnp.ones((16, tcfg.max_text_len), jnp.int32)
    rows["maskgit_seconds_per_clip"] = (
        _timed(lambda: fn(mstate, text2, jax.random.key(0), jnp.float32(3.0)), 1 if quick else 2) / 8
    )
    if (
        not quick
    ):  # frame-causal MaskGIT (12 steps per latent frame): KV-cached vs the whole sequence per step
        for cached in (True, False):
            fn = lm_lib._sampler(gdef, tcfg, "maskgit_frames", 12, 1.0, None, "cosine", kv_cache=cached)
            rows[f"maskgit_frames_{'cached' if cached else 'uncached'}_seconds_per_clip"] = (
                _timed(lambda: fn(mstate, text2, jax.random.key(0), jnp.float32(3.0)), 2) / 8  # noqa: B023
            )
    rows["video_tokens_per_clip"] = n
    return rows


def bench_pipeline(*, quick: bool) -> dict:
    r, t, b = 64, 17, 32
    steps = 2 if quick else 10
    src = world.WorldSource(world.WorldConfig(resolution=r, num_frames=t), "train", num_clips=100_000)
    mesh = _one_device_mesh(jax.devices("cpu")[0])
    it = iter(pipeline.Pipeline(src, pipeline.PipelineConfig(global_batch_size=b), mesh=mesh))
    rate = bench_data._rate(lambda: jax.block_until_ready(next(it)["video"]), b, steps)
    return {"data_pipeline_clips_per_s": rate, "data_pipeline_clip": [t, r, r]}


def peak_memory(dev) -> tuple[float, str]:
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return float(stats["peak_bytes_in_use"]), "device peak bytes in use"
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(rss if sys.platform == "darwin" else rss * 1024), "process peak RSS (host)"


# ============================================================================================
# Suite, table, CLI
# ============================================================================================


def run_platform(dev, *, quick: bool, pipeline_rows: dict) -> dict:
    on_gpu = dev.platform != "cpu"
    dtype = "bfloat16" if on_gpu else "float32"
    t0 = time.perf_counter()
    with jax.default_device(dev):
        rows: dict[str, Any] = {
            "device": str(dev.device_kind),
            "platform": dev.platform,
            "matmul_dtype": dtype,
        }
        n = 8192 if on_gpu else (1024 if quick else 2048)
        rows["matmul_peak_flops"] = matmul_peak(dev, n=n, dtype=dtype, repeats=3 if quick else 10)
        nbytes = (4 << 30) if on_gpu else ((64 << 20) if quick else (512 << 20))
        rows["memory_bandwidth_bytes_per_s"] = memory_bandwidth(
            dev, num_bytes=nbytes, repeats=3 if quick else 10
        )
        tok_cfg = tokenizer_config(on_gpu, quick)
        tok_rows, (grid, codebook) = bench_tokenizer(dev, tok_cfg, steps=2 if quick else 5)
        rows.update(tok_rows)
        lm_cfg = lm_config(on_gpu, quick)
        lm_cfg.data.resolution = tok_cfg.data.resolution  # the LM runs on this tokenizer's token grid
        lm_cfg.data.num_frames = tok_cfg.data.num_frames
        rows.update(
            bench_lm(
                dev,
                lm_cfg,
                grid,
                codebook,
                rows["matmul_peak_flops"],
                rows["memory_bandwidth_bytes_per_s"],
                steps=2 if quick else 10,
                quick=quick,
            )
        )
        rows.update(pipeline_rows)
        rows["peak_memory_bytes"], rows["peak_memory_kind"] = peak_memory(dev)
    rows["bench_seconds"] = time.perf_counter() - t0
    return rows


def _fmt(v: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def format_table(result: dict) -> str:
    plats = list(result["platforms"])
    lines = [
        "| what | " + " | ".join(f"{p} ({result['platforms'][p]['device']})" for p in plats) + " |",
        "|---|" + "---:|" * len(plats),
    ]

    def row(label, fn):
        cells = []
        for p in plats:
            try:
                cells.append(fn(result["platforms"][p]))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    r0 = result["platforms"][plats[0]]
    row(
        "matmul peak (measured; the limit)",
        lambda r: f"{_fmt(r['matmul_peak_flops'], 'FLOP/s')} {r['matmul_dtype']}",
    )
    row("memory bandwidth (measured)", lambda r: _fmt(r["memory_bandwidth_bytes_per_s"], "B/s"))
    clip = "×".join(str(x) for x in r0.get("tokenizer_clip", []))
    row(
        f"tokenizer train step (batch {r0.get('tokenizer_batch')}, {clip} on CPU)",
        lambda r: (
            f"{r['tokenizer_train_frames_per_s']:.4g} frames/s ({r['tokenizer_train_seconds_per_step']:.3g} s/step)"
        ),
    )
    row(
        "〃 with XLA's native 3D conv instead (model.conv_impl=lax; the reference)",
        lambda r: (
            f"{r['tokenizer_train_lax_conv_seconds_per_step']:.3g} s/step: matmul convs "
            f"{r['tokenizer_train_lax_conv_seconds_per_step'] / r['tokenizer_train_seconds_per_step']:.2f}× faster"
        ),
    )
    row("tokenizer encode", lambda r: f"{r['tokenizer_encode_frames_per_s']:.4g} frames/s")
    row("tokenizer decode", lambda r: f"{r['tokenizer_decode_frames_per_s']:.4g} frames/s")
    row(
        f"LM train, next-token (batch {r0.get('lm_batch')} × {r0.get('lm_sequence')} tokens, "
        f"{r0.get('lm_params', 0) / 1e6:.2g}M params)",
        lambda r: (
            f"{r['lm_train_tokens_per_s']:.4g} tokens/s, {_fmt(r['lm_train_flops_per_s'], 'FLOP/s')}, "
            f"MFU {r['lm_train_mfu']:.1%}"
        ),
    )
    row(
        "〃 with jax.nn.dot_product_attention instead (the reference)",
        lambda r: (
            f"{r['lm_train_reference_attention_seconds_per_step']:.3g} s/step vs "
            f"{r['lm_train_seconds_per_step']:.3g}: ours "
            f"{r['lm_train_reference_attention_seconds_per_step'] / r['lm_train_seconds_per_step']:.2f}× faster"
        ),
    )
    row(
        "LM train, MaskGIT",
        lambda r: f"{r['lm_train_maskgit_tokens_per_s']:.4g} tokens/s, MFU {r['lm_train_maskgit_mfu']:.1%}",
    )
    for b in (1, 8):
        row(
            f"AR sampling batch {b} (CFG: {2 * b} sequences) vs memory-bandwidth bound",
            lambda r, b=b: (
                f"{r[f'ar_sampling_b{b}_tokens_per_s']:.4g} tokens/s of "
                f"{r[f'ar_sampling_b{b}_bound_tokens_per_s']:.4g} "
                f"({r[f'ar_sampling_b{b}_tokens_per_s'] / r[f'ar_sampling_b{b}_bound_tokens_per_s']:.1%})"
            ),
        )
    row(
        f"MaskGIT 12 steps, batch 8 ({r0.get('video_tokens_per_clip')} tokens/clip)",
        lambda r: f"{r['maskgit_seconds_per_clip']:.3g} s/clip",
    )
    if "maskgit_frames_cached_seconds_per_clip" in r0:
        row(
            "frame-causal MaskGIT, 12 steps per latent frame, batch 8, KV cache vs whole sequence per step",
            lambda r: (
                f"{r['maskgit_frames_cached_seconds_per_clip']:.3g} s/clip vs "
                f"{r['maskgit_frames_uncached_seconds_per_clip']:.3g}: "
                f"{r['maskgit_frames_uncached_seconds_per_clip'] / r['maskgit_frames_cached_seconds_per_clip']:.2f}× faster"
            ),
        )
    row(
        "data pipeline (world → global arrays, 64×64×17, batch 32)",
        lambda r: f"{r['data_pipeline_clips_per_s']:.4g} clips/s",
    )
    row("peak memory", lambda r: f"{r['peak_memory_bytes'] / 2**30:.2f} GiB ({r['peak_memory_kind']})")
    return "\n".join(lines)


def run(*, quick: bool = False, platforms: str = "auto") -> dict:
    devs = []
    wanted = ["cpu", "gpu"] if platforms == "auto" else [p.strip() for p in platforms.split(",") if p.strip()]
    for p in wanted:
        try:
            devs.append(jax.devices(p)[0])
        except RuntimeError:
            if platforms != "auto":
                raise ValueError(
                    f"--platforms {platforms!r}: no {p} device here; available: "
                    f"{sorted({d.platform for d in jax.devices()})} (and cpu)."
                ) from None
    pipeline_rows = bench_pipeline(quick=quick)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m videogen.bench" + (" --quick" if quick else ""),
        "quick": quick,
        "machine": {
            "node": platform.node(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "jax": jax.__version__,
        },
        "platforms": {},
    }
    for dev in devs:
        result["platforms"][dev.platform] = run_platform(dev, quick=quick, pipeline_rows=pipeline_rows)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m videogen.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small models, few steps (smoke test)")
    p.add_argument("--out", default="bench.json", help="JSON output path")
    p.add_argument(
        "--platforms", default="auto", help="'auto' (cpu + gpu if present) or e.g. 'cpu' / 'cpu,gpu'"
    )
    args = p.parse_args(argv)
    result = run(quick=args.quick, platforms=args.platforms)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"{result['command']} on {result['machine']['node']} ({result['machine']['cpus']} CPUs, load "
        f"{result['machine']['load_average']}), {result['date']}; JSON: {args.out}"
    )
    print(format_table(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
