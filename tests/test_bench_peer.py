"""`make bench-peer` (videogen/bench_peer.py): the CLI answers --help, and without a Python that has torch it
says in one line how to make the scratch environment and exits 2 (no torch, no JAX work: cheap)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "videogen.bench_peer", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help():
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    assert "--torch-python" in r.stdout and "--rounds" in r.stdout


def test_without_torch_python_exits_2_with_one_line(tmp_path):
    for args in (
        (),
        ("--torch-python", str(tmp_path / "no-such-python")),
        ("--torch-python", sys.executable),
    ):
        if args and args[1] == sys.executable:
            probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
            if probe.returncode == 0:  # this Python has torch after all: not the case under test
                continue
        r = _run(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = (r.stdout + r.stderr).strip().splitlines()
        assert len(lines) == 1, lines
        assert (
            "python3 -m venv" in lines[0] and "pip install torch" in lines[0] and "--torch-python" in lines[0]
        )


def test_a_bad_override_is_one_line_before_torch_is_looked_for():
    """An unknown --set key is the user's mistake: one line naming it, exit 2, even with no torch Python."""
    r = _run("--set", "model.attention_impl=dot_product_attention")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1 and "model.attention_impl" in lines[0] and "Traceback" not in lines[0], lines
