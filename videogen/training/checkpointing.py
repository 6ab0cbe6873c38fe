"""Checkpoint machinery shared by both trainers (tokenizer/train.py, videogen/train.py).

* :func:`make_manager` -- the orbax ``CheckpointManager`` of a workdir: async saves, items ``model``
  (what inference needs: EMA params, quantizer state), ``train`` (params, optimizer state, step),
  ``pipeline`` (JSON: the data position) and ``integrity`` (JSON: a fingerprint of every saved array).
* :func:`save` / :func:`restore` -- one step; :func:`restore` always restores into an abstract target
  whose leaves carry the *current* mesh's shardings (so a checkpoint written on 8 devices restores on 1,
  4, or 2 processes x 4, and back), then recomputes the fingerprints and refuses silently damaged data.
* :func:`restore_latest` -- the newest checkpoint that restores and verifies; newer damaged ones
  (truncated files, garbled bytes, missing items) are moved to ``<workdir>/checkpoints.corrupt/`` and the
  run says so. Nothing is moved when no step restores (that is a config mismatch, not corruption).
* :class:`WorkdirLock` -- one run per workdir (``fcntl.flock``: the OS drops it when the process dies,
  so a crashed or SIGKILLed run never leaves it stuck).
* :class:`Preemption` -- SIGTERM (preemption) -> the loop saves a final checkpoint and stops cleanly.
  Under ``jax.distributed`` with several processes, JAX's preemption sync manager owns SIGTERM and agrees
  on the step at which every process saves.
* :class:`FiniteWatch` -- non-finite loss / gradient norm stops the run before anything non-finite is
  saved; the last good checkpoint stays.
* :func:`export_params` / :func:`load_params` -- a params-only copy of one step (the ``model`` item, no
  optimizer state) with the workdir's config, for sampling and notebooks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax._src import distributed as _dist
from jax.experimental import multihost_utils

from videogen.errors import UsageError

__all__ = [
    "ITEMS",
    "CheckpointIntegrityError",
    "FiniteWatch",
    "NonFiniteError",
    "Preemption",
    "UnusableCheckpointError",
    "WorkdirBusyError",
    "WorkdirLock",
    "export_params",
    "fingerprint",
    "load_params",
    "make_manager",
    "restore",
    "restore_latest",
    "save",
]

ITEMS = ("model", "train", "pipeline", "integrity")
JSON_ITEMS = ("pipeline", "integrity")  # small host-side dicts; the others are array trees
CORRUPT_DIR = "checkpoints.corrupt"
LOCK_FILE = ".lock"
EXPORT_MANIFEST = "export.json"


class WorkdirBusyError(RuntimeError):
    """Another live process holds the workdir."""


class CheckpointIntegrityError(RuntimeError):
    """Restored arrays do not match the fingerprints written with them."""


class UnusableCheckpointError(UsageError, CheckpointIntegrityError):
    """A reader (sampling, evaluation, export) has no checkpoint it can use: the one asked for, or every one,
    is damaged or unreadable. The user's to fix (another --step, another workdir), so a UsageError."""


class NonFiniteError(FloatingPointError):
    """Loss or gradient norm became NaN/inf."""


def _is_primary() -> bool:
    return jax.process_index() == 0


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


# ============================================================================================
# Manager
# ============================================================================================


def make_manager(
    workdir, *, save_every: int | None = None, max_to_keep: int | None = None, read_only: bool = False
) -> ocp.CheckpointManager:
    """``<workdir>/checkpoints`` with async saves every ``save_every`` steps, the newest ``max_to_keep`` kept.

    Readers pass ``read_only=True``: no directory creation, and (no policies) nothing is ever deleted.
    """
    kw = {}
    if save_every is not None:
        kw["save_decision_policy"] = ocp.checkpoint_managers.FixedIntervalPolicy(max(1, int(save_every)))
    if max_to_keep is not None:
        kw["preservation_policy"] = ocp.checkpoint_managers.LatestN(max(1, int(max_to_keep)))
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=True, create=not read_only, **kw)
    handlers = {
        name: ocp.JsonCheckpointHandler() if name in JSON_ITEMS else ocp.StandardCheckpointHandler()
        for name in ITEMS
    }
    return ocp.CheckpointManager(
        Path(workdir).absolute() / "checkpoints", options=options, item_handlers=handlers
    )


# ============================================================================================
# Fingerprints: an exact, sharding-independent checksum of every array
# ============================================================================================

_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _leaf_sums(x):
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    bits = jax.lax.bitcast_convert_type(x, _UINT[x.dtype.itemsize]) if x.dtype.itemsize in _UINT else x
    u = bits.astype(jnp.uint32)
    # Row-major element index from per-axis iotas (no reshape: a sharded array is never gathered), so the
    # weighted sum also catches permuted data. Modular uint32 sums are exact in any reduction order:
    # identical on every mesh and process count.
    index, stride = jnp.zeros(u.shape, jnp.uint32), 1
    for axis in reversed(range(u.ndim)):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, u.shape, axis) * jnp.uint32(stride)
        stride = (stride * u.shape[axis]) % 2**32
    weights = index * jnp.uint32(2654435761) + jnp.uint32(1)
    return jnp.stack([jnp.sum(u, dtype=jnp.uint32), jnp.sum(u * weights, dtype=jnp.uint32)])


def _leaf_finite(x):
    if jax.dtypes.issubdtype(x.dtype, jnp.inexact):
        return jnp.all(jnp.isfinite(x))
    return jnp.bool_(True)


_fingerprint_jit = jax.jit(lambda tree: (jax.tree.map(_leaf_sums, tree), jax.tree.map(_leaf_finite, tree)))


def _path_key(path) -> str:
    """``ema/blocks/0/attn/wq``: the same whether a level was restored as a list or a dict with '0' keys."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _fingerprint_and_finite(tree) -> tuple[dict[str, list[int]], list[str]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    if not flat:
        return {}, []
    sums, finite = jax.device_get(_fingerprint_jit([leaf for _, leaf in flat]))
    keys = [_path_key(path) for path, _ in flat]
    return (
        {k: [int(v) for v in np.asarray(s)] for k, s in zip(keys, sums)},
        [k for k, f in zip(keys, finite) if not bool(f)],
    )


def fingerprint(tree) -> dict[str, list[int]]:
    """``{tree path: [sum of bits, position-weighted sum of bits]}`` (uint32, wrapping) of every array."""
    return _fingerprint_and_finite(tree)[0]


def _verify(step: int, name: str, tree, expected: dict | None) -> None:
    if not expected:
        return  # written before fingerprints existed
    got = fingerprint(tree)
    if set(got) != set(expected):
        raise CheckpointIntegrityError(
            f"step {step} item {name!r}: saved arrays {sorted(set(expected) - set(got))[:3]}"
            f" / restored {sorted(set(got) - set(expected))[:3]} differ."
        )
    _compare(step, name, got, expected)


def _compare(step: int, name: str, got: dict, expected: dict) -> None:
    bad = [k for k in got if got[k] != list(expected[k])]
    if bad:
        raise CheckpointIntegrityError(
            f"step {step} item {name!r}: {len(bad)} of {len(got)} arrays do not match "
            f"the fingerprints saved with them (first: {bad[0]}): the files are damaged."
        )


# ============================================================================================
# Save / restore one step
# ============================================================================================


def save(
    mngr: ocp.CheckpointManager, step: int, *, model, train, pipeline_state: dict, force: bool = True
) -> bool:
    """Saves (asynchronously) the ``model`` and ``train`` pytrees, the pipeline JSON and their fingerprints.

    Errors of an earlier async save surface here (orbax waits for it first) or in ``wait_until_finished``.
    """
    (fp_model, bad_model), (fp_train, bad_train) = (
        _fingerprint_and_finite(model),
        _fingerprint_and_finite(train),
    )
    if bad_model or bad_train:
        mngr.wait_until_finished()
        last = mngr.latest_step()
        bad = bad_train + bad_model
        raise NonFiniteError(
            f"non-finite values in the state to save at step {step} ({len(bad)} arrays, first {bad[0]}): they appeared "
            f"after step {last if last is not None else 'init'}, so between steps {last} and {step}. Not saved; the "
            f"last good checkpoint, step {last}, stays in {mngr.directory}. Lower optim.lr or raise optim.grad_clip, "
            "check the data, then rerun to resume from it."
        )
    integrity = {"model": fp_model, "train": fp_train}
    return mngr.save(
        int(step),
        force=force,
        args=ocp.args.Composite(
            model=ocp.args.StandardSave(model),
            train=ocp.args.StandardSave(train),
            pipeline=ocp.args.JsonSave(dict(pipeline_state)),
            integrity=ocp.args.JsonSave(integrity),
        ),
    )


def _read_integrity(mngr, step: int) -> dict | None:
    path = Path(mngr.directory) / str(step) / "integrity"
    if not path.is_dir():
        return None  # older checkpoint
    return dict(mngr.restore(step, args=ocp.args.Composite(integrity=ocp.args.JsonRestore())).integrity)


def restore(mngr: ocp.CheckpointManager, step: int, *, model=None, train=None, pipeline: bool = True):
    """Restores the given items of ``step`` into their abstract targets (``jax.ShapeDtypeStruct`` leaves with
    the shardings the arrays must have now); verifies fingerprints. Returns ``(model, train, pipeline_state)``
    (``None`` for what was not asked)."""
    args = {}
    if model is not None:
        args["model"] = ocp.args.StandardRestore(model)
    if train is not None:
        args["train"] = ocp.args.StandardRestore(train)
    if pipeline:
        args["pipeline"] = ocp.args.JsonRestore()
    r = mngr.restore(int(step), args=ocp.args.Composite(**args))
    integrity = _read_integrity(mngr, step) or {}
    out_model = r.model if model is not None else None
    out_train = r.train if train is not None else None
    if model is not None:
        _verify(step, "model", out_model, integrity.get("model"))
    if train is not None:
        _verify(step, "train", out_train, integrity.get("train"))
    pipe = dict(r.pipeline) if pipeline else None
    if pipe is not None and not isinstance(pipe.get("step"), int):
        raise CheckpointIntegrityError(f"step {step}: pipeline state {pipe} has no integer 'step'.")
    return out_model, out_train, pipe


def _quarantine(workdir: Path, step: int) -> Path:
    src = workdir / "checkpoints" / str(step)
    dst_dir = workdir / CORRUPT_DIR
    dst = dst_dir / str(step)
    n = 1
    while dst.exists():
        dst, n = dst_dir / f"{step}.{n}", n + 1
    if _is_primary() and src.exists():
        dst_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
    return dst


def restore_latest(
    mngr: ocp.CheckpointManager,
    restore_fn: Callable[[int], Any],
    *,
    workdir,
    tag: str,
    log: Callable[[str], None] = print,
):
    """``(step, restore_fn(step))`` for the newest step that restores and verifies, or ``(None, None)`` when
    there is no checkpoint. Newer steps that failed are moved to ``checkpoints.corrupt/`` and reported.
    If every step fails, nothing is moved and the first error is raised with what to do."""
    workdir = Path(workdir)
    steps = sorted(mngr.all_steps(), reverse=True)
    failures: list[tuple[int, BaseException]] = []
    for step in steps:
        try:
            result = restore_fn(step)
        except Exception as e:  # noqa: BLE001 -- any failure of one step means: try the one before
            failures.append((step, e))
            log(
                f"[{tag}] checkpoint step {step} in {mngr.directory} cannot be restored: {type(e).__name__}: "
                f"{_short(e)}"
            )
            continue
        if failures:
            moved = [_quarantine(workdir, s) for s, _ in failures]
            _barrier(f"videogen_quarantine_{step}")
            mngr.reload()
            log(
                f"[{tag}] the latest checkpoint (step {failures[0][0]}) is truncated or corrupted: resumed from the "
                f"previous good one, step {step}. Moved the bad one(s) to {', '.join(str(m) for m in moved)}."
            )
        return step, result
    if failures:
        step, e = failures[0]
        raise RuntimeError(
            f"no checkpoint in {mngr.directory} can be restored (tried steps {steps}; newest error: "
            f"{type(e).__name__}: {_short(e)}). If the config changed (model widths, quantizer, mesh axes that "
            "the arrays need), run with the config of that workdir or use a new --workdir; if the files are "
            f"damaged, move {mngr.directory} away to start over."
        ) from e
    return None, None


def verify_restored(mngr: ocp.CheckpointManager, step: int, name: str, tree) -> None:
    """Checks arrays restored from item ``name`` of ``step`` (all of it or a part, e.g. only the EMA params)
    against the fingerprints saved with them; raises :class:`CheckpointIntegrityError` on a mismatch."""
    expected = (_read_integrity(mngr, step) or {}).get(name)
    if not expected:
        return  # written before fingerprints existed
    got = fingerprint(tree)
    unknown = sorted(set(got) - set(expected))
    if unknown:
        raise CheckpointIntegrityError(
            f"step {step} item {name!r}: restored arrays {unknown[:3]} were not saved."
        )
    _compare(step, name, got, expected)


def load_step(
    mngr: ocp.CheckpointManager,
    step: int | None,
    load_fn: Callable[[int], Any],
    *,
    what: str,
    log: Callable[[str], None] = print,
) -> tuple[int, Any]:
    """``(step, load_fn(step))`` for reading a workdir (sampling, evaluation, export), never writing it.

    ``load_fn`` restores and verifies (:func:`verify_restored`). An explicit ``step`` must load. With
    ``step=None`` the newest that loads is used: damaged or unreadable newer ones are skipped with a line
    each (unlike a resume, nothing is moved: a reader may not own the workdir)."""
    steps = sorted(mngr.all_steps(), reverse=True) if step is None else [int(step)]
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {mngr.directory}.")
    errors = []
    for s in steps:
        try:
            return s, load_fn(s)
        except Exception as e:  # noqa: BLE001 -- any failure of one step means: try the one before
            if step is not None:  # asked for by name: that one or an error (orbax's can be pages long)
                if isinstance(e, CheckpointIntegrityError):
                    raise UnusableCheckpointError(str(e)) from e
                raise UnusableCheckpointError(
                    f"checkpoint step {s} in {mngr.directory} cannot be read: {type(e).__name__}: {_short(e)}"
                ) from e
            errors.append(f"step {s}: {type(e).__name__}: {_short(e, 200)}")
            if s != steps[-1]:  # the oldest one's failure is in the error below
                log(
                    f"[{what}] checkpoint step {s} in {mngr.directory} cannot be used ({errors[-1]}); trying an "
                    "older one."
                )
    raise UnusableCheckpointError(
        f"no usable checkpoint in {mngr.directory}: every one is damaged or unreadable ("
        + "; ".join(errors)
        + "); train again, or restore the workdir from a copy."
    )


def _short(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


# ============================================================================================
# One run per workdir
# ============================================================================================


class WorkdirLock:
    """``fcntl.flock`` on ``<workdir>/.lock`` (``.lock.<process>`` for processes > 0): a second run on the
    workdir is refused at once; the lock dies with its process (crash, SIGKILL), so it is never stuck."""

    def __init__(self, workdir, *, tag: str = "train"):
        self.workdir = Path(workdir)
        self.tag = tag
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        i = jax.process_index()
        return self.workdir / (LOCK_FILE if i == 0 else f"{LOCK_FILE}.{i}")

    def acquire(self) -> WorkdirLock:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirBusyError(
                    f"workdir {self.workdir} is in use by another run ({holder or 'holder unknown'}; lock "
                    f"{self.path}). Wait for it to finish or stop it, or use another --workdir. (The lock is "
                    "released by the OS when that process exits, even after a crash.)"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            f"{self.tag} pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
            0,
        )
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ============================================================================================
# Preemption (SIGTERM)
# ============================================================================================


def _distributed_preemption() -> bool:
    return (
        jax.process_count() > 1 and getattr(_dist.global_state, "preemption_sync_manager", None) is not None
    )


class Preemption:
    """``requested(step)`` is True once SIGTERM arrived (single process: our handler; several processes: JAX's
    preemption sync point, the same step on every process). Use as a context manager around the loop."""

    def __init__(self, tag: str = "train"):
        self.tag = tag
        self.received: int | None = None
        self._previous = None
        self._installed = False

    def __enter__(self) -> Preemption:
        if not _distributed_preemption() and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
            self._installed = True
        return self

    def _handler(self, signum, frame) -> None:
        self.received = signum
        print(
            f"[{self.tag}] SIGTERM received: saving a checkpoint after the current step, then exiting.",
            flush=True,
        )

    def requested(self, step: int) -> bool:
        if self.received is not None:
            return True
        if _distributed_preemption():
            try:
                return bool(multihost_utils.reached_preemption_sync_point(int(step)))
            except RuntimeError:
                return False
        return False

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False


# ============================================================================================
# Non-finite loss / gradients
# ============================================================================================


class FiniteWatch:
    """Collects each step's metrics (device arrays, no sync); :meth:`check` fetches them -- call it before
    every save and at log points -- and raises :class:`NonFiniteError` naming the steps when the loss or
    the gradient norm is not finite. So nothing non-finite is ever saved."""

    def __init__(self, keys=("loss", "grad_norm")):
        self.keys = tuple(keys)
        self._steps: list[int] = []
        self._values: list[dict] = []
        self.last_checked: int | None = None

    def append(self, step: int, metrics: dict) -> None:
        self._steps.append(int(step))
        self._values.append({k: metrics[k] for k in self.keys if k in metrics})

    def check(self, *, last_saved: Callable[[], int | None] | None = None, workdir=None) -> None:
        if not self._steps:
            return
        steps, values = self._steps, jax.device_get(self._values)
        self._steps, self._values = [], []
        for step, v in zip(steps, values):
            bad = {k: float(x) for k, x in v.items() if not np.isfinite(np.asarray(x)).all()}
            if bad:
                saved = last_saved() if last_saved is not None else None
                where = (
                    f"the last good checkpoint is step {saved} in {Path(workdir) / 'checkpoints'} (kept; "
                    "nothing after it was saved)"
                    if saved is not None
                    else "no checkpoint was saved yet"
                )
                first = steps[0]
                raise NonFiniteError(
                    f"non-finite {', '.join(f'{k}={x}' for k, x in bad.items())} at step {step} (steps {first}..{step}"
                    f" checked; step {self.last_checked or first - 1} and before were finite): stopping; {where}. "
                    "Lower optim.lr or raise optim.grad_clip, check the data, then rerun to resume from it."
                )
            self.last_checked = step


# ============================================================================================
# Params-only export
# ============================================================================================


def _host_target(metadata):
    """Abstract target on one local device from saved array metadata: restores whatever mesh wrote it."""
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
    tree = tree.item_metadata.tree if hasattr(tree, "item_metadata") else tree
    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=dev), tree)


def export_params(
    workdir, out, *, step: int | None = None, files=("config.json", "text_tokenizer.model")
) -> Path:
    """Writes ``out/params`` (the ``model`` item of ``step``, default the latest good one: EMA params and
    quantizer state, no optimizer state) as a standalone orbax checkpoint of numpy arrays, copies the
    workdir's ``files`` beside it and writes ``out/export.json``. Verified against the saved fingerprints."""
    workdir, out = Path(workdir), Path(out)

    def load(s: int):
        target = _host_target(mngr.item_metadata(s)["model"])
        r = mngr.restore(s, args=ocp.args.Composite(model=ocp.args.StandardRestore(target)))
        params = jax.tree.map(np.asarray, r.model)
        verify_restored(mngr, s, "model", params)
        return params

    with make_manager(workdir, read_only=True) as mngr:
        step, params = load_step(mngr, step, load, what="export")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"export folder {out} is not empty; pick a new --out.")
    out.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save((out / "params").absolute(), params)
        ckptr.wait_until_finished()
    copied = []
    for name in files:
        if (workdir / name).is_file():
            shutil.copy2(workdir / name, out / name)
            copied.append(name)
    manifest = {
        "workdir": str(workdir.absolute()),
        "step": int(step),
        "files": copied,
        "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
        "fingerprint": fingerprint(params),
    }
    (out / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def load_params(export_dir, abstract=None):
    """``(params, config dict)`` of an :func:`export_params` folder: numpy arrays, or arrays placed as the
    ``jax.ShapeDtypeStruct`` leaves of ``abstract`` say (e.g. ``{'ema': ..., 'rest': ...}`` with shardings)."""
    export_dir = Path(export_dir)
    manifest_path = export_dir / EXPORT_MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path} not found: is {export_dir} a folder written by export_params "
            "(`videogen export --workdir W --out DIR`)?"
        )
    manifest = json.loads(manifest_path.read_text())
    with ocp.StandardCheckpointer() as ckptr:
        path = (export_dir / "params").absolute()
        if abstract is None:
            params = jax.tree.map(np.asarray, ckptr.restore(path, _host_target(ckptr.metadata(path))))
        else:
            params = ckptr.restore(path, abstract)
    if fingerprint(params) != manifest["fingerprint"]:
        raise CheckpointIntegrityError(
            f"{export_dir / 'params'} does not match the fingerprints in {manifest_path}."
        )
    cfg_path = export_dir / "config.json"
    config = json.loads(cfg_path.read_text()) if cfg_path.is_file() else None
    return params, config
