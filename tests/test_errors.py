"""Every user mistake gets one clear line, not a traceback (issue #26).

Each case runs a real entry point (``main(argv)`` in this process, a few as subprocesses for what only a fresh
process shows: logging, the backend probe) and checks the exit code (2 for a usage error; the judge's 0 / 1 /
2), that stderr is one line naming the input, and that nothing was left half-written. The workdirs here are
made of JSON and empty folders: every refusal comes before a model is built, and the one case that loads
(damaged checkpoints) fails on the first restore.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from workdirs import tiny_tokenizer_config

from tokenizer import evaluate as tok_evaluate
from tokenizer import train as tok_train
from videogen import cli, generate
from videogen import train as lm_train
from videogen.data import video_io, world
from videogen.errors import UsageError
from videogen.eval import evaluate as lm_evaluate

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_CONFIG = str(ROOT / "experiments/tokenizer_world.py") + ":tiny"
LM_CONFIG = str(ROOT / "experiments/lm_world.py") + ":tiny"
# The clip of the truncated-mp4 report: a 64x64x17 world clip whose first 2,000 bytes (as a
# +faststart mp4: header first) decode one frame.
CLIP = world.WorldSource(world.WorldConfig(resolution=64), "test")[3]


def _forbid(monkeypatch, function, message: str) -> None:
    """Replaces ``function`` by a test failure under every name it is bound to in the package's loaded modules
    (its defining module and each module that imported it), so a call from anywhere fails the test."""

    def fail(*a, **k):
        pytest.fail(message)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").partition(".")[0] not in ("videogen", "tokenizer"):
            continue
        for name, value in list(vars(module).items()):
            if value is function:
                monkeypatch.setattr(module, name, fail)


def _damaged_checkpoint(workdir: Path, step: int = 1) -> None:
    """A checkpoint step folder as orbax lists it, whose model item is garbage (a disk error, a bad copy)."""
    path = workdir / "checkpoints" / str(step)
    (path / "model").mkdir(parents=True)
    (path / "_CHECKPOINT_METADATA").write_text("{}")
    (path / "model" / "_METADATA").write_text("garbage")


def _read_only(path: Path) -> bool:
    """Makes ``path`` unwritable for this process (root ignores permission bits: then the immutable flag);
    False when neither works here."""
    path.chmod(0o555)
    probe = path / ".probe"
    try:
        probe.touch()
    except OSError:
        return True
    probe.unlink()
    if (
        shutil.which("chattr")
        and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    ):
        return True
    path.chmod(0o755)
    return False


def _writable_again(path: Path) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Inputs of every kind a user gets wrong, by name (the argv templates below use them)."""
    root = tmp_path_factory.mktemp("errors")
    tok = root / "tok"  # a tokenizer workdir (the tests' tiny config) whose only checkpoint is damaged
    tok.mkdir()
    (tok / "config.json").write_text(tiny_tokenizer_config().to_json())
    _damaged_checkpoint(tok)
    lm = root / "lm"  # an LM workdir on that tokenizer, its only checkpoint damaged too
    lm.mkdir()
    (lm / "config.json").write_text(
        json.dumps(
            {
                "tokenizer_workdir": str(tok),
                "objective": "maskgit",
                "data": {"kind": "world", "resolution": 16, "num_frames": 9},
                "model": {"codebook_size": 64, "video_grid": [5, 2, 2]},
                "text": {"max_length": 32},
            }
        )
    )
    _damaged_checkpoint(lm)
    p = {
        "root": root,
        "tok": tok,
        "lm": lm,
        "missing": root / "no" / "such",
        "dir": root / "a_folder",
        "file": root / "notes.txt",
        "empty": root / "empty.mp4",
        "clip": root / "clip.mp4",
        "npy": root / "clip.npy",
        "truncated": root / "truncated.mp4",
        "no_videos": root / "no_videos",
        "junk_videos": root / "junk_videos",
    }
    p["dir"].mkdir()
    p["file"].write_text("not a video\n")
    p["empty"].write_bytes(b"")
    np.save(p["npy"], CLIP["video"])
    video_io.write_mp4(
        root / "plain.mp4", CLIP["video"]
    )  # header at the end: a cut file would not open at all
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(root / "plain.mp4"),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(p["clip"]),
        ],
        check=True,
    )
    p["truncated"].write_bytes(p["clip"].read_bytes()[:2000])  # head -c 2000 clip.mp4 > truncated.mp4
    p["no_videos"].mkdir()
    (p["no_videos"] / "readme.txt").write_text("no videos here")
    p["junk_videos"].mkdir()
    (p["junk_videos"] / "a.mp4").write_bytes(os.urandom(1000))
    p["ro"] = root / "read_only"
    p["ro"].mkdir()
    p["ro_lm"] = root / "read_only_lm"
    shutil.copytree(lm, p["ro_lm"])
    made = [d for d in (p["ro"], p["ro_lm"]) if _read_only(d)]
    yield p
    for d in made:
        _writable_again(d)


def _usage_error(capsys, main, argv, *, code: int = 2) -> str:
    """Runs ``main(argv)``; asserts the exit code and one line on stderr without a traceback; that line."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == code, (info.value.code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def _probe_writes(path: Path) -> bool:
    try:
        (path / ".probe").touch()
    except OSError:
        return False
    (path / ".probe").unlink()
    return True


# ============================================================================================
# The cases the issue lists
# ============================================================================================


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--guidance", "nan"),
        ("--guidance", "inf"),
        ("--temperature", "-1"),
        ("--top-k", "0"),
        ("--top-p", "1.5"),
    ],
)
def test_sample_refuses_bad_numbers_before_loading(paths, capsys, monkeypatch, flag, value):
    """NaN guidance used to sample the same video for every seed and write NaN into judge.json (exit 0)."""
    _forbid(monkeypatch, lm_train.load_lm, "loaded the model before the check")
    err = _usage_error(capsys, cli.main, ["sample", "--workdir", paths["lm"], "--prompt", "x", flag, value])
    assert flag in err and value in err


@pytest.mark.parametrize("case", ["missing", "empty", "file", "not_json", "tokenizer_workdir"])
def test_sample_names_a_workdir_that_is_not_an_lm(paths, tmp_path, capsys, case):
    workdir = {"missing": paths["missing"], "file": paths["file"], "tokenizer_workdir": paths["tok"]}.get(
        case
    )
    if case == "empty":
        workdir = tmp_path
    elif case == "not_json":
        workdir = tmp_path
        (tmp_path / "config.json").write_text("{not json")
    err = _usage_error(capsys, cli.main, ["sample", "--workdir", workdir, "--prompt", "x"])
    assert str(workdir) in err
    want = {
        "missing": "no such folder",
        "empty": "the folder is empty",
        "file": "is a file",
        "not_json": "not valid JSON",
        "tokenizer_workdir": "is a tokenizer workdir, but --workdir needs an LM",
    }
    assert want[case] in err, err


def test_a_tokenizer_workdir_where_an_lm_is_expected_and_vice_versa(paths, tmp_path, capsys):
    err = _usage_error(
        capsys,
        cli.main,
        ["encode", "--tokenizer", paths["lm"], "--input", paths["npy"], "--output", tmp_path / "c.npz"],
    )
    assert "is an LM workdir, but --tokenizer needs a tokenizer workdir" in err and str(paths["tok"]) in err
    err = _usage_error(
        capsys,
        lm_train.main,
        ["--config", LM_CONFIG, "--workdir", tmp_path / "lm", f"--config.tokenizer_workdir={paths['lm']}"],
    )
    assert "--config.tokenizer_workdir" in err and "is an LM workdir" in err
    assert not (tmp_path / "lm").exists()


def test_damaged_checkpoints_are_one_line(paths, tmp_path, capsys):
    """Every checkpoint damaged: the LM's own (export reads it), its tokenizer's (sampling loads that first)."""
    err = _usage_error(capsys, cli.main, ["export", "--workdir", paths["lm"], "--out", tmp_path / "export"])
    assert "no usable checkpoint" in err and str(paths["lm"]) in err
    assert not (tmp_path / "export").exists()
    err = _usage_error(
        capsys, cli.main, ["sample", "--workdir", paths["lm"], "--prompt", "x", "--out", tmp_path / "samples"]
    )
    assert "no usable checkpoint" in err and str(paths["tok"]) in err
    assert not (tmp_path / "samples").exists()


def test_sample_on_a_read_only_workdir_is_refused_before_sampling(paths, capsys, monkeypatch):
    if _probe_writes(paths["ro_lm"]):
        pytest.skip("cannot make a folder read-only here")
    _forbid(monkeypatch, lm_train.load_lm, "loaded the model before the check")
    err = _usage_error(capsys, cli.main, ["sample", "--workdir", paths["ro_lm"], "--prompt", "x"])
    assert "the default --out" in err and "not writable" in err and str(paths["ro_lm"]) in err
    assert not (paths["ro_lm"] / "samples").exists()


def test_missing_tokenizer_of_an_lm_points_at_its_config_not_a_trainer_flag(paths, tmp_path, capsys):
    lm = tmp_path / "lm"
    shutil.copytree(paths["lm"], lm)
    config = json.loads((lm / "config.json").read_text())
    config["tokenizer_workdir"] = str(tmp_path / "moved_away")
    (lm / "config.json").write_text(json.dumps(config))
    err = _usage_error(capsys, cli.main, ["sample", "--workdir", lm, "--prompt", "x"])
    assert "moved_away" in err and "no longer exists" in err and str(lm / "config.json") in err
    assert "--config." not in err


def test_judge_exit_codes(paths, tmp_path, capsys):
    """0 correct, 1 incorrect, 2 could not judge."""
    for video, caption, code in (
        (paths["npy"], CLIP["caption"], 0),
        (paths["clip"], CLIP["caption"], 0),
        (paths["npy"], "a red circle moves to the left", 1),
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(["judge", str(video), "--caption", caption])
        assert info.value.code == code, (video, caption)
        assert capsys.readouterr().err == ""
    np.save(tmp_path / "two.npy", CLIP["video"][:2])
    cases = {
        paths["file"]: "Cannot read video",
        paths["empty"]: "empty (0 bytes)",
        paths["missing"]: "no such file",
        paths["dir"]: "is a folder",
        tmp_path / "two.npy": "has 2 frame(s); the judge needs at least 3",
        paths["truncated"]: "claims 17 frames (2.13 s at 8 fps) but only 1 decode",
    }
    for video, message in cases.items():
        err = _usage_error(capsys, cli.main, ["judge", video, "--caption", CLIP["caption"]])
        assert message in err and video.name in err, err
    err = _usage_error(capsys, cli.main, ["judge", paths["npy"], "--caption", "a purple elephant dances"])
    assert "Cannot parse caption 'a purple elephant dances'" in err


def test_decode_refusals_point_the_right_way(paths, tmp_path, capsys):
    err = _usage_error(
        capsys,
        cli.main,
        ["decode", "--tokenizer", paths["tok"], "--input", paths["clip"], "--output", tmp_path / "r.mp4"],
    )
    assert "is a video: encode it first" in err and "allow_pickle" not in err
    err = _usage_error(
        capsys,
        cli.main,
        ["decode", "--tokenizer", paths["tok"], "--input", paths["empty"], "--output", tmp_path / "r.mp4"],
    )
    assert "empty (0 bytes)" in err
    err = _usage_error(
        capsys,
        cli.main,
        [
            "decode",
            "--tokenizer",
            paths["tok"],
            "--input",
            tmp_path / "c.npz",
            "--output",
            tmp_path / "r.mp4",
            "--fps",
            "0",
        ],
    )
    assert "--fps" in err
    assert not (tmp_path / "r.mp4").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.steps=-5", "config.steps=-5: must be a whole number >= 1"),
        ("--config.batch_size=0", "config.batch_size=0"),
        ("--config.batch_size=-8", "config.batch_size=-8"),
        ("--config.stepz=3", "unknown key 'stepz'; did you mean --config.steps?"),
        ("--config.optim.lr=nan", "optim.lr is float"),
        ("--config.optim.lr=1e999", "config.optim.lr=inf: must be a finite number"),
        # Data specs take keys the shipped configs leave out (any source kind's), and nothing else.
        (
            "--config.data.resolutoin=16",
            "no data spec key 'resolutoin'; did you mean --config.data.resolution?",
        ),
        ("--config.data.object_count_weights=2", "must be a list of weights"),
        ("--config.data.object_count_weights=[1,1e999]", "non-negative finite weights"),
    ],
)
def test_trainers_refuse_a_bad_config_before_writing_anything(tmp_path, capsys, override, message):
    """`--config.steps=-5` used to exit 0 after an eval; `batch_size=0` reached grain after the model was built
    and left a config.json behind."""
    for main, extra in ((tok_train.main, []), (lm_train.main, [f"--config.tokenizer_workdir={tmp_path}"])):
        workdir = tmp_path / "workdir"
        config = TOKENIZER_CONFIG if main is tok_train.main else LM_CONFIG
        err = _usage_error(capsys, main, ["--config", config, "--workdir", workdir, override, *extra])
        assert message in err, err
        assert not workdir.exists()


def test_trainer_workdirs_of_the_wrong_kind(paths, tmp_path, capsys):
    err = _usage_error(capsys, tok_train.main, ["--config", TOKENIZER_CONFIG, "--workdir", paths["file"]])
    assert "is a file, not a folder" in err and str(paths["file"]) in err
    err = _usage_error(capsys, tok_train.main, ["--config", TOKENIZER_CONFIG, "--workdir", paths["lm"]])
    assert "is an LM workdir" in err
    if _probe_writes(paths["ro"]):
        pytest.skip("cannot make a folder read-only here")
    err = _usage_error(
        capsys, tok_train.main, ["--config", TOKENIZER_CONFIG, "--workdir", paths["ro"] / "wd"]
    )
    assert "not writable" in err and str(paths["ro"] / "wd") in err


@pytest.mark.parametrize(
    "folder, message",
    [
        ("no_videos", "holds no video files"),
        ("junk_videos", "no usable clips"),
        ("missing", "no such folder"),
    ],
)
def test_trainer_folder_source_with_nothing_usable(paths, tmp_path, capsys, folder, message):
    data = json.dumps({"kind": "folder", "root": str(paths[folder]), "resolution": 32, "num_frames": 17})
    err = _usage_error(
        capsys,
        tok_train.main,
        ["--config", TOKENIZER_CONFIG, "--workdir", tmp_path / "wd", f"--config.data={data}"],
    )
    assert message in err and str(paths[folder]) in err, err
    assert not (tmp_path / "wd").exists()


def test_plan_suggests_its_own_num_devices(capsys):
    err = _usage_error(
        capsys,
        cli.main,
        [
            "plan",
            "--config",
            LM_CONFIG,
            "--config.model.codebook_size=64",
            "--config.model.video_grid=(5,2,2)",
            "--config.mesh.fsdp=16",
        ],
    )
    assert "--num-devices N" in err and "XLA_FLAGS" not in err


def test_folder_messages_point_at_what_a_user_can_do(paths, tmp_path, caplog):
    """The skipped-files warning says how to see each file's reason; a folder's eval names the folder, not a
    split it does not have."""
    from videogen.data.folder import FolderSource

    folder = tmp_path / "videos"
    shutil.copytree(paths["junk_videos"], folder)
    video_io.write_mp4(folder / "good.mp4", CLIP["video"][:9, ::4, ::4], fps=8)
    with caplog.at_level(logging.WARNING, logger="videogen.data"):
        FolderSource(folder, num_frames=9, resolution=16, fps=8, default_caption="c")
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "-v on the command line" in warning and "debug log" not in warning
    config = tiny_tokenizer_config()
    config.data = {"kind": "folder", "root": str(folder), "resolution": 16, "num_frames": 9, "fps": 8.0}
    with pytest.raises(UsageError) as info:
        tok_evaluate.eval_source(config, "test", 5)
    assert f"the folder {folder} has only 1 clips" in str(info.value) and "split" not in str(info.value)


def test_a_long_prompt_is_truncated_with_a_short_warning(tmp_path, caplog):
    from videogen.data import text

    captions = [world.sample_clip(world.WorldConfig(resolution=32), "train", i).caption for i in range(200)]
    tt = text.TextTokenizer(text.train_text_tokenizer(captions, tmp_path / "t.model", vocab_size=320), 32)
    with caplog.at_level(logging.WARNING, logger="videogen.data"):
        tt.encode("a red circle moves to the left " * 320)  # ~10,000 characters
    (message,) = [r.getMessage() for r in caplog.records]
    assert len(message) < 300 and "9,920 characters" in message and "the rest is ignored" in message
    assert "raise" not in message


def test_contact_sheet_captions_keep_their_spaces():
    """Pillow's default font draws a 2-pixel space: captions read "videoa", "upand" without a wider gap."""
    from PIL import ImageFont

    font = ImageFont.load_default()
    assert font.getlength(video_io._word_gap(font)) >= font.getlength("m") / 3
    assert video_io._wrap_text("moves up and to the left", font, 1000) == [
        video_io._word_gap(font).join("moves up and to the left".split())
    ]


def test_help_shows_defaults_and_says_what_the_values_mean(capsys):
    for argv, wanted in (
        (["sample", "--help"], ["(default: 3.0)", "'' = unconditional"]),
        (["encode", "--help"], ["4x4x4 for its :tiny variant"]),
        (["preview", "--help"], ["--out OUT default: runs/preview", "--num NUM default: 16"]),
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert info.value.code == 0 and all(w in out for w in wanted), (argv, out)
        assert "4x8x8 for the shipped configs" not in out


# ============================================================================================
# Every subcommand's flags, fed bad values: a usage error, never a traceback
# ============================================================================================

BAD_FLAGS = {
    "preview": [
        ["preview", "--num", "0"],
        ["preview", "--num", "-3"],
        ["preview", "--num", "abc"],
        ["preview", "--resolution", "nan"],
        ["preview", "--resolution", "13"],
        ["preview", "--out", "{file}"],
        ["preview", "--out", "{ro}/p"],
        ["preview", "--kind", "folder", "--root", "{missing}"],
        ["preview", "--kind", "folder", "--root", "{file}"],
        ["preview", "--split", "nope"],
    ],
    "prepare-world": [
        ["prepare-world", "--data-dir", "{file}"],
        ["prepare-world", "--data-dir", "{ro}/d"],
        ["prepare-world", "--data-dir", "{root}/d", "--resolution", "0"],
        ["prepare-world", "--data-dir", "{root}/d", "--split-sizes", "train=x"],
        ["prepare-world", "--data-dir", "{root}/d", "--max-objects", "-1"],
    ],
    "judge-world": [
        ["judge-world", "--num", "0"],
        ["judge-world", "--num-frames", "-1"],
        ["judge-world", "--resolution", "inf"],
        ["judge-world", "--seed", "-1"],
        ["judge-world", "--num", "2", "--resolution", "12"],
    ],
    "train-text-tokenizer": [
        ["train-text-tokenizer", "--out", "{file}"],
        ["train-text-tokenizer", "--out", "{ro}"],
        ["train-text-tokenizer", "--out", "{root}/t", "--vocab-size", "0"],
        ["train-text-tokenizer", "--out", "{root}/t", "--num-captions", "-5"],
    ],
    "bench-data": [
        ["bench-data", "--batch-size", "0"],
        ["bench-data", "--steps", "-1"],
        ["bench-data", "--resolution", "abc"],
        ["bench-data", "--json", "{ro}/b.json"],
    ],
    "sample": [
        ["sample", "--workdir", "{lm}", "--prompt", "x", *flag]
        for flag in (
            ["--guidance", "-1"],
            ["--temperature", "inf"],
            ["--top-p", "0"],
            ["--top-p", "nan"],
            ["--num", "0"],
            ["--num", "1.5"],
            ["--steps", "0"],
            ["--seed", "-1"],
            ["--out", "{file}"],
            ["--out", "{ro}"],
        )
    ]
    + [["sample", "--workdir", w, "--prompt", "x"] for w in ("{missing}", "{file}", "{tok}", "{dir}")],
    "continue": [
        ["continue", "--workdir", "{lm}", *flag]
        for flag in (
            ["--frames", "0"],
            ["--length-factor", "-1"],
            ["--context-frames", "0"],
            ["--context-frames", "5"],
            ["--fps", "nan"],
            ["--fps", "0"],
            ["--num", "0"],
            ["--batch", "0"],
            ["--top-k", "0"],
            ["--guidance", "inf"],
            ["--video", "{missing}"],
            ["--video", "{dir}"],
            ["--out", "{file}"],
            ["--out", "{ro}"],
            ["--story", "no frames"],
        )
    ]
    + [["continue", "--workdir", w] for w in ("{missing}", "{tok}")],
    "eval": [
        ["eval", "--workdir", "{lm}", *flag]
        for flag in (
            ["--num-clips", "0"],
            ["--batch-size", "-1"],
            ["--repeats", "0"],
            ["--guidance", "nan"],
            ["--steps", "0"],
            ["--step", "-1"],
            ["--step", "7"],
            ["--fvd-frames", "0"],
            ["--fvd-frames", "4"],
            ["--out", "{ro}/e.json"],
            ["--out", "{dir}"],
            ["--drift-clips", "0"],
        )
    ]
    + [["eval", "--workdir", w] for w in ("{missing}", "{file}")]
    + [["eval", "--workdir", "{tok}", "--protocol", "ucf"]],
    "encode": [
        ["encode", "--tokenizer", "{tok}", "--input", "{npy}", "--output", "{root}/c.npz", *flag]
        for flag in (
            ["--fps", "0"],
            ["--start", "-1"],
            ["--resize", "0"],
            ["--frames", "0"],
            ["--frames", "abc"],
            ["--step", "99"],
        )
    ]
    + [
        ["encode", "--tokenizer", t, "--input", i, "--output", o]
        for t, i, o in (
            ("{missing}", "{npy}", "{root}/c.npz"),
            ("{lm}", "{npy}", "{root}/c.npz"),
            ("{tok}", "{missing}", "{root}/c.npz"),
            ("{tok}", "{dir}", "{root}/c.npz"),
            ("{tok}", "{npy}", "{dir}"),
            ("{tok}", "{npy}", "{root}/c.txt"),
            ("{tok}", "{npy}", "{ro}/c.npz"),
            ("{tok}", "{file}", "{root}/c.npz"),
        )
    ],
    "decode": [
        ["decode", "--tokenizer", t, "--input", i, "--output", o, *flag]
        for t, i, o, flag in (
            ("{tok}", "{npy}", "{root}/r.mp4", ["--fps", "nan"]),
            ("{tok}", "{npy}", "{root}/r.mp4", []),
            ("{tok}", "{empty}", "{root}/r.mp4", []),
            ("{lm}", "{npy}", "{root}/r.mp4", []),
            ("{tok}", "{missing}", "{root}/r.mp4", []),
        )
    ],
    "eval-tokenizer": [
        ["eval-tokenizer", "--workdir", w, *flag]
        for w, flag in (
            ("{tok}", ["--num-clips", "0"]),
            ("{tok}", ["--batch-size", "0"]),
            ("{tok}", ["--samples", "-1"]),
            ("{lm}", []),
            ("{missing}", []),
            ("{tok}", ["--out", "{dir}"]),
            ("{tok}", ["--out", "{ro}/m.json"]),
        )
    ],
    "plan": [
        ["plan", "--config", c, *flag]
        for c, flag in (
            (LM_CONFIG, ["--num-devices", "0"]),
            ("{missing}", []),
            (LM_CONFIG, ["--config.stepz=1"]),
            (LM_CONFIG, ["--config.batch_size=0"]),
            (LM_CONFIG, ["--json", "{dir}"]),
            (LM_CONFIG, ["--config.tokenizer_workdir={lm}"]),
            (LM_CONFIG, ["--config.steps=abc"]),
        )
    ],
    "export": [
        ["export", "--workdir", w, "--out", o, *flag]
        for w, o, flag in (
            ("{missing}", "{root}/x", []),
            ("{lm}", "{file}", []),
            ("{lm}", "{root}/x", ["--step", "-1"]),
            ("{lm}", "{lm}", []),
            ("{lm}", "{ro}/x", []),
            ("{file}", "{root}/x", []),
        )
    ],
    "train-tokenizer": [
        ["train-tokenizer", "--config", c, "--workdir", w, *flag]
        for c, w, flag in (
            (TOKENIZER_CONFIG, "{root}/wd", ["--config.steps=abc"]),
            (TOKENIZER_CONFIG, "{root}/wd", ["--config.steps=0"]),
            (TOKENIZER_CONFIG, "{root}/wd", ["--config.eval.batch_size=-1"]),
            ("{missing}", "{root}/wd", []),
            (TOKENIZER_CONFIG + "x", "{root}/wd", []),
            (TOKENIZER_CONFIG, "{ro}/wd", []),
            (TOKENIZER_CONFIG, "{root}/wd", ["--config.data.resolution=13"]),
            (TOKENIZER_CONFIG, "{root}/wd", ["--config.steps.x=1"]),
            (TOKENIZER_CONFIG, "{root}/wd", ["--bogus"]),
        )
    ],
    "train-lm": [
        ["train-lm", "--config", LM_CONFIG, "--workdir", w, *flag]
        for w, flag in (
            ("{root}/wd", []),
            ("{root}/wd", ["--config.tokenizer_workdir={missing}"]),
            ("{root}/wd", ["--config.tokenizer_workdir={file}"]),
            ("{tok}", ["--config.tokenizer_workdir={tok}"]),
            ("{root}/wd", ["--config.tokenizer_workdir={tok}", "--config.grad_accum_steps=0"]),
        )
    ],
}
CASES = [(name, argv) for name, table in BAD_FLAGS.items() for argv in table]


@pytest.mark.parametrize("name, argv", CASES, ids=[f"{n}:{' '.join(a[1:])}" for n, a in CASES])
def test_bad_flag_values_are_usage_errors(paths, capsys, monkeypatch, name, argv):
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    if any(str(paths["ro"]) in a for a in argv) and _probe_writes(paths["ro"]):
        pytest.skip("cannot make a folder read-only here")
    # Nothing expensive may start for any of these: each would fail the test rather than run.
    for function in (tok_train.train, lm_train.train, lm_train.load_lm, tok_train.load_tokenizer):
        _forbid(monkeypatch, function, "started work on a bad request")
    _usage_error(capsys, cli.main, argv)
    assert not (paths["root"] / "wd").exists()


def test_the_other_mains_report_usage_errors_too(paths, tmp_path, capsys):
    err = _usage_error(capsys, tok_evaluate.main, ["--workdir", paths["lm"]])
    assert err.startswith("python -m tokenizer.evaluate: error: --workdir") and "is an LM workdir" in err
    _usage_error(capsys, tok_evaluate.main, ["--workdir", paths["tok"], "--num-clips", "0"])
    err = _usage_error(capsys, lm_evaluate.main, ["--workdir", paths["missing"]])
    assert err.startswith("python -m videogen.eval.evaluate: error:") and str(paths["missing"]) in err
    err = _usage_error(capsys, generate.main, ["demo", "--workdir", tmp_path, "--guidance", "nan"])
    assert "--guidance" in err
    _usage_error(capsys, generate.main, ["demo", "--workdir", paths["file"]])
    _usage_error(capsys, generate.main, ["sample", "--workdir", paths["tok"], "--prompt", "x"])


# ============================================================================================
# A fresh process: quiet by default, -v for the traceback
# ============================================================================================


def _run(*argv: str, drop_platforms: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if drop_platforms:  # let JAX look for accelerators as on a user's machine (its TPU probe logs at INFO)
        env.pop("JAX_PLATFORMS", None)
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def test_a_fresh_process_says_one_line_and_v_adds_the_traceback(paths):
    """Loading a damaged workdir opens orbax checkpoints (a dozen absl INFO lines each) and starts a JAX
    backend (a TPU probe line): none of it shows without -v."""
    r = _run(
        "-m", "videogen.cli", "sample", "--workdir", str(paths["lm"]), "--prompt", "x", drop_platforms=True
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1].startswith("videogen sample: error: no usable checkpoint in"), (
        r.stderr
    )
    # One line here; a machine with an accelerator plugin but no accelerator may add JAX's WARNING about it.
    assert not [line for line in lines[:-1] if " INFO " in line or "tpu" in line.lower() or "absl" in line], (
        lines
    )
    r = _run("-m", "videogen.cli", "-v", "sample", "--workdir", str(paths["missing"]), "--prompt", "x")
    assert r.returncode == 2 and "Traceback" in r.stderr and "UsageError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("videogen sample: error: --workdir")


def test_a_fresh_trainer_process_refuses_in_one_line(tmp_path):
    workdir = tmp_path / "wd"
    r = _run(
        "-m",
        "tokenizer.train",
        "--config",
        TOKENIZER_CONFIG,
        "--workdir",
        str(workdir),
        "--config.batch_size=0",
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "python -m tokenizer.train: error: config.batch_size=0: must be a whole number >= 1 (--config.batch_size=N)."
    ]
    assert not workdir.exists()
    r = _run(
        "-m",
        "tokenizer.train",
        "--config",
        TOKENIZER_CONFIG,
        "--workdir",
        str(workdir),
        "-v",
        "--config.stepz=3",
    )
    assert r.returncode == 2 and "Traceback" in r.stderr and "did you mean --config.steps?" in r.stderr
