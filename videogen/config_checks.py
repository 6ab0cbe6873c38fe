"""Config validation that runs before anything compiles; every error names the config field and the fix.

The trainers call these (the other checks live next to what they check: batch size vs data-parallel size
in each trainer, clip shape vs compression in ``tokenizer.model.check_input_shape`` /
``videogen.train.latent_grid``, tokenizer workdir in ``videogen.lm.load_tokenizer_for_lm``). Each failure
is a UsageError: the command lines report it in one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax

from tokenizer.core import train_data_spec
from videogen import checks
from videogen.data.sources import build_source
from videogen.errors import UsageError
from videogen.training import mesh as mesh_lib

__all__ = [
    "check_lm_vocab",
    "check_mesh",
    "check_resume_compatible",
    "check_training_request",
    "check_values",
]

# How a CPU run gets more devices, for the trainers (`videogen plan` has its own --num-devices).
CPU_DEVICES_HINT = "on CPU XLA_FLAGS=--xla_force_host_platform_device_count=N sets the device count"

# Trainer config values that must be whole numbers >= 1, and >= 0 (0 = off / none); keys a config lacks are
# skipped (the two trainers share most of them).
_POSITIVE = (
    "steps",
    "batch_size",
    "log_every",
    "ckpt_every",
    "max_to_keep",
    "grad_accum_steps",
    "data.resolution",
    "data.num_frames",
    "eval.batch_size",
    "eval.num_clips",
    "text.max_length",
    "text.vocab_size",
    "text.num_captions",
    "eval.data.num_clips",
)
_NON_NEGATIVE = (
    "seed",
    "data_threads",
    "eval.every",
    "eval.num_samples",
    "eval.num_batches",
    "optim.warmup_steps",
    "sample.num_prompts",
)


def check_values(config) -> None:
    """Counts and sizes in range and every float finite, before anything is built or written: ``steps=-5``
    would otherwise train nothing and still evaluate, ``batch_size=0`` fail in the data pipeline after the
    model is built."""
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for key in _POSITIVE + _NON_NEGATIVE:
        parent, _, leaf = key.rpartition(".")
        node = _get(config, parent) if parent else config
        if not isinstance(node, Mapping) or leaf not in node:
            continue
        value = node[leaf]
        low = 1 if key in _POSITIVE else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"config.{key}={value!r}: must be a whole number >= {low} (--config.{key}=N).")

    def walk(node, prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}{name}"
            if isinstance(value, Mapping):
                walk(value, key + ".")
            elif isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"config.{key}={value!r}: must be a finite number.")

    walk(config, "")


def check_training_request(config, workdir, kind: str) -> None:
    """What a trainer's command line asks for, before anything is built or written: the config's values, the
    workdir (a folder this run can write, not another kind of run's), the data's paths and, for the LM
    (``kind='lm'``), a trained tokenizer in ``tokenizer_workdir``."""
    check_values(config)
    checks.training_workdir(workdir, "--workdir", kind)
    if kind == "tokenizer":
        data = train_data_spec(config)  # a tokenizer reads no captions
    else:
        data = config.data.to_dict() if hasattr(config.data, "to_dict") else dict(config.data)
    checks.data_spec(data, "config.data")
    if data.get("kind", "world") in ("world", "folder"):
        # The world's source checks its sizes without rendering anything. A folder is indexed here as well as
        # by the trainer (one ffmpeg probe per file, in parallel): a folder with no usable clip, or uncaptioned
        # videos an LM needs captions for, is refused before anything is written.
        build_source(data, "train")
    eval_data = (config.get("eval") or {}).get("data") or {}
    if eval_data.get("root"):
        checks.video_folder(eval_data["root"], "config.eval.data.root")
    if kind == "lm":
        if not config.get("tokenizer_workdir"):
            raise UsageError(
                "config.tokenizer_workdir is required: the workdir of a trained video tokenizer, e.g. "
                "--config.tokenizer_workdir=runs/tok_tiny (train one with `python -m tokenizer.train "
                "--config experiments/tokenizer_world.py:tiny --workdir runs/tok_tiny`)."
            )
        checks.trained_workdir(config.tokenizer_workdir, "--config.tokenizer_workdir", expect="tokenizer")


def check_mesh(
    axes: Mapping[str, int], num_devices: int, *, more_devices: str = CPU_DEVICES_HINT
) -> dict[str, int]:
    """``config.mesh`` against the devices present; the resolved shape, or a UsageError naming the fix
    (``more_devices``: how to get more devices where this check runs)."""
    try:
        return mesh_lib.resolve_mesh_shape(axes, num_devices)
    except ValueError as e:
        procs = jax.process_count()
        where = (
            f"{num_devices} devices"
            if procs == 1
            else f"{num_devices} devices over {procs} processes x {num_devices // procs}"
        )
        example = ", ".join(f"--config.mesh.{k}={'-1' if i == 0 else 1}" for i, k in enumerate(axes))
        raise UsageError(
            f"config.mesh={dict(axes)} does not fit the {where}: {e} Fix: e.g. {example} (data "
            f"parallel over all devices); {more_devices}."
        ) from None


def check_lm_vocab(config, codebook_size: int, tokenizer_workdir=None) -> None:
    """The LM head against the tokenizer's codebook (``model.head`` / ``model.group_bits`` /
    ``model.codebook_size``), before the TransformerConfig is built."""
    model = config.model
    head = model.get("head", "bitgroups")
    c = int(codebook_size)
    src = (
        f"the tokenizer in tokenizer_workdir={str(tokenizer_workdir)!r}"
        if tokenizer_workdir
        else "the tokenizer"
    )
    if head == "bitgroups":
        if c < 2 or c & (c - 1):
            raise UsageError(
                f"model.head='bitgroups' needs a power-of-2 codebook (LFQ: 2^num_bits codes), but {src} has "
                f"codebook_size={c} (FSQ/VQ codebooks need not be powers of 2). Fix: --config.model.head=softmax, "
                "or an LFQ tokenizer."
            )
        k = c.bit_length() - 1
        g = model.get("group_bits")
        if g is not None and (int(g) < 1 or k % int(g)):
            divs = [d for d in range(1, k + 1) if k % d == 0]
            raise UsageError(
                f"model.group_bits={g} must divide the {k} bits of {src}'s {c} codes: use one of "
                f"{divs} (--config.model.group_bits={divs[len(divs) // 2]}), or None for K/2."
            )
    text_vocab = int(config.text.vocab_size)
    if text_vocab + c + 1 >= 2**31:
        raise UsageError(
            f"text.vocab_size={text_vocab} + codebook_size={c} + 1 overflows int32 token ids: use a "
            "smaller text.vocab_size or a smaller tokenizer codebook."
        )


def _get(tree, dotted: str):
    node = tree
    for name in dotted.split("."):
        if not isinstance(node, Mapping) or name not in node:
            return None
        node = node[name]
    return node


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _norm(x) for k, x in v.items()}
    return v


def check_resume_compatible(
    workdir,
    config: Mapping,
    keys: Sequence[str],
    *,
    tag: str,
    has_checkpoint: bool,
    hints: Mapping[str, str] | None = None,
) -> None:
    """Before resuming ``workdir``: the shape-determining ``keys`` (dotted) of ``config`` must equal those in
    the workdir's ``config.json`` (what its checkpoints were trained with). Silent for a fresh workdir."""
    path = Path(workdir) / "config.json"
    if not has_checkpoint or not path.is_file():
        return
    saved = json.loads(path.read_text())
    plain = _norm(dict(config))
    problems = []
    for key in keys:
        old, new = _norm(_get(saved, key)), _norm(_get(plain, key))
        if old is None or new is None or old == new:
            continue
        hint = (hints or {}).get(key)
        problems.append(
            f"{key}={new!r} but the checkpoints were trained with {key}={old!r}"
            + (f" ({hint})" if hint else "")
            + f"; rerun with --config.{key}={old!r}"
        )
    if problems:
        raise UsageError(
            f"[{tag}] cannot resume {workdir}: "
            + "; ".join(problems)
            + f". Or start a new run with another --workdir (the config saved with the checkpoints is "
            f"{path})."
        )
