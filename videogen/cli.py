"""The `videogen` command line.

    videogen preview --out runs/preview            # GIF grid + contact sheet + captions of the world
    videogen prepare-world --data-dir D            # the world as a TFDS ArrayRecord dataset
    videogen sample --prompt "a small red circle moves to the left"   # the pretrained model in the package
    videogen continue --prompt "..." --length-factor 16               # 257 frames (--workdir W: your LM)
    videogen judge clip.mp4 --caption "..."        # score a video against its caption
    videogen judge-world --resolution 64 --num 500 # the judge on ground-truth renders
    videogen train-text-tokenizer --out DIR        # sentencepiece model from a dataset's captions
    videogen bench-data                            # input pipeline throughput table
    videogen plan --config experiments/lm_world.py --config.tokenizer_workdir=W   # will it fit (no training)
    videogen export --workdir runs/lm --out runs/lm_params                        # params-only export
    videogen eval --workdir runs/lm                # FVD + judge (test vs heldout); tokenizer workdirs too
    videogen encode --tokenizer W --input v.mp4 --output v.npz   # video -> token codes (decode: back)
    videogen eval-tokenizer --workdir W --split heldout          # PSNR, SSIM, code usage, judge (--rfvd)

Exit codes: 0 done (judge: the video is correct), 1 judge: incorrect (or a run that failed), 2 a usage error:
one line on stderr names the input and the fix (-v adds its traceback); a traceback otherwise is a bug.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
from jax._src import xla_bridge

from tokenizer.codes import add_commands as add_tokenizer_commands
from videogen import bench_data, checks, config_checks, errors
from videogen import plan as plan_lib
from videogen.data import damage, sources, text, video_io, world
from videogen.data.captions import parse_caption
from videogen.data.sources import build_source
from videogen.errors import UsageError
from videogen.eval import judge
from videogen.eval.evaluate import add_eval_args
from videogen.eval.evaluate import run as run_eval
from videogen.generate import add_sample_args, sample_command
from videogen.longvideo.continuation import add_continue_args, continue_command
from videogen.training import checkpointing
from videogen.training.config import apply_overrides, load_config

# Stages that later issues add; until they land the command says so instead of pretending.
_PENDING: dict[str, str] = {}


def _data_spec(args) -> dict:
    spec = {"kind": args.kind, "resolution": args.resolution, "num_frames": args.num_frames}
    if args.kind == "world":
        spec.update(max_objects=args.max_objects, seed=args.seed)
    elif args.kind == "tfds":
        spec.update(name=args.name, data_dir=args.data_dir)
    else:
        spec.update(root=args.root)
    return spec


def _add_data_args(p: argparse.ArgumentParser, resolution: int = 64) -> None:
    p.add_argument("--kind", choices=("world", "tfds", "folder"), default="world", help="data source")
    p.add_argument("--resolution", type=checks.positive_int, default=resolution)
    p.add_argument("--num-frames", type=checks.positive_int, default=17)
    p.add_argument("--max-objects", type=checks.positive_int, default=2, help="world only")
    p.add_argument("--seed", type=checks.nonnegative_int, default=0, help="world only")
    p.add_argument("--name", help="tfds only: dataset name, e.g. ucf101/ucf101_1_256")
    p.add_argument("--data-dir", help="tfds only: where it was prepared")
    p.add_argument("--root", help="folder only: the folder of videos")
    p.add_argument("--split", default="train", help="world: train, test or heldout; a folder has no splits")


def _source(args):
    """The data source the data flags name, its paths checked first (a folder is probed file by file)."""
    spec = _data_spec(args)
    if args.kind == "folder":
        checks.video_folder(args.root, "--root")
    else:
        checks.data_spec(spec, "--kind " + args.kind)
    return build_source(spec, args.split)


def cmd_preview(args) -> None:
    checks.output_folder(args.out, "--out")
    source = _source(args)
    examples = [source[i] for i in range(min(args.num, len(source)))]
    videos = [e["video"] for e in examples]
    captions = [e["caption"] for e in examples]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video_io.gif_grid(videos, out / "preview.gif", cols=4)
    video_io.contact_sheet(videos, captions, path=out / "contact_sheet.png")
    (out / "captions.txt").write_text("".join(f"{i:2d}  {c}\n" for i, c in enumerate(captions)))
    print(
        f"Wrote {out / 'preview.gif'} ({len(videos)} clips, 4 per row), {out / 'contact_sheet.png'} and "
        f"{out / 'captions.txt'}:"
    )
    print((out / "captions.txt").read_text(), end="")


def _split_sizes(text: str) -> dict[str, int]:
    """``--split-sizes train=20000,test=1000,heldout=1000`` -> a dict."""
    sizes = {}
    for item in filter(None, text.replace(" ", ",").split(",")):
        key, _, value = item.partition("=")
        try:
            sizes[key] = int(value)
        except ValueError:
            raise UsageError(
                f"--split-sizes {text!r}: {item!r} is not SPLIT=CLIPS; write e.g. "
                "train=20000,test=1000,heldout=1000."
            ) from None
    return sizes


def cmd_prepare_world(args) -> None:
    from videogen.data import tfds_world  # deferred: imports tensorflow_datasets, slow to load

    checks.output_folder(args.data_dir, "--data-dir")
    try:  # the world's size and the split sizes, before TFDS starts writing
        tfds_world.world_builder_config(
            world.WorldConfig(
                resolution=args.resolution,
                num_frames=args.num_frames,
                max_objects=args.max_objects,
                seed=args.seed,
            ),
            _split_sizes(args.split_sizes) if args.split_sizes else None,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    argv = [
        "--data_dir",
        args.data_dir,
        "--resolution",
        str(args.resolution),
        "--num_frames",
        str(args.num_frames),
        "--max_objects",
        str(args.max_objects),
        "--seed",
        str(args.seed),
    ]
    if args.split_sizes:
        argv += ["--split_sizes", args.split_sizes]
    tfds_world.main(argv)


# The judge reads motion from a track of at least this many frames (videogen.eval.judge.classify_motion); fewer
# would be judged "motion wrong" rather than not judged.
MIN_JUDGE_FRAMES = 3


def _read_judged_video(path: Path) -> np.ndarray:
    """uint8 ``[T, R, R, 3]`` from a .npy or a video file, or a UsageError saying why it cannot be judged."""
    if path.suffix.lower() == ".npy":
        video = checks.npy_video(path, "the video")
    else:
        video = video_io.read_whole_video(path)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise UsageError(
            f"{path}: the judge takes a uint8 video [T, R, R, 3], got {video.dtype} {list(video.shape)}."
        )
    if video.shape[1] != video.shape[2]:
        raise UsageError(
            f"{path}: the judge takes square frames (the built-in world's), these are "
            f"{video.shape[1]}x{video.shape[2]}; crop them square first."
        )
    if len(video) < MIN_JUDGE_FRAMES:
        raise UsageError(
            f"{path} has {len(video)} frame(s); the judge needs at least {MIN_JUDGE_FRAMES} to read motion."
        )
    return video


def cmd_judge(args) -> None:
    """Exit 0: correct, 1: incorrect, 2: could not judge (a UsageError: unreadable video, caption outside the
    world's grammar)."""
    parse_caption(args.caption)  # a caption outside the grammar: said before the video is read
    video = _read_judged_video(checks.input_file(args.video, "the video"))
    verdict = judge.judge_video(video, args.caption)
    print(json.dumps(verdict.summary(), indent=2))
    sys.exit(0 if verdict.all_correct else 1)


def cmd_judge_world(args) -> None:
    try:
        source = world.WorldSource(
            world.WorldConfig(
                resolution=args.resolution,
                num_frames=args.num_frames,
                max_objects=args.max_objects,
                seed=args.seed,
            ),
            args.split,
            args.num,
        )
    except ValueError as e:  # the world's own checks: resolution, objects, split
        raise UsageError(str(e)) from e
    rng = np.random.default_rng(0)
    hurt = damage.KINDS[args.damage] if args.damage else (lambda v, r: v)
    start = time.perf_counter()
    examples = (source[i] for i in range(args.num))  # each clip rendered once
    videos, captions = zip(*((hurt(e["video"], rng), e["caption"]) for e in examples))
    result = judge.score(videos, captions)
    result.pop("verdicts")
    result["seconds_per_clip"] = (time.perf_counter() - start) / args.num
    print(json.dumps(result, indent=2))


def cmd_train_text_tokenizer(args) -> None:
    if args.vocab_size < text.MIN_VOCAB_SIZE:
        raise UsageError(
            f"--vocab-size {args.vocab_size}: must be >= {text.MIN_VOCAB_SIZE} (256 byte pieces + "
            "specials + some words)."
        )
    checks.output_folder(args.out, "--out")
    source = _source(args)  # the text model of an LM reads its training captions
    captions = sources.captions(source, args.num_captions)  # the world's without rendering
    n = len(captions)
    path = text.train_text_tokenizer(
        captions, Path(args.out) / text.MODEL_FILENAME, vocab_size=args.vocab_size
    )
    tok = text.TextTokenizer(path)
    print(f"Wrote {path}: {tok.vocab_size} pieces from {n} captions. Example: {tok.pieces(captions[0])}")


def cmd_bench_data(args) -> None:
    if args.json:
        checks.output_file(args.json, "--json")
    try:
        world.WorldConfig(resolution=args.resolution, num_frames=args.num_frames)
    except ValueError as e:
        raise UsageError(str(e)) from e
    bench_data.main(args)


def cmd_plan(args) -> None:
    bad = [
        o for o in args.overrides if not (o.startswith("--config.") or (not o.startswith("-") and "=" in o))
    ]
    if bad:
        raise UsageError(f"unrecognised arguments {bad}; overrides look like --config.batch_size=64")
    if args.json:
        checks.output_file(args.json, "--json")
    if args.num_devices:  # CPU: emulate N devices (must precede the first JAX computation of the process)
        if xla_bridge.backends_are_initialized():
            raise UsageError(
                "--num-devices must come before JAX starts (a plan run inside a process that already "
                "used JAX): run `videogen plan` as its own command."
            )
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.num_devices}"
        ).strip()
    config = apply_overrides(load_config(args.config), args.overrides)
    config_checks.check_values(config)
    if "tokenizer_workdir" in config and config.tokenizer_workdir:
        checks.trained_workdir(
            config.tokenizer_workdir, "--config.tokenizer_workdir", expect="tokenizer", need_checkpoint=False
        )  # the plan reads its config.json only
    more = (
        "plan for more with --num-devices N (emulated CPU devices)"
        if jax.default_backend() == "cpu"
        else "plan on a host with more devices"
    )
    config_checks.check_mesh(dict(config.mesh), jax.device_count(), more_devices=more)
    result = plan_lib.plan(config)
    print(plan_lib.format_plan(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if result["fits"] is False:
        sys.exit(3)


def cmd_export(args) -> None:
    checks.trained_workdir(args.workdir, "--workdir", step=args.step)
    out = checks.output_folder(args.out, "--out")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty; pick a new folder for the export.")
    out = checkpointing.export_params(args.workdir, args.out, step=args.step)
    manifest = json.loads((out / checkpointing.EXPORT_MANIFEST).read_text())
    print(
        f"Exported step {manifest['step']} of {args.workdir} ({manifest['num_params']:,} values, EMA params "
        f"only) to {out}: params/ + {', '.join(manifest['files']) or 'no config'}. Load with "
        "videogen.training.checkpointing.load_params(out)."
    )


def _pending(name: str):
    def run(args) -> None:
        print(f"`videogen {name}` is not available yet: it lands with {_PENDING[name]}.", file=sys.stderr)
        sys.exit(2)

    return run


def _run_trainer(module: str, argv: list[str]) -> None:
    importlib.import_module(module).main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = errors.ArgumentParser(prog="videogen", description=__doc__)
    errors.add_verbose(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("preview", help="render a preview of a dataset: GIF grid, contact sheet, captions")
    _add_data_args(p)
    p.add_argument("--out", default="runs/preview")
    p.add_argument("--num", type=checks.positive_int, default=16)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("prepare-world", help="write the built-in world as a TFDS ArrayRecord dataset")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--resolution", type=checks.positive_int, default=64)
    p.add_argument("--num-frames", type=checks.positive_int, default=17)
    p.add_argument("--max-objects", type=checks.positive_int, default=2)
    p.add_argument("--seed", type=checks.nonnegative_int, default=0)
    p.add_argument("--split-sizes", help="e.g. train=20000,test=1000,heldout=1000")
    p.set_defaults(func=cmd_prepare_world)

    p = sub.add_parser(
        "judge",
        help="score a video (mp4/gif/webm/npy, square frames) against its caption; exit 0 "
        "correct, 1 incorrect, 2 could not judge",
    )
    p.add_argument("video")
    p.add_argument("--caption", required=True, help="a caption of the built-in world")
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser(
        "judge-world", help="the judge's accuracy on ground-truth (optionally damaged) renders"
    )
    p.add_argument("--resolution", type=checks.positive_int, default=64)
    p.add_argument("--num-frames", type=checks.positive_int, default=17)
    p.add_argument("--max-objects", type=checks.positive_int, default=2)
    p.add_argument("--seed", type=checks.nonnegative_int, default=0)
    p.add_argument("--split", default="test")
    p.add_argument("--num", type=checks.positive_int, default=500)
    p.add_argument("--damage", choices=("blur", "noise", "jpeg", "colour_shift", "all"))
    p.set_defaults(func=cmd_judge_world)

    p = sub.add_parser("train-text-tokenizer", help="train the sentencepiece model from a dataset's captions")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="experiment directory; writes text_tokenizer.model there")
    p.add_argument("--num-captions", type=checks.positive_int, default=20000)
    p.add_argument("--vocab-size", type=checks.positive_int, default=512)
    p.set_defaults(func=cmd_train_text_tokenizer)

    p = sub.add_parser("bench-data", help="input pipeline throughput (clips/s) as a table")
    p.add_argument("--resolution", type=checks.positive_int, default=64)
    p.add_argument("--num-frames", type=checks.positive_int, default=17)
    p.add_argument("--batch-size", type=checks.positive_int, default=32)
    p.add_argument("--steps", type=checks.positive_int, default=10)
    p.add_argument("--json", help="also write the results here")
    p.set_defaults(func=cmd_bench_data)

    p = sub.add_parser(
        "sample",
        help="text → video from a trained LM workdir, or the pretrained model shipped in "
        "the package without --workdir (mp4, GIF, npy + contact sheet)",
    )
    add_sample_args(p)
    p.set_defaults(func=sample_command)

    p = sub.add_parser(
        "continue",
        help="long videos: N frames from prompts, continue a video file, story mode, "
        "--drift (drift.json + drift.png), --bench (time/memory per frame)",
    )
    add_continue_args(p)
    p.set_defaults(func=continue_command)

    p = sub.add_parser(
        "eval",
        help="evaluate a tokenizer or LM workdir: PSNR/SSIM/usage/rFVD or FVD + judge "
        "(world, ucf, frame_prediction protocols); JSON + table",
    )
    add_eval_args(p)
    p.set_defaults(func=run_eval)

    add_tokenizer_commands(sub)  # encode, decode, eval-tokenizer

    p = sub.add_parser(
        "plan",
        help="will it fit: compile the train step ahead of time; params, per-device memory, "
        "the sharding of every param and optimizer slot (no training)",
    )
    p.add_argument(
        "--config",
        required=True,
        help="a trainer config, e.g. experiments/lm_world.py:tiny; any "
        "--config.KEY=VALUE after it overrides (the LM needs --config.tokenizer_workdir or "
        "model.codebook_size + model.video_grid)",
    )
    p.add_argument("--num-devices", type=checks.positive_int, help="CPU only: emulate this many devices")
    p.add_argument("--json", help="also write the plan as JSON here")
    p.set_defaults(func=cmd_plan, config_overrides=True)

    p = sub.add_parser(
        "export",
        help="params-only copy of a trainer workdir's checkpoint (EMA weights + config) "
        "for sampling and notebooks",
    )
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--step", type=checks.nonnegative_int, help="default: the latest good checkpoint")
    p.set_defaults(func=cmd_export)

    # The trainers own their flags (--config path[:variant], --workdir, --config.KEY=VALUE overrides, -v).
    p = sub.add_parser(
        "train-tokenizer",
        add_help=False,
        help="train the video tokenizer (= python -m tokenizer.train; --help for its flags)",
    )
    p.set_defaults(func=lambda a: _run_trainer("tokenizer.train", ["--help"]))
    p = sub.add_parser(
        "train-lm",
        add_help=False,
        help="train the text-to-video transformer (= python -m videogen.train; --help for its flags)",
    )
    p.set_defaults(func=lambda a: _run_trainer("videogen.train", ["--help"]))

    for name in _PENDING:
        sub.add_parser(name, help=f"(lands with {_PENDING[name]})").set_defaults(func=_pending(name))
    for name, p in sub.choices.items():
        if name not in _TRAINERS:
            errors.add_verbose(
                p, top_level=False
            )  # `videogen sample ... -v` as well as `videogen -v sample ...`
    return parser


_TRAINERS = {"train-tokenizer": "tokenizer.train", "train-lm": "videogen.train"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in _TRAINERS:  # everything after the name is the trainer's own command line
        return _run_trainer(_TRAINERS[argv[0]], argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "config_overrides", False):  # only `plan` takes --config.KEY=VALUE
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    errors.configure_logging(args.verbose)
    with errors.reported(f"videogen {args.command}", args.verbose):
        args.func(args)


if __name__ == "__main__":
    main()
