"""The `videogen` command line: preview (what `make data` runs), judge, text tokenizer, pending stages."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from videogen import cli
from videogen.data import video_io, world


def test_preview_writes_gif_grid_contact_sheet_and_captions(tmp_path, capsys):
    cli.main(["preview", "--out", str(tmp_path), "--resolution", "32", "--num", "6"])
    assert (tmp_path / "preview.gif").stat().st_size > 0
    sheet = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "contact_sheet.png"))
    assert sheet.ndim == 3 and sheet.shape[0] > 6 * 32
    captions = (tmp_path / "captions.txt").read_text().splitlines()
    src = world.WorldSource(world.WorldConfig(resolution=32))
    assert [c.split("  ", 1)[1] for c in captions] == [src[i]["caption"] for i in range(6)]
    grid = video_io.read_video(tmp_path / "preview.gif")
    assert grid.shape[1] >= 2 * 32 and grid.shape[2] >= 4 * 32  # 2 rows × 4 clips, with gutters


def test_judge_command_on_npy_and_mp4(tmp_path, capsys):
    ex = world.WorldSource(world.WorldConfig(resolution=64), "test")[3]
    np.save(tmp_path / "clip.npy", ex["video"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["judge", str(tmp_path / "clip.npy"), "--caption", ex["caption"]])
    assert exit_info.value.code == 0
    assert json.loads(capsys.readouterr().out)["all_correct"] is True
    video_io.write_mp4(tmp_path / "clip.mp4", ex["video"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["judge", str(tmp_path / "clip.mp4"), "--caption", "a white triangle bounces up and down"])
    assert exit_info.value.code == 1


def test_train_text_tokenizer_command(tmp_path, capsys):
    cli.main(["train-text-tokenizer", "--out", str(tmp_path), "--resolution", "32", "--num-captions", "500"])
    assert (tmp_path / "text_tokenizer.model").is_file()
    assert "pieces" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command, module", [("train-tokenizer", "tokenizer.train"), ("train-lm", "videogen.train")]
)
def test_trainer_commands_hand_their_arguments_over(command, module, monkeypatch):
    import importlib

    seen = {}
    monkeypatch.setattr(importlib.import_module(module), "main", lambda argv: seen.setdefault("argv", argv))
    args = ["--config", "experiments/x.py:tiny", "--workdir", "w", "--config.steps=3"]
    cli.main([command, *args])
    assert seen["argv"] == args


def test_console_script_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "videogen.cli", "--help"], capture_output=True, text=True, check=True
    )
    for name in ("preview", "judge", "prepare-world", "bench-data", "train-text-tokenizer", "sample"):
        assert name in out.stdout


def test_demo_refuses_an_lm_workdir_of_the_other_objective(tmp_path, monkeypatch, capsys):
    """`make demo` over an older demo's workdir whose LM has the other objective stops before training
    anything: resuming would sample a MaskGIT-trained model with the next-token sampler."""
    from videogen import generate

    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text(json.dumps({"objective": "maskgit"}))
    monkeypatch.setattr(
        generate, "run_trainer", lambda *a, **k: pytest.fail("trained before checking the workdir")
    )
    with pytest.raises(SystemExit) as info:  # a usage error: one line on stderr, exit code 2
        generate.main(["demo", "--workdir", str(tmp_path), "--tokenizer-steps", "1", "--lm-steps", "1"])
    assert info.value.code == 2
    assert re.search("holds a maskgit LM.*--objective maskgit", capsys.readouterr().err)
    with pytest.raises(SystemExit):  # argparse names the choices
        generate.main(["demo", "--workdir", str(tmp_path), "--objective", "ar"])


def test_demo_tokenizer_loss_follows_its_steps(tmp_path, monkeypatch):
    """The tiny config's edge-weighted loss measured worse at the demo's few hundred steps and better from
    1,200 on (BENCHMARKS.md): a short demo's tokenizer stage trains with plain L2, a long one keeps it."""
    from videogen import generate
    from videogen.training.config import apply_overrides, load_config

    tiny = load_config(str(generate.REPO / "experiments/tokenizer_world.py") + ":tiny")
    tiny_weight = tiny.loss.edge_weight
    assert tiny_weight > 0
    seen = {}

    def fake_run_trainer(module, config, workdir, overrides):
        # the config the trainer command would build (python -m tokenizer.train --config ... overrides)
        built = apply_overrides(load_config(str(generate.REPO / config)), overrides)
        seen.update(module=module, edge_weight=built.loss.edge_weight, steps=built.steps, workdir=workdir)
        raise RuntimeError("stop after the tokenizer stage's config")

    monkeypatch.setattr(generate, "run_trainer", fake_run_trainer)
    for steps, weight in (
        (7, 0.0),
        (generate.EDGE_WEIGHT_MIN_TOKENIZER_STEPS - 1, 0.0),
        (generate.EDGE_WEIGHT_MIN_TOKENIZER_STEPS, tiny_weight),
        (9600, tiny_weight),
    ):
        with pytest.raises(RuntimeError, match="stop after the tokenizer stage's config"):
            generate.main(
                [
                    "demo",
                    "--workdir",
                    str(tmp_path),
                    "--tokenizer-steps",
                    str(steps),
                    "--lm-steps",
                    "1",
                    "--no-pretrained",
                ]
            )
        assert seen == {
            "module": "tokenizer.train",
            "edge_weight": weight,
            "steps": steps,
            "workdir": tmp_path / "tokenizer",
        }, steps


def test_demo_shows_the_shipped_model_before_training(tmp_path, monkeypatch, capsys):
    """`make demo` runs the shipped pretrained model's part (samples, long video, drift plot) first, then
    trains the fresh pair with the budget's steps and prints both scores (both parts stubbed here)."""
    from videogen import generate, pretrained

    calls = []
    monkeypatch.setattr(
        generate,
        "shipped_demo",
        lambda out, **k: calls.append(("shipped", out)) or {"judge_all_correct": 0.5},
    )
    monkeypatch.setattr(pretrained, "verify", lambda *a: calls.append(("verify",)) or {})

    def fake_run_trainer(module, config, workdir, overrides):
        calls.append(("train", module, overrides[0]))
        raise RuntimeError("stop at training")

    monkeypatch.setattr(generate, "run_trainer", fake_run_trainer)
    with pytest.raises(RuntimeError, match="stop at training"):
        generate.main(["demo", "--workdir", str(tmp_path), "--budget-minutes", "10"])
    assert calls == [
        ("verify",),
        ("shipped", tmp_path / "shipped"),
        ("train", "tokenizer.train", f"--config.steps={generate.DEMO_TOKENIZER_STEPS}"),
    ]
    assert "1/5 the pretrained model shipped in the package" in capsys.readouterr().out
