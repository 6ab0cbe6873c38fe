"""Fault tolerance of both trainers (videogen/training/checkpointing.py, videogen/config_checks.py, issue #7):
restore onto other meshes, corrupted checkpoints, async save errors, SIGTERM / SIGKILL, non-finite loss,
one run per workdir, params-only export, config validation before anything compiles.

Tiny models as in tests/test_lm_train.py (same LM config, so a session shares its compiled step): an
initialised 16x16x9 tokenizer (2x8x8 compression, LFQ 6 bits -> 64 codes, grid 5x2x2) and a 2-layer d=32 LM.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from workdirs import TINY_LM_OVERRIDES, save_initialised_tokenizer, tiny_lm_config, tiny_tokenizer_config

from tokenizer import train as T
from videogen import config_checks
from videogen import train as LM
from videogen.training import checkpointing
from videogen.training import mesh as mesh_lib

ROOT = Path(__file__).resolve().parents[1]
TOK_EXTRAS = ["batch_size=8", "eval.batch_size=8", "quiet=True"]


def tok_config(*extra):
    return tiny_tokenizer_config(*TOK_EXTRAS, *extra)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return save_initialised_tokenizer(tmp_path_factory.mktemp("tok"), tok_config("ckpt_every=1"))


def lm_config(tok_dir, *extra, **overrides):
    return tiny_lm_config(tok_dir, *extra, **overrides)


def _losses(workdir: Path) -> dict[int, float]:
    """step -> loss of the train log; a step logged twice (replayed after a kill) keeps its last value."""
    out = {}
    for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == "train":
            out[r["step"]] = r["loss"]
    return out


def _steps(workdir: Path) -> list[int]:
    d = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _env(num_devices: int = 8) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(
        [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        + [f"--xla_force_host_platform_device_count={num_devices}"]
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT)
    return env


# ----------------------------------------------------------------------------- restore on any mesh


def _lm_target(c, devices, axes):
    """(abstract state with the shardings of a mesh over `devices`, those shardings)."""
    mesh = mesh_lib.make_mesh(axes, devices=devices)
    tcfg = LM.transformer_config(c, 64, (5, 2, 2))
    tx, _ = LM.make_optimizer(c)
    _, _, shardings = LM.state_shardings(tcfg, mesh, tx, LM.axis_rules(c))
    return LM.abstract_state(tcfg, tx, shardings), shardings, tx


def _assert_restored(state, shardings, reference=None):
    for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(shardings)):
        assert x.sharding.is_equivalent_to(s, x.ndim), (x.sharding, s)
    if reference is not None:
        for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(reference)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_lm_restores_on_other_meshes(tok_dir, tmp_path):
    """Saved on 8 devices (2x2x2) -> restored on 4 (data 2 x fsdp 2) and on 1; saved on 1 -> restored on 8.
    The arrays come back with the new mesh's shardings and the same values."""
    c = lm_config(tok_dir, steps=2, ckpt_every=2)
    LM.train(c, tmp_path / "m8")
    devs = jax.devices()
    with T.checkpoint_manager(tmp_path / "m8", read_only=True) as mngr:
        abs8, sh8, tx = _lm_target(c, devs, {"data": 2, "fsdp": 2, "tensor": 2})
        s8, pipe = LM.restore_checkpoint(mngr, 2, abs8)
        assert pipe["step"] == 2 and int(s8["step"]) == 2
        _assert_restored(s8, sh8)
        fsdp_sharded = [x for x in jax.tree.leaves(s8["params"]) if "fsdp" in str(x.sharding.spec)]
        assert fsdp_sharded, "the 2x2x2 mesh should shard some params over fsdp"
        abs4, sh4, _ = _lm_target(c, devs[:4], {"data": 2, "fsdp": 2, "tensor": 1})
        s4, _ = LM.restore_checkpoint(mngr, 2, abs4)
        _assert_restored(s4, sh4, reference=s8)
        assert all(len(x.sharding.device_set) == 4 for x in jax.tree.leaves(s4))
        abs1, sh1, _ = _lm_target(c, devs[:1], {"data": 1, "fsdp": 1, "tensor": 1})
        s1, _ = LM.restore_checkpoint(mngr, 2, abs1)
        _assert_restored(s1, sh1, reference=s8)
    # ... and the other way: written from 1 device, restored onto the 2x2x2 mesh.
    with T.checkpoint_manager(tmp_path / "m1", c) as mngr:
        LM.save_checkpoint(mngr, 2, s1, {"step": 2, "seed": 0, "global_batch_size": 8}, force=True)
        mngr.wait_until_finished()
    with T.checkpoint_manager(tmp_path / "m1", read_only=True) as mngr:
        back, _ = LM.restore_checkpoint(mngr, 2, abs8)
    _assert_restored(back, sh8, reference=s8)


def test_tokenizer_restores_on_other_meshes(tmp_path):
    """FSDP rules (conv kernels split over fsdp): saved on 2x2x2, restored on 4 and 1 device(s), and back."""
    rules = "logical_axis_rules=(('conv_in', None), ('conv_out', 'fsdp'), ('norm', None))"
    c = tok_config(rules, "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2")

    def target(devices, axes):
        mesh = mesh_lib.make_mesh(axes, devices=devices)
        tx, _ = T.make_optimizer(c)
        _, sh = T.state_shardings(c, mesh, tx)
        return mesh, tx, sh, T.abstract_state(c, mesh, tx, sh)

    mesh8, tx, sh8, abs8 = target(jax.devices(), {"data": 2, "fsdp": 2, "tensor": 2})
    state = T.init_state(c, mesh8, tx, sh8)
    assert any("fsdp" in str(s.spec) for s in jax.tree.leaves(sh8["params"]))
    with T.checkpoint_manager(tmp_path / "t8", c) as mngr:
        T.save_checkpoint(mngr, 1, state, {"step": 0, "seed": 0, "global_batch_size": 8}, force=True)
    restored = {}
    with T.checkpoint_manager(tmp_path / "t8", read_only=True) as mngr:
        for n, axes in ((4, {"data": 2, "fsdp": 2, "tensor": 1}), (1, {"data": 1, "fsdp": 1, "tensor": 1})):
            _, _, sh, ab = target(jax.devices()[:n], axes)
            restored[n], _ = T.restore_checkpoint(mngr, 1, ab)
            _assert_restored(restored[n], sh, reference=state)
    with T.checkpoint_manager(tmp_path / "t1", c) as mngr:
        T.save_checkpoint(mngr, 1, restored[1], {"step": 0, "seed": 0, "global_batch_size": 8}, force=True)
    with T.checkpoint_manager(tmp_path / "t1", read_only=True) as mngr:
        back, _ = T.restore_checkpoint(mngr, 1, abs8)
    _assert_restored(back, sh8, reference=state)


# ----------------------------------------------------------------------------- damaged checkpoints


def test_corrupted_or_truncated_latest_checkpoint_falls_back(tok_dir, tmp_path, capsys):
    wd = tmp_path / "lm"
    LM.train(lm_config(tok_dir, steps=4, ckpt_every=2), wd)
    assert _steps(wd) == [2, 4]
    # Garbled bytes in the data files: orbax reads them back silently; the saved fingerprints catch it.
    rng = np.random.default_rng(0)
    for f in (wd / "checkpoints" / "4" / "train").rglob("d/*"):
        data = bytearray(f.read_bytes())
        if len(data) > 1000:
            data[len(data) // 2 : len(data) // 2 + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            f.write_bytes(bytes(data))
    capsys.readouterr()
    m = LM.train(lm_config(tok_dir, steps=6, ckpt_every=2), wd)
    out = capsys.readouterr().out
    assert m["resumed_from"] == 2 and m["start_step"] == 2 and m["data_start_step"] == 2, m
    assert "truncated or corrupted" in out and "previous good one, step 2" in out, out
    assert (wd / "checkpoints.corrupt" / "4").is_dir() and _steps(wd) == [2, 4, 6]
    # A truncated file (a write cut short) in the newest step: back to step 4, which was rewritten above.
    for f in (wd / "checkpoints" / "6" / "model").rglob("d/*"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    m = LM.train(lm_config(tok_dir, steps=8, ckpt_every=2), wd)
    assert m["resumed_from"] == 4 and m["step"] == 8
    assert "previous good one, step 4" in capsys.readouterr().out
    straight = tmp_path / "straight"
    LM.train(lm_config(tok_dir, steps=8, ckpt_every=4), straight)
    assert _losses(wd) == _losses(straight)  # the replayed steps and everything after are the same run


def _garble(item_dir: Path) -> None:
    rng = np.random.default_rng(0)
    for f in item_dir.rglob("d/*"):
        data = bytearray(f.read_bytes())
        if len(data) > 1000:
            data[len(data) // 2 : len(data) // 2 + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            f.write_bytes(bytes(data))


def test_loading_for_use_verifies_and_skips_a_damaged_newest_checkpoint(
    tok_dir, tmp_path, capsys, monkeypatch
):
    """Sampling, eval and export read weights through the saved fingerprints too. Values changed inside the
    array data (which orbax can read back without complaint) in the newest step: it is skipped with a line
    (nothing moved: a reader may not own the workdir), and asking for it by name is an error, not quietly
    wrong samples. Damage orbax does notice (its index) is handled the same way."""
    import orbax.checkpoint as ocp

    wd = tmp_path / "lm"
    LM.train(lm_config(tok_dir, steps=4, ckpt_every=2), wd)
    good = jax.tree.leaves(nnx.state(LM.load_lm(wd, step=2)[0], nnx.Param))
    restore = ocp.CheckpointManager.restore

    def restore_with_a_changed_value(self, step, *a, **k):
        r = restore(self, step, *a, **k)
        if step == 4 and "model" in r:
            leaves, treedef = jax.tree.flatten(r["model"])
            r["model"].update(jax.tree.unflatten(treedef, [leaves[0] + 1.0] + leaves[1:]))
        return r

    with monkeypatch.context() as m:
        m.setattr(ocp.CheckpointManager, "restore", restore_with_a_changed_value)
        capsys.readouterr()
        model = LM.load_lm(wd)[0]
        assert "checkpoint step 4" in capsys.readouterr().out
        for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), good):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        with pytest.raises(checkpointing.CheckpointIntegrityError, match="step 4 item 'model'.*damaged"):
            LM.load_lm(wd, step=4)
    assert _steps(wd) == [2, 4]
    _garble(wd / "checkpoints" / "2" / "train")  # the raw weights' item, damaged where orbax checks
    with pytest.raises(checkpointing.CheckpointIntegrityError, match="step 2"):
        LM.load_lm(wd, step=2, ema=False)


def test_no_restorable_checkpoint_moves_nothing(tok_dir, tmp_path):
    """A config that no step matches is a mismatch, not corruption: clear error, checkpoints untouched."""
    wd = tmp_path / "lm"
    LM.train(lm_config(tok_dir, steps=2, ckpt_every=2), wd)
    (wd / "config.json").unlink()  # no saved config: the shape check cannot help, the restore itself fails
    with pytest.raises(RuntimeError, match="no checkpoint .* can be restored.*new --workdir"):
        LM.train(lm_config(tok_dir, steps=3, ckpt_every=2, **{"model.mlp_dim": 96}), wd)
    assert _steps(wd) == [2] and not (wd / "checkpoints.corrupt").exists()


def test_async_save_error_stops_the_run(tok_dir, tmp_path, monkeypatch):
    """The background commit of a save fails (disk full): train() raises that error promptly, no hang."""
    from orbax.checkpoint._src.path import atomicity

    async def fail(self, *args, **kwargs):
        raise OSError(28, "injected: No space left on device")

    for cls in (atomicity.AtomicRenameTemporaryPath, atomicity.CommitFileTemporaryPath):
        monkeypatch.setattr(cls, "finalize", fail)
    result: dict = {}

    def run():
        try:
            result["metrics"] = LM.train(lm_config(tok_dir, steps=6, ckpt_every=1), tmp_path / "lm")
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=240)
    assert not t.is_alive(), "train() hung after an async save error"
    assert isinstance(result.get("error"), OSError) and "No space left" in str(result["error"]), result
    monkeypatch.undo()
    # The workdir lock was released on the error: taking it again must not raise.
    checkpointing.WorkdirLock(tmp_path / "lm").acquire().release()


# ----------------------------------------------------------------------------- SIGTERM / SIGKILL


def _launch(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "videogen.train", *args],
        cwd=ROOT,
        env=_env(8),
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


def _wait_for_steps(wd: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    t0 = time.time()
    while time.time() - t0 < timeout:
        path = wd / "metrics.jsonl"
        done = max(_losses(wd), default=0) if path.is_file() else 0
        if done >= n:
            return done
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before step {n}")
        time.sleep(0.02)
    raise AssertionError(f"no step {n} within {timeout} s")


@pytest.fixture(scope="module")
def interrupted(tok_dir, tmp_path_factory):
    """One CLI run interrupted twice: SIGTERM at step >= 3, restarted, SIGKILL at a random later step,
    restarted to the end; plus the same config uninterrupted (in this process: same 8-device mesh)."""
    base = tmp_path_factory.mktemp("interrupted")
    steps = 40
    extra = ["--config.steps=40", "--config.ckpt_every=7", "--config.max_to_keep=2"]
    straight = base / "straight"
    LM.train(lm_config(tok_dir, steps=steps, ckpt_every=7, max_to_keep=2), straight)
    wd = base / "run"
    wd.mkdir()
    (wd / "text_tokenizer.model").write_bytes((straight / "text_tokenizer.model").read_bytes())
    args = [
        "--config",
        str(ROOT / "experiments/lm_world.py") + ":tiny",
        "--workdir",
        str(wd),
        f"--config.tokenizer_workdir={tok_dir}",
        *[f"--config.{o}" for o in TINY_LM_OVERRIDES],
        *extra,
    ]
    log = base / "log.txt"
    info: dict = {"steps": steps, "wd": wd, "straight": straight, "log": log}
    proc = _launch(args, log)
    info["term_seen"] = _wait_for_steps(wd, 3, proc)
    proc.send_signal(signal.SIGTERM)
    info["term_rc"] = proc.wait(timeout=120)
    info["term_ckpts"] = _steps(wd)
    info["term_logged"] = max(_losses(wd))
    info["term_pipe"] = json.loads(
        (wd / "checkpoints" / str(info["term_ckpts"][-1]) / "pipeline" / "metadata").read_text()
    )
    rng = random.Random(time.time_ns())
    kill_at = rng.randint(min(info["term_logged"] + 2, steps - 8), steps - 8)
    info["kill_at"] = kill_at
    proc = _launch(args, log)
    info["kill_seen"] = _wait_for_steps(wd, kill_at, proc)
    proc.kill()  # SIGKILL: no handler, no final save, whatever async save was in flight is cut
    assert proc.wait(timeout=60) == -signal.SIGKILL
    info["kill_ckpts"] = _steps(wd)
    proc = _launch(args, log)
    info["final_rc"] = proc.wait(timeout=300)
    return info


@pytest.mark.slow
def test_sigterm_saves_a_final_checkpoint_and_exits(interrupted):
    i = interrupted
    log = i["log"].read_text()
    assert i["term_rc"] == 143, log
    assert "SIGTERM received" in log and "preempted: saved step" in log
    # The final save is of the step reached when the signal came, not of the last interval checkpoint.
    assert i["term_ckpts"][-1] == i["term_logged"] >= i["term_seen"], i
    assert i["term_pipe"]["step"] == i["term_logged"]  # the data position went with it


@pytest.mark.slow
def test_sigkill_at_a_random_step_resumes_bitwise(interrupted):
    i = interrupted
    assert i["final_rc"] == 0, i["log"].read_text()[-3000:]
    assert i["kill_ckpts"] and i["kill_ckpts"][-1] <= i["kill_seen"]
    resumed = _losses(i["wd"])
    straight = _losses(i["straight"])
    assert sorted(resumed) == list(range(1, i["steps"] + 1))
    assert resumed == straight, (
        f"killed at step {i['kill_seen']} (target {i['kill_at']}), checkpoints {i['kill_ckpts']}"
    )  # bitwise: same floats, same mesh, same programs
    assert f"resumed from step {i['kill_ckpts'][-1]}" in i["log"].read_text()


# ----------------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("ckpt_every,log_every,caught_at", [(2, 3, "save"), (4, 1, "log")])
def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(
    tok_dir, tmp_path, monkeypatch, ckpt_every, log_every, caught_at
):
    """The learning rate turns NaN at step 6 (a stand-in for a blow-up): params become NaN after step 6's
    update, the loss from step 7. The run stops naming the steps; checkpoint 4 is the newest and is finite."""
    real = LM.make_optimizer

    def poisoned(config):
        tx, schedule = real(config)
        return tx, lambda s: jnp.where(s >= 5, jnp.nan, schedule(s))

    monkeypatch.setattr(LM, "make_optimizer", poisoned)
    wd = tmp_path / "lm"
    c = lm_config(tok_dir, steps=12, ckpt_every=ckpt_every, log_every=log_every)
    with pytest.raises(checkpointing.NonFiniteError) as err:
        LM.train(c, wd)
    msg = str(err.value)
    assert "step 4" in msg and (
        "between steps 4 and 6" in msg if caught_at == "save" else "at step 7" in msg
    ), msg
    assert "Lower optim.lr" in msg
    assert _steps(wd) == [2, 4] if ckpt_every == 2 else _steps(wd) == [4]
    monkeypatch.undo()
    tcfg = LM.transformer_config(c, 64, (5, 2, 2))
    tx, _ = LM.make_optimizer(c)
    mesh = LM.make_mesh(c)
    _, _, sh = LM.state_shardings(tcfg, mesh, tx, LM.axis_rules(c))
    with T.checkpoint_manager(wd, read_only=True) as mngr:
        state, _ = LM.restore_checkpoint(mngr, 4, LM.abstract_state(tcfg, tx, sh))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state["params"]))


# ----------------------------------------------------------------------------- one run per workdir


def test_second_run_on_a_workdir_is_refused_and_a_dead_holder_frees_it(tok_dir, tmp_path):
    wd = tmp_path / "wd"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from videogen.training.checkpointing import WorkdirLock; "
            f"WorkdirLock({str(wd)!r}, tag='lm').acquire(); print('locked', flush=True); time.sleep(120)",
        ],
        cwd=ROOT,
        env=_env(1),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            checkpointing.WorkdirBusyError, match=rf"in use by another run \(lm pid {holder.pid}"
        ):
            LM.train(lm_config(tok_dir, steps=1), wd)
        with pytest.raises(checkpointing.WorkdirBusyError, match="use another --workdir"):
            T.train(tok_config("steps=1"), wd)
        assert not (wd / "checkpoints").exists()
    finally:
        holder.kill()  # a crash: no cleanup code runs, the OS drops the flock
        holder.wait()
    with checkpointing.WorkdirLock(wd):
        with pytest.raises(checkpointing.WorkdirBusyError):  # the same process cannot take it twice either
            checkpointing.WorkdirLock(wd).acquire()


# ----------------------------------------------------------------------------- export


def test_params_only_export(tok_dir, tmp_path):
    from flax import nnx

    wd = tmp_path / "lm"
    LM.train(lm_config(tok_dir, steps=2, ckpt_every=2), wd)
    # Exported by a 1-device process from the 8-device (2x2x2) checkpoint.
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "videogen.cli",
            "export",
            "--workdir",
            str(wd),
            "--out",
            str(tmp_path / "exp"),
        ],
        cwd=ROOT,
        env=_env(1),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "Exported step 2" in r.stdout, r.stdout + r.stderr[-3000:]
    params, config = checkpointing.load_params(tmp_path / "exp")
    assert config["model"]["codebook_size"] == 64 and (tmp_path / "exp" / "text_tokenizer.model").is_file()
    assert set(params) == {"ema"} and not (tmp_path / "exp" / "params" / "opt_state").exists()
    model, *_ = LM.load_lm(wd)
    ema = nnx.as_pure(nnx.state(model, nnx.Param))
    for x, y in zip(jax.tree.leaves(params["ema"]), jax.tree.leaves(ema)):
        assert isinstance(x, np.ndarray)
        np.testing.assert_array_equal(x, np.asarray(y))
    # Into an abstract target: arrays placed as asked (here: one device).
    dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {"ema": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev), ema)}
    placed, _ = checkpointing.load_params(tmp_path / "exp", target)
    assert all(x.sharding == dev for x in jax.tree.leaves(placed))
    # The tokenizer's export carries its quantizer state next to the EMA params.
    out = checkpointing.export_params(tok_dir, tmp_path / "tok_exp")
    tparams, tconf = checkpointing.load_params(out)
    assert set(tparams) == {"ema", "rest"} and tconf["quantizer"]["kind"] == "lfq"
    with pytest.raises(FileExistsError, match="not empty"):
        checkpointing.export_params(tok_dir, tmp_path / "tok_exp")


# ----------------------------------------------------------------------------- config validation


@pytest.fixture
def no_compile(monkeypatch):
    """Fails the test if a trainer gets as far as building its state or step."""

    def boom(*a, **k):
        raise AssertionError("compiled before the config was validated")

    for mod in (LM, T):
        monkeypatch.setattr(mod, "make_train_step", boom)
        monkeypatch.setattr(mod, "init_state", boom)


def test_config_errors_name_the_field_and_the_fix(tok_dir, tmp_path, no_compile):
    cases = [
        # mesh shape vs device count
        (
            lambda: LM.train(lm_config(tok_dir, **{"mesh.data": 4}), tmp_path / "a"),
            r"config\.mesh=.*needs 16 devices but 8.*--config\.mesh\.data=-1",
        ),
        (
            lambda: T.train(tok_config("mesh.data=3"), tmp_path / "b"),
            r"config\.mesh=.*needs 3 devices but 8.*Fix",
        ),
        # batch size vs data-parallel size
        (
            lambda: LM.train(lm_config(tok_dir, batch_size=6), tmp_path / "c"),
            r"batch_size=6 must be a multiple of .*size 4.*use 8",
        ),
        (
            lambda: T.train(tok_config("batch_size=12"), tmp_path / "d"),
            r"batch_size=12 must be a multiple.*use 16",
        ),
        # clip shape vs compression
        (
            lambda: T.train(tok_config("data.num_frames=8"), tmp_path / "e"),
            r"num_frames=8 does not fit temporal compression 2: use 1 \+ 2k frames",
        ),
        (
            lambda: LM.train(lm_config(tok_dir, **{"data.resolution": 20}), tmp_path / "f"),
            r"incompatible with the tokenizer.*resolution=20 is not divisible by spatial compression 8: use",
        ),
        # codebook vs LM head / vocabulary
        (
            lambda: LM.train(lm_config(tok_dir, **{"model.group_bits": 4}), tmp_path / "g"),
            r"model\.group_bits=4 must divide the 6 bits.*use one of \[1, 2, 3, 6\]",
        ),
        # tokenizer workdir missing
        (
            lambda: LM.train(lm_config(tmp_path / "nope"), tmp_path / "h"),
            r"not a tokenizer workdir.*Train one",
        ),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError if "tokenizer workdir" not in pattern else Exception, match=pattern):
            fn()
    fsq = lm_config(tok_dir)
    with pytest.raises(
        ValueError,
        match=r"model\.head='bitgroups' needs a power-of-2.*codebook_size=1000.*"
        r"--config\.model\.head=softmax",
    ):
        config_checks.check_lm_vocab(fsq, 1000, "runs/tok_fsq")


def test_incompatible_tokenizer_lm_pair_on_resume(tok_dir, tmp_path, monkeypatch):
    """An LM workdir trained on one tokenizer, resumed with data the tokenizer maps to another grid, or with
    a different model width: refused before anything compiles, naming the field and both values."""
    wd = tmp_path / "lm"
    LM.train(lm_config(tok_dir, steps=1, ckpt_every=1), wd)

    def boom(*a, **k):
        raise AssertionError("compiled before the config was validated")

    monkeypatch.setattr(LM, "make_train_step", boom)
    monkeypatch.setattr(LM, "init_state", boom)
    with pytest.raises(
        ValueError,
        match=r"model\.video_grid=\[5, 4, 4\] but the checkpoints were trained with "
        r"model\.video_grid=\[5, 2, 2\] \(set by the tokenizer.*new --workdir",
    ):
        LM.train(lm_config(tok_dir, steps=2, **{"data.resolution": 32}), wd)
    with pytest.raises(
        ValueError,
        match=r"model\.d_model=64 but the checkpoints were trained with model\.d_model=32; "
        r"rerun with --config\.model\.d_model=32",
    ):
        LM.train(lm_config(tok_dir, steps=2, **{"model.d_model": 64}), wd)
    with pytest.raises(
        ValueError,
        match=r"objective='next_token' but the checkpoints were trained with "
        r"objective='maskgit_frames' \(each objective has its own attention mask",
    ):
        LM.train(lm_config(tok_dir, steps=2, objective="next_token"), wd)
    assert _steps(wd) == [1]


def test_fingerprint_is_exact_and_sharding_invariant():
    """The integrity fingerprint: modular sums of the bits (plain and position-weighted), equal to a numpy
    reference, the same for any sharding, and changed by a swap of two rows."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    rng = np.random.default_rng(0)
    tree = {
        "a": rng.standard_normal((16, 24)).astype(np.float32),
        "b": rng.integers(0, 9, (8, 4, 6)).astype(np.int32),
        "c": np.asarray(jnp.asarray(rng.standard_normal(8), jnp.bfloat16)),
        "d": np.float32(3.0),
    }

    def ref(x):
        x = np.asarray(x)
        u = x.view({2: np.uint16, 4: np.uint32}[x.dtype.itemsize]).astype(np.uint64).ravel()
        w = (np.arange(u.size, dtype=np.uint64) * 2654435761 + 1) % 2**32
        return [int(u.sum() % 2**32), int((u * w % 2**32).sum() % 2**32)]

    fp = checkpointing.fingerprint(tree)
    assert fp == {k: ref(v) for k, v in tree.items()}
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
    sharded = {
        **tree,
        "a": jax.device_put(tree["a"], NamedSharding(mesh, P("data", "fsdp"))),
        "b": jax.device_put(tree["b"], NamedSharding(mesh, P("fsdp", None, "data"))),
    }
    assert checkpointing.fingerprint(sharded) == fp
    swapped = tree["a"].copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    got = checkpointing.fingerprint({**tree, "a": swapped})["a"]
    assert got[0] == fp["a"][0] and got[1] != fp["a"][1]


def test_preemption_at_an_eval_step_evaluates_that_step_on_resume(tok_dir, tmp_path, monkeypatch, capsys):
    """A run preempted right after saving step 2 (an eval step) stops before evaluating it; the resumed run
    evaluates step 2 first instead of never (and a rerun of a finished workdir does not evaluate again)."""
    c = lm_config(tok_dir, "eval.every=2", "eval.num_batches=1", steps=4)
    with monkeypatch.context() as m:
        m.setattr(checkpointing.Preemption, "requested", lambda self, step: step == 2)
        first = LM.train(c, tmp_path)
    assert first["preempted"] and first["step"] == 2

    def eval_steps():
        rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        return [r["step"] for r in rows if r["kind"] == "eval"]

    assert eval_steps() == []
    again = LM.train(c, tmp_path)
    assert again["resumed_from"] == 2 and again["step"] == 4
    assert "step 2 was saved but not evaluated" in capsys.readouterr().out
    assert eval_steps() == [2, 4]
    LM.train(c, tmp_path)  # already at steps, already evaluated
    assert eval_steps() == [2, 4]
