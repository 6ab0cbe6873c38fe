"""Multi-process set-up: ``jax.distributed.initialize`` before anything touches a JAX backend.

Three ways to say how many processes there are (first match wins):

1. Explicit: ``--coordinator HOST:PORT --num-processes N --process-id I`` on the trainers' command line
   (or ``initialize(coordinator=..., num_processes=..., process_id=...)``). Every process gets the same
   coordinator address (process 0 listens there) and its own id.
2. Environment: ``VIDEOGEN_COORDINATOR`` / ``VIDEOGEN_NUM_PROCESSES`` / ``VIDEOGEN_PROCESS_ID`` (same
   meaning), handy for hand-written launchers.
3. Auto-detected clusters: SLURM (``srun`` with more than one task), TPU pod slices (several TPU worker
   hosts), Open MPI / MPICH (``mpirun``), or ``JAX_COORDINATOR_ADDRESS`` set: JAX reads the cluster from
   the environment (``jax.distributed.initialize()`` with no arguments).

Otherwise it is a single-process run and nothing is initialised. On CPU the cross-process collectives are
gloo (JAX's default, ``jax_cpu_collectives_implementation``); on GPU NCCL, on TPU ICI/DCN.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
from jax._src import distributed as _dist
from jax._src import xla_bridge

from videogen import checks
from videogen.errors import UsageError

__all__ = ["add_arguments", "detect_cluster", "initialize", "is_initialized"]

_ENV = ("VIDEOGEN_COORDINATOR", "VIDEOGEN_NUM_PROCESSES", "VIDEOGEN_PROCESS_ID")


def is_initialized() -> bool:
    return _dist.global_state.client is not None


def detect_cluster(env=None) -> str | None:
    """The cluster JAX can auto-detect from ``env`` (default ``os.environ``), or None for a single process."""
    env = os.environ if env is None else env
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "jax-env"
    if (
        int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1) > 1
        and env.get("SLURM_PROCID") is not None
    ):
        return "slurm"
    if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return "tpu"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1 or int(env.get("PMI_SIZE", "1") or 1) > 1:
        return "mpi"
    return None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    timeout_s: int = 300,
) -> bool:
    """Initialises ``jax.distributed`` when there is more than one process; returns True if it did.

    Must run before the first JAX computation (device query, array creation) of the process.
    """
    if is_initialized():
        return True
    env = os.environ
    coordinator = coordinator or env.get(_ENV[0]) or None
    if num_processes is None and env.get(_ENV[1]):
        num_processes = int(env[_ENV[1]])
    if process_id is None and env.get(_ENV[2]):
        process_id = int(env[_ENV[2]])
    explicit = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(explicit):
        if not all(explicit):
            missing = [
                n
                for n, given in zip(("--coordinator", "--num-processes", "--process-id"), explicit)
                if not given
            ]
            raise UsageError(
                f"multi-process run: also pass {', '.join(missing)} (every process needs the "
                "coordinator HOST:PORT of process 0, the number of processes and its own id 0..N-1)."
            )
        if not 0 <= int(process_id) < int(num_processes):
            raise UsageError(
                f"--process-id={process_id} must be in 0..{int(num_processes) - 1} "
                f"(--num-processes={num_processes})."
            )
        if int(num_processes) == 1:
            return False
        _check_backend_not_started()
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=int(num_processes),
            process_id=int(process_id),
            local_device_ids=local_device_ids,
            initialization_timeout=int(timeout_s),
        )
        return True
    cluster = detect_cluster()
    if cluster is None:
        return False
    _check_backend_not_started()
    jax.distributed.initialize(local_device_ids=local_device_ids, initialization_timeout=int(timeout_s))
    return True


def _check_backend_not_started() -> None:
    if xla_bridge.backends_are_initialized():
        raise RuntimeError(
            "jax.distributed must be initialised before the first JAX computation of the process: "
            "call videogen.training.distributed.initialize() first thing (the trainers' CLIs do)."
        )


def add_arguments(parser) -> None:
    """``--coordinator`` / ``--num-processes`` / ``--process-id`` on an argparse parser."""
    g = parser.add_argument_group("multi-process (jax.distributed; auto-detected on SLURM, TPU pods, mpirun)")
    g.add_argument("--coordinator", help="HOST:PORT of process 0, e.g. node0:12345 (same on every process)")
    g.add_argument("--num-processes", type=checks.positive_int, help="number of processes of the run")
    g.add_argument("--process-id", type=checks.nonnegative_int, help="this process's id, 0..num_processes-1")


def initialize_from_args(args) -> bool:
    return initialize(
        getattr(args, "coordinator", None),
        getattr(args, "num_processes", None),
        getattr(args, "process_id", None),
    )
