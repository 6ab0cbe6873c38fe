"""The command line both trainers share (``python -m tokenizer.train``, ``python -m videogen.train``):
``--config FILE[:VARIANT] --workdir DIR [--config.KEY=VALUE ...]``, checked before anything is built."""

from __future__ import annotations

import json
import sys

from videogen import config_checks, errors
from videogen.training import checkpointing, distributed
from videogen.training.config import apply_overrides, load_config

__all__ = ["run_cli"]


def run_cli(
    argv, *, prog: str, description: str, example_config: str, train_fn, kind: str = "tokenizer"
) -> dict:
    """`--config FILE[:VARIANT] --workdir DIR [--config.KEY=VALUE ...]` → train_fn(config, workdir).

    Shared by both trainers (tokenizer.train and videogen.train, ``kind`` 'tokenizer' / 'lm') so they parse
    overrides the same way. The config and the workdir are checked before anything is built or written; a
    mistake is one line on stderr and exit code 2 (``-v``: with its traceback).
    """
    p = errors.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Overrides: --config.KEY=VALUE (dotted keys), e.g. --config.steps=200 --config.model.dtype=bfloat16",
    )
    p.add_argument("--config", required=True, help=f"config file and variant, e.g. {example_config}")
    p.add_argument(
        "--workdir", required=True, help="output folder; re-running resumes from its latest checkpoint"
    )
    errors.add_verbose(p)
    distributed.add_arguments(p)
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if not (o.startswith("--config.") or (not o.startswith("-") and "=" in o))]
    if bad:
        p.error(f"unrecognised arguments {bad}; overrides look like --config.steps=200")
    errors.configure_logging(args.verbose)
    with errors.reported(prog, args.verbose):
        distributed.initialize_from_args(
            args
        )  # jax.distributed first (explicit flags, SLURM, TPU pod), then JAX
        config = apply_overrides(load_config(args.config), overrides)
        config_checks.check_training_request(
            config, args.workdir, kind
        )  # before anything is built or written
        try:
            metrics = train_fn(config, args.workdir)
        except (checkpointing.WorkdirBusyError, checkpointing.NonFiniteError) as e:
            print(f"{prog}: error: {errors.one_line(e)}", file=sys.stderr)
            sys.exit(1)
    print(
        json.dumps(
            {k: v for k, v in metrics.items() if isinstance(v, (int, float, type(None)))}, sort_keys=True
        )
    )
    if metrics.get("preempted"):
        sys.exit(143)  # 128 + SIGTERM: the checkpoint is saved; rerun the same command to resume
    return metrics
