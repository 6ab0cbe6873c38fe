"""Config validation that runs before anything compiles; every error names the config field and the fix.

The trainers call these (the other checks live next to what they check: batch size vs data-parallel size
in each trainer, clip shape vs compression in ``tokenizer.model.check_input_shape`` /
``videogen.train.latent_grid``, tokenizer workdir in ``videogen.train.load_tokenizer_for_lm``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import jax

from videogen import mesh as mesh_lib

__all__ = ["check_lm_vocab", "check_mesh", "check_resume_compatible"]


def check_mesh(axes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """``config.mesh`` against the devices present; the resolved shape, or a ValueError naming the fix."""
    try:
        return mesh_lib.resolve_mesh_shape(axes, num_devices)
    except ValueError as e:
        procs = jax.process_count()
        where = (f"{num_devices} devices" if procs == 1 else
                 f"{num_devices} devices over {procs} processes x {num_devices // procs}")
        example = ", ".join(f"--config.mesh.{k}={'-1' if i == 0 else 1}" for i, k in enumerate(axes))
        raise ValueError(f"config.mesh={dict(axes)} does not fit the {where}: {e} Fix: e.g. {example} (data "
                         "parallel over all devices); on CPU XLA_FLAGS=--xla_force_host_platform_device_count=N "
                         "sets the device count.") from None


def check_lm_vocab(config, codebook_size: int, tokenizer_workdir=None) -> None:
    """The LM head against the tokenizer's codebook (``model.head`` / ``model.group_bits`` /
    ``model.codebook_size``), before the TransformerConfig is built."""
    model = config.model
    head = model.get("head", "bitgroups")
    c = int(codebook_size)
    src = f"the tokenizer in tokenizer_workdir={str(tokenizer_workdir)!r}" if tokenizer_workdir else "the tokenizer"
    if head == "bitgroups":
        if c < 2 or c & (c - 1):
            raise ValueError(
                f"model.head='bitgroups' needs a power-of-2 codebook (LFQ: 2^num_bits codes), but {src} has "
                f"codebook_size={c} (FSQ/VQ codebooks need not be powers of 2). Fix: --config.model.head=softmax, "
                "or an LFQ tokenizer.")
        k = c.bit_length() - 1
        g = model.get("group_bits")
        if g is not None and (int(g) < 1 or k % int(g)):
            divs = [d for d in range(1, k + 1) if k % d == 0]
            raise ValueError(f"model.group_bits={g} must divide the {k} bits of {src}'s {c} codes: use one of "
                             f"{divs} (--config.model.group_bits={divs[len(divs) // 2]}), or None for K/2.")
    text_vocab = int(config.text.vocab_size)
    if text_vocab + c + 1 >= 2**31:
        raise ValueError(f"text.vocab_size={text_vocab} + codebook_size={c} + 1 overflows int32 token ids: use a "
                         "smaller text.vocab_size or a smaller tokenizer codebook.")


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


def check_resume_compatible(workdir, config: Mapping, keys: Sequence[str], *, tag: str, has_checkpoint: bool,
                            hints: Mapping[str, str] | None = None) -> None:
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
        problems.append(f"{key}={new!r} but the checkpoints were trained with {key}={old!r}"
                        + (f" ({hint})" if hint else "") + f"; rerun with --config.{key}={old!r}")
    if problems:
        raise ValueError(f"[{tag}] cannot resume {workdir}: " + "; ".join(problems)
                         + f". Or start a new run with another --workdir (the config saved with the checkpoints is "
                         f"{path}).")
