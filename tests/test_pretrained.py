"""The pretrained model shipped in the package (videogen/pretrained.py, videogen/pretrained_data/tiny): its
files and hashes, loading (and refusing damaged copies), `videogen sample` without a workdir, and the
regression test -- the trained model sampled on fixed prompts must keep its judge score, which catches what a
random-weight model cannot (loading, the KV cache, guidance, decoding and the judge breaking together)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videogen import cli, pretrained
from videogen.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = pretrained.SHIPPED


@pytest.fixture(scope="module")
def shipped():
    return pretrained.load()


@pytest.fixture(scope="module")
def manifest():
    return pretrained.verify()


def test_manifest_names_every_file_its_hash_commands_and_figures(manifest):
    assert set(manifest["files"]) == set(pretrained.FILES)
    assert sorted(p.name for p in SHIPPED.iterdir()) == sorted([*pretrained.FILES, pretrained.MANIFEST])
    total = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert total <= pretrained.MAX_BYTES, f"{total / 2**20:.1f} MiB shipped"
    assert manifest["commit"] and manifest["date"]
    assert manifest["commands"]["tokenizer"].startswith(
        "python -m tokenizer.train --config experiments/tokenizer_world.py"
    )
    assert manifest["commands"]["lm"].startswith("python -m videogen.train --config experiments/lm_world.py")
    assert "--config.tokenizer_workdir=" in manifest["commands"]["lm"]
    assert all(manifest["training"][k].get("seconds", 0) > 0 for k in ("tokenizer", "lm"))
    figs = manifest["figures"]
    for split in ("test", "heldout"):
        assert 0 <= figs["judge"][split]["all_correct"] <= 1 and figs["judge"][split]["num_clips"] > 0
    assert figs["tokenizer"]["psnr"] > 20 and 0 < figs["tokenizer"]["usage"] <= 1
    assert figs["sizes"]["judge_clips"] > 0 and set(figs["seconds"]) >= {"regression", "judge", "tokenizer"}
    reg = figs["regression"]
    assert {k: reg[k] for k in pretrained.REGRESSION} == pretrained.REGRESSION
    assert 0 <= reg["fully_correct"] <= reg["num_prompts"]


def test_weights_are_plain_arrays_with_no_pickle(manifest):
    for name, kind in ((pretrained.TOKENIZER_NPZ, "tokenizer"), (pretrained.LM_NPZ, "lm")):
        with np.load(SHIPPED / name, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        assert arrays and all(a.dtype.kind in "biuf" for a in arrays.values())
        assert sum(a.size for a in arrays.values()) == manifest["params"][kind]
    assert "blocks/0/attn/wq" in np.load(SHIPPED / pretrained.LM_NPZ, allow_pickle=False).files


def _damage(folder: Path, how: str) -> str:
    """Damages a copy of the shipped folder; returns the file the error must name."""
    if how == "flip a byte":
        p = folder / pretrained.LM_NPZ
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    elif how == "truncate":
        p = folder / pretrained.TOKENIZER_NPZ
        p.write_bytes(p.read_bytes()[:1000])
    elif how == "missing":
        p = folder / pretrained.TEXT_MODEL
        p.unlink()
    elif how == "edited config":
        p = folder / pretrained.LM_CONFIG
        p.write_text(p.read_text().replace('"num_layers": ', '"num_layers": 1'))
    elif how == "manifest":
        p = folder / pretrained.MANIFEST
        p.write_text(p.read_text()[:-40])
    return p.name


@pytest.mark.parametrize("how", ["flip a byte", "truncate", "missing", "edited config", "manifest"])
def test_damaged_copy_is_refused_naming_the_file(tmp_path, how):
    folder = tmp_path / "tiny"
    shutil.copytree(SHIPPED, folder)
    name = _damage(folder, how)
    with pytest.raises(UsageError) as info:
        pretrained.load(folder)
    message = str(info.value)
    assert "\n" not in message and name in message and "make pretrained" in message and "reinstall" in message


def test_mismatched_file_with_a_matching_hash_is_refused(tmp_path):
    """A file re-hashed into the manifest but not the model's (an array renamed): refused, naming the array."""
    folder = tmp_path / "tiny"
    shutil.copytree(SHIPPED, folder)
    path = folder / pretrained.LM_NPZ
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["blocks/0/attn/wq_renamed"] = arrays.pop("blocks/0/attn/wq")
    np.savez(path, **arrays)
    manifest = json.loads((folder / pretrained.MANIFEST).read_text())
    manifest["files"][pretrained.LM_NPZ] = {"sha256": pretrained.sha256(path), "bytes": path.stat().st_size}
    (folder / pretrained.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match=r"lm\.npz has no array 'blocks/0/attn/wq'.*mismatched"):
        pretrained.load(folder)


def test_cli_refuses_a_damaged_install_in_one_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "tiny"
    shutil.copytree(SHIPPED, folder)
    _damage(folder, "flip a byte")
    monkeypatch.setattr(pretrained, "SHIPPED", folder)
    with pytest.raises(SystemExit) as info:
        cli.main(
            ["sample", "--prompt", "a small red circle moves to the left", "--out", str(tmp_path / "out")]
        )
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("videogen sample: error:") and "lm.npz" in err and "make pretrained" in err
    assert not (tmp_path / "out").exists()


def test_sample_without_workdir_uses_the_shipped_model(shipped, tmp_path, capsys):
    prompt = "a small red circle moves to the left"
    cli.main(["sample", "--prompt", prompt, "--num", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "videogen sample: no --workdir given: using the pretrained tiny model shipped in" in out
    assert (
        "judge:" in out and (tmp_path / "judge.json").is_file() and (tmp_path / "contact_sheet.png").is_file()
    )
    clips = sorted(tmp_path.glob("sample_*.npy"))
    assert len(clips) == 2 and np.load(clips[0]).shape == (17, 32, 32, 3)


def test_regression_judge_score_of_the_shipped_model(shipped, manifest):
    """The shipped model on the manifest's 32 test prompts, one batch, seed 0, guidance 3: the judge's
    fully-correct count within REGRESSION['tolerance'] (4) clips of the manifest's, and the objects whose colour
    it finds within REGRESSION['colour_tolerance'] (8) -- room for float rounding flipping a sampled code on
    another machine or device count, which changes the rest of that clip (the manifest's own numbers come from
    one CPU device, this test runs on the suite's 8 emulated ones)."""
    want = manifest["figures"]["regression"]
    got = pretrained.regression_figures(shipped)
    assert got["objects"] == want["objects"]
    assert abs(got["fully_correct"] - want["fully_correct"]) <= pretrained.REGRESSION["tolerance"], (
        got,
        want,
    )
    assert abs(got["colour_found"] - want["colour_found"]) <= pretrained.REGRESSION["colour_tolerance"], (
        got,
        want,
    )


def test_reproduction_plan_uses_the_manifests_commands(tmp_path, manifest, capsys):
    """experiments/pretrained.py (make pretrained): the commands it would run are the manifest's (its config file
    and variant; its overrides, plus any that a default moved since packing needs), with its own workdirs, and
    rebuild the shipped configs exactly (checked inside reproduction_plan)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import pretrained as experiment
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    plan = experiment.reproduction_plan(tmp_path / "pre")
    from videogen.training.config import apply_overrides, load_config

    for kind in ("tokenizer", "lm"):
        rebuilt = apply_overrides(load_config(str(ROOT / plan[kind]["config"])), plan[kind]["overrides"])
        rebuilt = json.loads(rebuilt.to_json())
        if kind == "lm":  # what the LM trainer fills in from its tokenizer
            rebuilt["model"].update(
                {
                    k: json.loads((SHIPPED / pretrained.LM_CONFIG).read_text())["model"][k]
                    for k in ("codebook_size", "video_grid", "group_bits")
                }
            )
        assert experiment.same_config(kind, rebuilt), kind
        assert not experiment.same_config(kind, {**rebuilt, "seed": 1})
        assert plan[kind]["argv"][1:5] == [
            "-m",
            manifest["commands"][kind].split()[2],
            "--config",
            manifest["configs"][kind],
        ]
        assert plan[kind]["argv"][plan[kind]["argv"].index("--workdir") + 1] == str(tmp_path / "pre" / kind)
    assert f"--config.tokenizer_workdir={tmp_path / 'pre' / 'tokenizer'}" in plan["lm"]["argv"]
    experiment.main(["--dry-run", "--out", str(tmp_path / "pre")])
    out = capsys.readouterr().out
    assert out.count("--workdir") >= 2
    assert (
        experiment.compare(
            {"judge": {"test": {"all_correct": 0.5}}}, {"judge": {"test": {"all_correct": 0.56}}}
        )["test"]["within"]
        is False
    )


def test_make_sample_and_continue_pass_a_workdir_only_when_there_is_one(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")

    def dry(target):
        return subprocess.run(
            ["make", "-n", target, f"RUNS={tmp_path}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    for target in ("sample", "continue"):
        assert "--workdir" not in dry(target)
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text("{}")
    for target in ("sample", "continue"):
        assert f"--workdir {tmp_path}/lm" in dry(target)


def test_demo_budget_scales_the_fresh_pairs_steps():
    from videogen import generate

    full = (generate.DEMO_TOKENIZER_STEPS, generate.DEMO_LM_STEPS)
    assert generate.demo_steps(None, 500) == full
    assert generate.demo_steps(600, 60) == full  # 9 min left >= the 8.5 the full counts take
    tok, lm = generate.demo_steps(600, 600 - generate.DEMO_TRAIN_SECONDS / 2)
    assert (tok, lm) == (round(full[0] / 2), round(full[1] / 2))
    assert generate.demo_steps(600, 10_000) == (round(full[0] / 10), round(full[1] / 10))


def test_reproduce_flow_trains_packs_and_compares(tmp_path, monkeypatch, capsys):
    """`make pretrained`'s steps in order, training and packing stubbed: each trainer command runs (into its
    workdir), a workdir whose config is not the shipped one is refused, the pair is packed with the manifest's
    evaluation sizes, and the figures are printed beside the manifest's with the +-5-point verdict."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import pretrained as experiment
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    from videogen import train as lm_train

    shipped = pretrained.read_manifest()
    ran, packed = [], {}

    def fake_train(kind, item, out):
        ran.append(item["argv"])
        item["workdir"].mkdir(parents=True, exist_ok=True)
        name = pretrained.TOKENIZER_CONFIG if kind == "tokenizer" else pretrained.LM_CONFIG
        shutil.copyfile(SHIPPED / name, item["workdir"] / "config.json")
        return 1.0

    def fake_pack(tok, lm, out, **kw):
        packed.update(tok=tok, lm=lm, out=out, sizes=kw.get("sizes"))
        out.mkdir(parents=True, exist_ok=True)  # the tokenizer as shipped, one LM array nudged
        shutil.copyfile(SHIPPED / pretrained.TOKENIZER_NPZ, out / pretrained.TOKENIZER_NPZ)
        arrays = pretrained._read_npz(SHIPPED / pretrained.LM_NPZ)
        name = sorted(k for k, v in arrays.items() if v.dtype == np.float32)[0]
        arrays[name] = arrays[name] + np.float32(0.5)
        pretrained._write_npz(out / pretrained.LM_NPZ, arrays)
        figures = json.loads(json.dumps(shipped["figures"]))
        figures["judge"]["test"]["all_correct"] += 0.03
        return {"figures": figures}

    monkeypatch.setattr(experiment, "_train", fake_train)
    monkeypatch.setattr(experiment.pretrained_pack, "pack", fake_pack)
    monkeypatch.setattr(lm_train, "measure_matmul_flops", lambda *a, **k: 5e10)
    result = experiment.reproduce(tmp_path)
    assert [argv[2] for argv in ran] == ["tokenizer.train", "videogen.train"]
    assert packed == {
        "tok": tmp_path / "tokenizer",
        "lm": tmp_path / "lm",
        "out": tmp_path / "model",
        "sizes": shipped["figures"]["sizes"],
    }
    assert result["judge"]["test"]["within"] and round(result["judge"]["test"]["points"], 6) == 3.0
    out = capsys.readouterr().out
    assert "| figure | shipped | reproduced |" in out and "judge test: +3.0 points (within +-5)" in out
    assert "weights tokenizer.npz: bit-identical to the shipped ones" in out
    assert "weights lm.npz: 1 of " in out and "arrays differ (max |diff| 0.5)" in out
    assert result["weights"]["lm.npz"]["differing"] == 1 and result["weights"]["tokenizer.npz"]["identical"]
    assert (tmp_path / "compare.json").is_file()
    # A workdir left from another run (another seed) is not a reproduction.
    config = json.loads((tmp_path / "lm" / "config.json").read_text())
    (tmp_path / "lm" / "config.json").write_text(json.dumps({**config, "seed": 7}))
    monkeypatch.setattr(experiment, "_finished", lambda *a: True)
    with pytest.raises(SystemExit, match="differs from the shipped lm_config.json"):
        experiment.reproduce(tmp_path)
