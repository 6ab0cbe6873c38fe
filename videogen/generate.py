"""Text → video from a trained LM workdir or the shipped pretrained model: `videogen sample` and `make demo`.

    videogen sample --workdir runs/lm --prompt "a small red circle moves to the left" --num 4 --guidance 3
    videogen sample --prompt "a small red circle moves to the left"    # the pretrained model in the package
    python -m videogen.generate demo --workdir runs/demo      # what `make demo` runs

Each sample is written as mp4, GIF and .npy (uint8 [T, H, W, 3]) plus one contact sheet; when the prompts
are captions of the built-in world, the judge's verdicts are written to judge.json and printed (videogen/samples.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from videogen import checks, errors
from videogen import pretrained as pretrained_lib
from videogen.data import world
from videogen.errors import UsageError
from videogen.lm import OBJECTIVES, load_lm, sample
from videogen.longvideo import drift
from videogen.longvideo.continuation import Continuation
from videogen.samples import judge_samples, write_samples

REPO = Path(__file__).resolve().parents[1]


def sample_command(args) -> None:
    # Flag values were checked while parsing; the workdir and where the samples go are checked here, before
    # the model loads and samples (a read-only workdir would otherwise lose the samples at the end). No
    # --workdir: the pretrained model shipped in the package (its files' hashes checked).
    if args.workdir:
        checks.lm_workdir(args.workdir)
        home = Path(args.workdir)
    else:
        pretrained_lib.announce("videogen sample")
        pretrained_lib.verify()
        home = pretrained_lib.DEFAULT_OUT
    out = Path(args.out or home / "samples" / f"seed{args.seed}")
    checks.output_folder(out, "--out" if args.out else "the default --out")
    model, bundle, text_tok, config = load_lm(args.workdir) if args.workdir else pretrained_lib.load()
    prompts = [p for p in args.prompt for _ in range(args.num)]
    start = time.perf_counter()
    # An empty prompt is the null text the model was trained on for guidance (all padding), as in `continue`;
    # encoded as a caption it would be BOS EOS, which the model never saw as "no text".
    videos = np.asarray(
        sample(
            model,
            bundle,
            text_tok,
            [p or None for p in prompts],
            objective=args.objective or config.objective,
            num_steps=args.steps,
            guidance=args.guidance,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
        )
    )
    seconds = time.perf_counter() - start
    write_samples(videos, prompts, out)
    print(
        f"Wrote {len(videos)} samples ({seconds:.1f} s, {seconds / len(videos):.2f} s per clip incl. compile) "
        f"to {out}"
    )
    result = judge_samples(videos, prompts, out)
    if result is not None:
        print(
            f"judge: {result['all_correct']:.1%} fully correct (colour {result['colour']:.0%}, shape "
            f"{result['shape']:.0%}, size {result['size']:.0%}, motion {result['motion']:.0%})"
        )


def add_sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workdir",
        help="the LM workdir (python -m videogen.train --workdir ...); default: the "
        "pretrained tiny model shipped in the package (videogen/pretrained_data/tiny)",
    )
    p.add_argument(
        "--prompt",
        action="append",
        required=True,
        help="repeat for several prompts; '' = unconditional (the null text the model learnt for guidance)",
    )
    p.add_argument("--num", type=checks.positive_int, default=1, help="samples per prompt")
    p.add_argument("--seed", type=checks.nonnegative_int, default=0)
    p.add_argument(
        "--guidance",
        type=checks.nonnegative_float,
        default=3.0,
        help="0 = unconditional, 1 = conditional, >1 = CFG",
    )
    p.add_argument("--temperature", type=checks.nonnegative_float, default=1.0, help="0 = greedy")
    p.add_argument(
        "--top-k",
        type=checks.positive_int,
        default=None,
        help="keep the k most likely values (per bit group for a bit-group head)",
    )
    p.add_argument(
        "--top-p",
        type=checks.probability_mass,
        default=None,
        help="nucleus sampling: keep the most likely values up to this probability mass, in (0, 1]",
    )
    p.add_argument(
        "--steps",
        type=checks.positive_int,
        default=12,
        help="MaskGIT decoding steps (per latent frame for maskgit_frames)",
    )
    p.add_argument("--objective", choices=OBJECTIVES, help="default: the one it was trained with")
    p.add_argument(
        "--out", help="default: WORKDIR/samples/seedN (runs/shipped/samples/seedN without --workdir)"
    )


# Below this many tokenizer steps the demo trains its tokenizer with plain L2 instead of the tiny config's
# edge-weighted loss, which pays off over thousands of steps but measured worse at the demo's 400 (code usage
# 58 % vs 73 %, judge 0.21 vs 0.24) and better from 1,200 on (judge 0.53 vs 0.44 at step 1,200 of the
# 9,600-step schedule, 0.945 vs 0.88 at its end; BENCHMARKS.md). The crossover in between is not measured.
EDGE_WEIGHT_MIN_TOKENIZER_STEPS = 1200

# The fresh pair's step counts when the whole demo has no time limit, and what they took on the 2-core VM
# (tokenizer + LM + sampling, after installation: 8.1-9.2 min, README "make demo"); with a budget the counts
# shrink in proportion to the minutes left after the shipped model's part.
DEMO_TOKENIZER_STEPS, DEMO_LM_STEPS = 400, 240
DEMO_TRAIN_SECONDS = 8.5 * 60
LONG_VIDEO_FACTOR = 16  # the long video: 16x the training length (257 frames for 17-frame clips)


def _test_prompts(config, num: int) -> list[str]:
    """Captions of the first ``num`` clips of the world's evaluation split: prompts the LM never trained on."""
    wcfg = world.WorldConfig(resolution=int(config.data.resolution), num_frames=int(config.data.num_frames))
    return [world.sample_clip(wcfg, "test", i).caption for i in range(num)]


def _score_line(result: dict) -> str:
    nan = float("nan")
    return (
        f"{result.get('all_correct', nan):.1%} fully correct (colour {result.get('colour', nan):.0%}, shape "
        f"{result.get('shape', nan):.0%}, size {result.get('size', nan):.0%}, motion "
        f"{result.get('motion', nan):.0%})"
    )


def shipped_demo(
    out: str | Path, *, num_prompts: int = 16, guidance: float = 3.0, long_video: bool = True
) -> dict:
    """The first part of `make demo`: the pretrained model shipped in the package samples ``num_prompts`` test
    prompts (mp4/GIF/npy + contact sheet, judged) into ``out/samples``, then writes one long video of 16x the
    training length by sliding-window continuation (videogen/longvideo/continuation.py) and its drift plot
    (videogen/longvideo/drift.py) into ``out/long``."""
    out = Path(out)
    t0 = time.perf_counter()
    print(f"make demo: {pretrained_lib.describe()}", flush=True)
    model, bundle, text_tok, config = lm = pretrained_lib.load()
    prompts = _test_prompts(config, num_prompts)
    videos = np.asarray(
        sample(model, bundle, text_tok, prompts, objective=config.objective, guidance=guidance, seed=0)
    )
    write_samples(videos, prompts, out / "samples")
    result = judge_samples(videos, prompts, out / "samples") or {}
    summary: dict = {
        "samples": str(out / "samples"),
        "judge_all_correct": result.get("all_correct"),
        "sample_seconds": time.perf_counter() - t0,
    }
    print(
        f"shipped model: {len(videos)} samples in {out / 'samples'} ({summary['sample_seconds']:.0f} s); judge: "
        f"{_score_line(result)}",
        flush=True,
    )
    if long_video:
        t1 = time.perf_counter()
        eng = Continuation(*lm[:3], objective=config.objective, guidance=guidance)
        train_frames = int(config.data.num_frames)
        frames = 1 + LONG_VIDEO_FACTOR * (train_frames - 1)
        # The first one-object test prompt: one object to follow over 16 windows reads best.
        spec = next(
            s
            for s in drift.world_prompts(int(config.data.resolution), 16, num_frames=train_frames)
            if len(s.objects) == 1
        )
        video = eng.generate([spec.caption], frames, seed=0)
        write_samples(video, [spec.caption], out / "long")
        report = drift.measure_videos(list(video), [spec], window=train_frames)
        js, png = drift.write_report(
            report,
            out / "long",
            title=f"shipped model: {frames} frames ({LONG_VIDEO_FACTOR}x), 1 clip, K={eng.context}",
        )
        d = report["summary"]
        summary.update(
            long_video=str(out / "long"),
            long_frames=frames,
            long_seconds=time.perf_counter() - t1,
            long_first_window_judge=d["first_window_judge"],
            long_last_windows_judge=d["last_windows_judge"],
            long_persistence=report["overall"]["persistence"],
        )
        print(
            f"long video: {frames} frames ({LONG_VIDEO_FACTOR}x the training length) of {spec.caption!r} in "
            f"{out / 'long'} ({summary['long_seconds']:.0f} s); judge per window first {d['first_window_judge']:.0f} "
            f"-> last {d['last_windows_judge']:.0f} %, persistence {report['overall']['persistence']:.0f} %; drift "
            f"plot {png}",
            flush=True,
        )
    return summary


def demo_steps(budget_s: float | None, elapsed_s: float) -> tuple[int, int]:
    """The fresh pair's tokenizer and LM steps for the time left of ``budget_s`` (None: no limit): the
    demo's counts scaled by the minutes left over the minutes they took (``DEMO_TRAIN_SECONDS``), at least
    a tenth of them."""
    if budget_s is None:
        return DEMO_TOKENIZER_STEPS, DEMO_LM_STEPS
    scale = min(1.0, max(0.1, (budget_s - elapsed_s) / DEMO_TRAIN_SECONDS))
    return max(1, round(DEMO_TOKENIZER_STEPS * scale)), max(1, round(DEMO_LM_STEPS * scale))


def run_trainer(module: str, config: str, workdir: Path, overrides: list[str]) -> None:
    """Runs a trainer as the command a user would type (``python -m MODULE --config REPO/CONFIG --workdir W
    OVERRIDES``), its output streamed here; a failed run ends the demo with the trainer's exit code (its own
    error line is above)."""
    cmd = [
        sys.executable,
        "-m",
        module,
        "--config",
        str(REPO / config),
        "--workdir",
        str(workdir),
        *overrides,
    ]
    print("$ python " + " ".join(cmd[1:]), flush=True)
    rc = subprocess.run(cmd, cwd=REPO).returncode
    if rc:
        print(f"make demo: `python -m {module}` exited with {rc} (its output is above)", file=sys.stderr)
        raise SystemExit(rc)


def demo(
    workdir: str | Path,
    *,
    tokenizer_steps: int | None,
    lm_steps: int | None,
    num_prompts: int,
    guidance: float,
    objective: str = "next_token",
    pretrained: bool = True,
    budget_minutes: float | None = 10.0,
) -> dict:
    """`make demo`: first the pretrained model shipped in the package (:func:`shipped_demo`: samples of test
    prompts judged, one long video and its drift plot, in ``workdir/shipped``), then a fresh tiny tokenizer +
    tiny LM trained on the built-in world at 32×32 on CPU for the rest of ``budget_minutes`` (step counts
    given explicitly are kept as given), sampled on the same prompts and judged beside the shipped model.

    The demo's LM is next-token by default: after the few hundred steps a CPU demo affords (token accuracy
    ~0.45), MaskGIT's confidence-ordered decoding fills most clips with background codes, while raster-order
    sampling still draws the prompted colours (BENCHMARKS.md "make demo: time vs score").
    """
    workdir = Path(workdir)
    t0 = time.perf_counter()
    if objective not in OBJECTIVES:
        raise UsageError(f"objective={objective!r}: must be one of {OBJECTIVES}.")
    saved = workdir / "lm" / "config.json"
    if saved.is_file() and (old := json.loads(saved.read_text()).get("objective")) != objective:
        # Resuming would sample a model trained with `old` as if it were `objective`.
        raise UsageError(
            f"{workdir / 'lm'} holds a {old} LM (a demo run with --objective {old}); rerun with "
            f"--objective {old}, or remove {workdir / 'lm'} or pass another --workdir to train a "
            f"{objective} one"
        )
    stages = 5 if pretrained else 3
    shipped = {}
    if pretrained:
        pretrained_lib.verify()  # a damaged install is said before anything runs
        print(
            f"== 1/{stages} the pretrained model shipped in the package: {num_prompts} test prompts, then one "
            f"long video ==",
            flush=True,
        )
        shipped = shipped_demo(workdir / "shipped", num_prompts=num_prompts, guidance=guidance)
    budget_s = None if not budget_minutes else 60.0 * budget_minutes
    auto_tok, auto_lm = demo_steps(budget_s, time.perf_counter() - t0)
    tokenizer_steps = tokenizer_steps if tokenizer_steps is not None else auto_tok
    lm_steps = lm_steps if lm_steps is not None else auto_lm
    first = stages - 2
    print(
        f"== {first}/{stages} fresh tokenizer (experiments/tokenizer_world.py:tiny, {tokenizer_steps} steps), "
        f"{time.perf_counter() - t0:.0f} s so far ==",
        flush=True,
    )
    tok_overrides = [f"--config.steps={tokenizer_steps}"]
    if tokenizer_steps < EDGE_WEIGHT_MIN_TOKENIZER_STEPS:
        tok_overrides.append("--config.loss.edge_weight=0.0")
    run_trainer(
        "tokenizer.train", "experiments/tokenizer_world.py:tiny", workdir / "tokenizer", tok_overrides
    )
    print(
        f"== {first + 1}/{stages} fresh LM (experiments/lm_world.py:tiny, {objective}, {lm_steps} steps), "
        f"{time.perf_counter() - t0:.0f} s so far ==",
        flush=True,
    )
    overrides = [
        f"--config.tokenizer_workdir={(workdir / 'tokenizer').resolve()}",
        f"--config.objective={objective}",
        f"--config.steps={lm_steps}",
    ]
    run_trainer("videogen.train", "experiments/lm_world.py:tiny", workdir / "lm", overrides)
    print(
        f"== {stages}/{stages} sampling {num_prompts} prompts, {time.perf_counter() - t0:.0f} s so far ==",
        flush=True,
    )
    model, bundle, text_tok, config = load_lm(workdir / "lm")
    prompts = _test_prompts(config, num_prompts)
    videos = np.asarray(
        sample(model, bundle, text_tok, prompts, objective=config.objective, guidance=guidance, seed=0)
    )
    out = workdir / "samples"
    write_samples(videos, prompts, out)
    result = judge_samples(videos, prompts, out) or {}
    total = time.perf_counter() - t0
    print(
        f"\nmake demo: {len(videos)} samples in {out} (contact_sheet.png, mp4/gif/npy per sample); "
        f"total {total / 60:.1f} min"
    )
    print(f"judge, freshly trained pair ({tokenizer_steps} + {lm_steps} steps): {_score_line(result)}")
    if pretrained:
        print(
            f"judge, shipped pretrained model (same prompts): "
            f"{shipped.get('judge_all_correct', float('nan')):.1%} fully correct; its samples, long video and "
            f"drift plot are in {workdir / 'shipped'}"
        )
    summary = {
        "seconds": total,
        "judge_all_correct": result.get("all_correct"),
        "samples": str(out),
        "tokenizer_steps": tokenizer_steps,
        "lm_steps": lm_steps,
        "shipped": shipped,
    }
    (workdir / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = errors.ArgumentParser(prog="python -m videogen.generate")
    errors.add_verbose(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo",
        help="the shipped pretrained model's samples, long video and drift plot, then tiny "
        "models trained on the built-in world and sampled (what `make demo` runs)",
    )
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument(
        "--tokenizer-steps",
        type=checks.positive_int,
        help=f"default: {DEMO_TOKENIZER_STEPS}, fewer when the budget's time left is short",
    )
    p.add_argument(
        "--lm-steps",
        type=checks.positive_int,
        help=f"default: {DEMO_LM_STEPS}, fewer when the budget's time left is short",
    )
    p.add_argument(
        "--budget-minutes",
        type=checks.nonnegative_float,
        default=10.0,
        help="the whole demo's minutes: the default step counts shrink to what is left after the shipped "
        "model's part (0 = no limit)",
    )
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="skip the shipped model's part (samples, long video, drift plot): train and sample only",
    )
    p.add_argument("--num-prompts", type=checks.positive_int, default=16)
    p.add_argument("--guidance", type=checks.nonnegative_float, default=3.0)
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="next_token",
        help="the LM's objective (the tiny config's own is maskgit_frames)",
    )
    errors.add_verbose(p, top_level=False)
    p = sub.add_parser("sample", help="same as `videogen sample`")
    add_sample_args(p)
    errors.add_verbose(p, top_level=False)
    args = parser.parse_args(argv)
    errors.configure_logging(args.verbose)
    with errors.reported(f"{parser.prog} {args.command}", args.verbose):
        if args.command == "demo":
            checks.output_folder(args.workdir, "--workdir")
            demo(
                args.workdir,
                tokenizer_steps=args.tokenizer_steps,
                lm_steps=args.lm_steps,
                num_prompts=args.num_prompts,
                guidance=args.guidance,
                objective=args.objective,
                pretrained=not args.no_pretrained,
                budget_minutes=args.budget_minutes or None,
            )
        else:
            sample_command(args)


if __name__ == "__main__":
    main()
