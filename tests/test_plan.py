"""`videogen plan`: ahead-of-time compile of the train step, parameter count, per-device memory from XLA's
compiled memory analysis, the sharding of every parameter and optimizer slot -- no training (issue #7)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from videogen import cli
from videogen import plan as plan_lib
from videogen import train as LM

ROOT = Path(__file__).resolve().parents[1]
LM_ARGS = [
    "--config.model.codebook_size=64",
    "--config.model.video_grid=(5,2,2)",
    "--config.data.resolution=16",
    "--config.data.num_frames=9",
    "--config.batch_size=8",
    "--config.text.max_length=32",
    "--config.model.num_layers=2",
    "--config.model.d_model=32",
    "--config.model.num_heads=4",
    "--config.model.num_kv_heads=2",
    "--config.model.mlp_dim=64",
]


def _plan(capsys, tmp_path, name, *args):
    """Runs the CLI; returns (printed text, JSON plan)."""
    out = tmp_path / f"{name}.json"
    cli.main(["plan", *args, "--json", str(out)])
    return capsys.readouterr().out, json.loads(out.read_text())


def test_plan_lm_sharded_vs_replicated(capsys, tmp_path):
    cfg = str(ROOT / "experiments/lm_world.py") + ":tiny"
    text, p = _plan(
        capsys,
        tmp_path,
        "sharded",
        "--config",
        cfg,
        *LM_ARGS,
        "--config.mesh.data=2",
        "--config.mesh.fsdp=2",
        "--config.mesh.tensor=2",
    )
    _, r = _plan(capsys, tmp_path, "replicated", "--config", cfg, *LM_ARGS, "--config.mesh.data=-1")
    # Parameter count: independent of the plan's abstract train state, from the model definition itself.
    c = LM.apply_overrides(LM.load_config(cfg), [a[len("--config.") :] for a in LM_ARGS])
    import jax

    _, params, _ = LM.abstract_model(LM.transformer_config(c, 64, (5, 2, 2)))
    n = sum(x.size for x in jax.tree.leaves(params))
    assert p["num_params"] == r["num_params"] == n > 0
    assert p["num_opt_state"] >= 2 * n  # Adam mu + nu (+ counts)
    assert p["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2} and r["mesh"] == {
        "data": 8,
        "fsdp": 1,
        "tensor": 1,
    }
    # Memory per device: compiled figures, and sharding the state over fsdp x tensor shrinks it.
    for q in (p, r):
        mem = q["memory_per_device"]
        assert mem["argument"] >= q["state_bytes_per_device"] > 0 and mem["peak"] > 0
    assert p["state_bytes_per_device"] < r["state_bytes_per_device"] / 2
    assert p["memory_per_device"]["argument"] < r["memory_per_device"]["argument"]
    # Every parameter is listed with its sharding and its optimizer slots'.
    for path in ("blocks/0/attn/wq", "blocks/1/mlp/w_down", "embed/text", "video_head"):
        line = next(x for x in text.splitlines() if x.startswith(path + " "))
        assert "(" in line and "mu (" in line and "nu (" in line, line
    assert "wq" in text and "(fsdp,tensor,·)" in text and "optimizer scalars" in text
    assert "parameters: " in text and "per-device memory (compiled train step)" in text and "peak" in text


def test_plan_tokenizer(capsys, tmp_path):
    text, p = _plan(
        capsys,
        tmp_path,
        "tok",
        "--config",
        str(ROOT / "experiments/tokenizer_world.py") + ":tiny",
        "--config.data.resolution=16",
        "--config.data.num_frames=9",
        "--config.batch_size=8",
        "--config.model.channels=8",
        "--config.model.num_groups=4",
        "--config.model.channel_multipliers=(1,2)",
        "--config.model.num_res_blocks=0",
        "--config.model.use_adaptive_group_norm=False",
        "--config.model.temporal_downsample=(True,)",
        "--config.model.spatial_downsample=(True,)",
    )
    assert p["kind"] == "tokenizer" and p["num_params"] > 0 and p["memory_per_device"]["temp"] > 0
    assert "encoder/conv_in" in text and "replicated" in text


def test_plan_rejects_bad_config_before_compiling(tmp_path, capsys):
    cfg = str(ROOT / "experiments/lm_world.py") + ":tiny"
    with pytest.raises(SystemExit) as info:  # a usage error: one line on stderr, exit code 2
        cli.main(
            [
                "plan",
                "--config",
                cfg,
                *LM_ARGS,
                "--config.batch_size=6",
                "--config.mesh.data=2",
                "--config.mesh.fsdp=2",
                "--config.mesh.tensor=2",
            ]
        )
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.splitlines()) == 1, err
    assert re.search(r"batch_size=6 must be a multiple .* use 8", err), err
    with pytest.raises(ValueError, match="tokenizer_workdir=None has no config.json"):
        plan_lib.plan(LM.load_config(cfg))


def test_1b_variant_is_about_a_billion_parameters():
    """The cluster size the issue names: counted from the abstract model (nothing allocated)."""
    import jax

    c = LM.load_config(str(ROOT / "experiments/lm_world.py") + ":1b")
    tcfg = LM.transformer_config(c, 4096, (5, 8, 8))
    _, params, _ = LM.abstract_model(tcfg)
    n = sum(x.size for x in jax.tree.leaves(params))
    assert 1.0e9 <= n <= 1.3e9, n
    assert tcfg.num_kv_heads < tcfg.num_heads and tcfg.remat != "none" and c.mesh.fsdp == -1
