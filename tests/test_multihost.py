"""Multi-process training under jax.distributed (issue #7): 2 local processes x 4 CPU devices (gloo
collectives) train the LM and reach the same losses as 1 process x 8 devices; the checkpoint they write
restores and trains on in a 1-process run.

next_token objective with no caption dropout: then the loss does not depend on the order of examples inside
a global batch (with 2 processes, process p holds examples p, p+2, ... of each batch, so rows are in another
order than with 1 process; MaskGIT masks and CFG drops are drawn per row).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from test_fault_tolerance import ROOT, _env, _losses, lm_config, tok_dir  # noqa: F401
from workdirs import TINY_LM_OVERRIDES

from videogen import train as LM

EXTRA = {"objective": "next_token", "text.drop_prob": 0.0, "ckpt_every": 3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_and_their_checkpoint_restores_in_one(tok_dir, tmp_path):  # noqa: F811
    ref = tmp_path / "one_process"
    LM.train(lm_config(tok_dir, steps=5, **EXTRA), ref)
    ref_losses = _losses(ref)

    wd = tmp_path / "two_processes"
    wd.mkdir()
    port = _free_port()
    args = [
        "--config",
        str(ROOT / "experiments/lm_world.py") + ":tiny",
        "--workdir",
        str(wd),
        f"--config.tokenizer_workdir={tok_dir}",
        *[f"--config.{o}" for o in TINY_LM_OVERRIDES],
        "--config.steps=3",
        *[f"--config.{k}={v}" for k, v in EXTRA.items()],
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "videogen.train", *args, "--process-id", str(i)],
            cwd=ROOT,
            env=_env(4),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=420)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    assert "mesh {'data': 2, 'fsdp': 2, 'tensor': 2} on 8 cpu devices" in outs[0], outs[0][-2000:]
    final = json.loads(outs[0].strip().splitlines()[-1])
    assert final["step"] == 3 and final["data_step"] == 3
    # One metrics line per step (only process 0 writes), the same losses as the single-process run.
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3]
    got = _losses(wd)
    np.testing.assert_allclose([got[s] for s in (1, 2, 3)], [ref_losses[s] for s in (1, 2, 3)], rtol=2e-5)
    assert (wd / ".lock").is_file() and (wd / ".lock.1").is_file()  # each process held its own lock

    # The 2-process checkpoint (step 3) restores in this single process (8 devices) and training goes on
    # exactly like the single-process run.
    m = LM.train(lm_config(tok_dir, steps=5, **EXTRA), wd)
    assert m["resumed_from"] == 3 and m["start_step"] == 3 and m["data_start_step"] == 3
    got = _losses(wd)
    np.testing.assert_allclose([got[4], got[5]], [ref_losses[4], ref_losses[5]], rtol=2e-5)
    assert jax.process_count() == 1


def test_cluster_detection_and_launch_flags():
    from videogen.training import distributed

    assert distributed.detect_cluster({}) is None
    assert distributed.detect_cluster({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None  # one task: no init
    assert distributed.detect_cluster({"SLURM_NTASKS": "16", "SLURM_PROCID": "3"}) == "slurm"
    assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}) == "tpu"
    assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "localhost"}) is None  # a single-host TPU VM
    assert distributed.detect_cluster({"OMPI_COMM_WORLD_SIZE": "4"}) == "mpi"
    assert distributed.detect_cluster({"JAX_COORDINATOR_ADDRESS": "n0:1234"}) == "jax-env"
    with pytest.raises(ValueError, match="also pass --num-processes, --process-id"):
        distributed.initialize(coordinator="localhost:1234")
    with pytest.raises(ValueError, match=r"--process-id=2 must be in 0\.\.1"):
        distributed.initialize("localhost:1234", 2, 2)
    assert distributed.initialize("localhost:1234", 1, 0) is False  # one process: nothing to initialise
    assert not distributed.is_initialized()
