"""``videogen plan --config ...``: "will it fit" without training.

Builds the mesh and the sharded abstract train state (nothing allocated), compiles the train step ahead of
time for the config's global batch (``jit(...).lower(abstract args).compile()``), and reports:

* the parameter count (and optimizer-state elements),
* per-device memory from XLA's compiled memory analysis: arguments (params, optimizer state, EMA, the
  batch), outputs, temporaries (activations, gradients), generated code, and their peak sum
  (``argument + output - aliased + temp``; the state is donated, so outputs alias it),
* the device's memory limit where the runtime reports one (GPU/TPU) and whether the peak fits,
* the sharding of every parameter and of its optimizer slots (Adam mu/nu), and the optimizer scalars.

Works for both trainers: a config with ``tokenizer_workdir`` (or ``model.codebook_size`` and
``model.video_grid``) is the LM (only the tokenizer's ``config.json`` is read, no weights), a config with
``quantizer`` is the video tokenizer. The frozen tokenizer that encodes the LM's batches is not included.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from tokenizer import train_step as tok_step
from tokenizer.core import autoencoder_config, quantizer_kwargs
from tokenizer.model import check_input_shape
from tokenizer.quantizers import make_quantizer
from videogen import config_checks
from videogen import lm as lm_lib
from videogen.errors import UsageError
from videogen.lm import attention_is_causal, check_objective, train_seq_len, transformer_config
from videogen.lm import train_step as lm_step
from videogen.lm.model import flops_per_token
from videogen.training import loop
from videogen.training import mesh as mesh_lib
from videogen.training.optim import make_optimizer

__all__ = ["format_plan", "plan", "plan_lm", "plan_tokenizer"]


def _bytes_per_device(abstract, shardings) -> int:
    total = 0
    for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
        shape = s.shard_shape(a.shape) if a.shape else ()
        total += math.prod(shape) * jnp.dtype(a.dtype).itemsize
    return total


def _memory(compiled) -> dict[str, int]:
    m = compiled.memory_analysis()
    if m is None:
        return {}
    out = {
        k: int(getattr(m, f"{k}_size_in_bytes", 0) or 0)
        for k in ("argument", "output", "alias", "temp", "generated_code")
    }
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def _device_limit() -> int | None:
    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 -- CPU and some runtimes report nothing
        return None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def _finish(kind, config, mesh, abstract, shardings, compiled, table, extra) -> dict[str, Any]:
    mem = _memory(compiled)
    limit = _device_limit()
    flops = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost.get("flops")) if cost and cost.get("flops") is not None else None
    except Exception:  # noqa: BLE001
        pass
    return {
        "kind": kind,
        "mesh": dict(mesh.shape),
        "num_devices": int(mesh.devices.size),
        "platform": mesh.devices.flat[0].platform,
        "global_batch_size": int(config.batch_size),
        "num_params": int(sum(x.size for x in jax.tree.leaves(abstract["params"]))),
        "num_opt_state": int(sum(x.size for x in jax.tree.leaves(abstract["opt_state"]))),
        "state_bytes_per_device": _bytes_per_device(abstract, shardings),
        "memory_per_device": mem,
        "device_memory_limit": limit,
        "fits": None if limit is None or not mem else mem["peak"] <= limit,
        "step_flops_per_device": flops,
        "shardings": table,
        **extra,
    }


def plan_tokenizer(config) -> dict[str, Any]:
    mesh = loop.make_mesh(config)
    tok_step.check_config(config, mesh)
    tx, _ = make_optimizer(config)
    graphdef, shardings = tok_step.state_shardings(config, mesh, tx)
    abstract = tok_step.abstract_state(config, mesh, tx, shardings)
    step = tok_step.make_train_step(config, graphdef, tx, shardings, mesh)
    d = config.data
    video = jax.ShapeDtypeStruct(
        (int(config.batch_size), int(d.num_frames), int(d.resolution), int(d.resolution), 3),
        jnp.uint8,
        sharding=loop.batch_sharding(mesh),
    )
    lr = jax.ShapeDtypeStruct((), jnp.float32)
    compiled = step.lower(abstract, video, lr).compile()
    ae = autoencoder_config(config)
    return _finish(
        "tokenizer",
        config,
        mesh,
        abstract,
        shardings,
        compiled,
        mesh_lib.describe_shardings(abstract, shardings),
        {"compression": list(ae.compression), "quantizer": config.quantizer.kind},
    )


def _lm_codebook_and_grid(config) -> tuple[int, tuple[int, int, int]]:
    m = config.model
    if m.get("codebook_size") and m.get("video_grid"):
        return int(m.codebook_size), tuple(int(g) for g in m.video_grid)
    wd = config.get("tokenizer_workdir")
    if not wd or not (Path(wd) / "config.json").is_file():
        raise UsageError(
            f"plan: tokenizer_workdir={wd!r} has no config.json; pass --config.tokenizer_workdir=DIR "
            "of a tokenizer run, or set --config.model.codebook_size=N and "
            "--config.model.video_grid=(t,h,w) to plan without one."
        )
    tc = ml_collections.ConfigDict(json.loads((Path(wd) / "config.json").read_text()))
    q_kw = quantizer_kwargs(tc)
    kind = q_kw.pop("kind")
    codebook = nnx.eval_shape(lambda: make_quantizer(kind, **q_kw, rngs=nnx.Rngs(0))).codebook_size
    ae = autoencoder_config(tc)
    nf, res = int(config.data.num_frames), int(config.data.resolution)
    try:
        check_input_shape(ae, nf, res, res)
    except ValueError as e:
        raise UsageError(
            f"data ({nf} frames of {res}x{res}) is incompatible with the tokenizer in {wd} "
            f"(compression {ae.compression}): {e}"
        ) from e
    ct, cs, _ = ae.compression
    return int(codebook), (1 + (nf - 1) // ct, res // cs, res // cs)


def plan_lm(config, devices=None) -> dict[str, Any]:
    check_objective(config.objective)
    mesh = loop.make_mesh(config, devices)
    dp = mesh_lib.data_parallel_size(mesh)
    accum = int(config.get("grad_accum_steps", 1))
    if int(config.batch_size) % (dp * accum):
        raise UsageError(
            f"batch_size={config.batch_size} must be a multiple of the data-parallel size {dp} x "
            f"grad_accum_steps={accum} of mesh {dict(mesh.shape)}; use "
            f"{math.ceil(int(config.batch_size) / (dp * accum)) * dp * accum}."
        )
    codebook, grid = _lm_codebook_and_grid(config)
    config_checks.check_lm_vocab(config, codebook, config.get("tokenizer_workdir"))
    tcfg = transformer_config(config, codebook, grid)
    rules = lm_step.axis_rules(config)
    tx, _ = lm_lib.make_optimizer(config)
    graphdef, rest, shardings = lm_step.state_shardings(tcfg, mesh, tx, rules)
    abstract = lm_step.abstract_state(tcfg, tx, shardings, int(config.seed))
    step = lm_step.make_train_step(config, tcfg, graphdef, rest, tx, shardings, mesh)
    bsh = loop.batch_sharding(mesh)
    b = int(config.batch_size)
    codes = jax.ShapeDtypeStruct((b,) + tuple(grid), jnp.int32, sharding=bsh)
    text = jax.ShapeDtypeStruct((b, tcfg.max_text_len), jnp.int32, sharding=bsh)
    lr = jax.ShapeDtypeStruct((), jnp.float32)
    with lm_step.sharding_context(mesh, rules):
        compiled = step.lower(abstract, codes, text, lr).compile()
    seq_len = train_seq_len(config, tcfg)
    return _finish(
        "lm",
        config,
        mesh,
        abstract,
        shardings,
        compiled,
        mesh_lib.describe_shardings({**abstract, "rest": {}}, shardings),
        {
            "objective": config.objective,
            "codebook_size": codebook,
            "video_grid": list(grid),
            "seq_len": seq_len,
            "model_flops_per_step": flops_per_token(
                tcfg, seq_len, causal=attention_is_causal(config.objective)
            )
            * seq_len
            * b,
        },
    )


def plan(config, devices=None) -> dict[str, Any]:
    """The plan of either trainer's config (see the module docstring)."""
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config)
    if "quantizer" in config and "tokenizer_workdir" not in config:
        return plan_tokenizer(config)
    return plan_lm(config, devices)


def _gib(n) -> str:
    return "n/a" if n is None else f"{n / 2**30:.3f} GiB" if n >= 2**24 else f"{n / 2**20:.2f} MiB"


def format_plan(p: dict[str, Any]) -> str:
    mem = p["memory_per_device"]
    lines = [
        f"plan ({p['kind']}): mesh {p['mesh']} = {p['num_devices']} {p['platform']} devices, global batch "
        f"{p['global_batch_size']}",
        f"parameters: {p['num_params']:,} (optimizer state {p['num_opt_state']:,} elements); train state per "
        f"device {_gib(p['state_bytes_per_device'])}",
    ]
    if mem:
        lines.append(
            f"per-device memory (compiled train step): arguments {_gib(mem['argument'])}, outputs "
            f"{_gib(mem['output'])} (aliased {_gib(mem['alias'])}), temporaries {_gib(mem['temp'])}, code "
            f"{_gib(mem['generated_code'])}; peak {_gib(mem['peak'])}"
        )
    if p["device_memory_limit"] is not None:
        lines.append(
            f"device memory limit {_gib(p['device_memory_limit'])}: "
            + (
                "fits"
                if p["fits"]
                else "DOES NOT FIT -- raise mesh.fsdp, lower batch_size, "
                "set model.remat=dots or grad_accum_steps"
            )
        )
    else:
        lines.append(
            "device memory limit: not reported by this runtime (CPU); compare the peak with the target"
        )
    if p.get("step_flops_per_device"):
        lines.append(f"XLA cost analysis: {p['step_flops_per_device'] / 1e9:.3g} GFLOP per device per step")
    lines.append("shardings (param, shape, sharding, optimizer slots):")
    lines.append(p["shardings"])
    return "\n".join(lines)
