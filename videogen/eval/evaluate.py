"""`videogen eval`: evaluation of a trained tokenizer workdir or LM workdir, as JSON + a short table.

    videogen eval --workdir runs/tok_tiny                          # tokenizer: PSNR, SSIM, usage, rFVD, judge
    videogen eval --workdir runs/lm_tiny                           # generator: world protocol (test vs heldout)
    videogen eval --workdir runs/lm_tiny --protocol ucf --num-clips 2048 --repeats 4
    videogen eval --workdir runs/lm_tiny --protocol frame_prediction --context-frames 5   # K600-style
    videogen eval --workdir runs/lm_tiny --with-tokenizer --tensorboard

Which kind of workdir it is comes from its ``config.json`` (an LM config names a ``tokenizer_workdir``).
Results go to ``--out`` (default ``WORKDIR/eval/eval_step<N>.json``) and are printed as a table.

Tokenizer metrics (over the first ``--num-clips`` clips of each split, in order): PSNR, SSIM, code usage
over *all* tokens of the set (not per batch), perplexity, rFVD (I3D features of the originals vs the
reconstructions) and, on the built-in world, the judge on the reconstructions.

Generator protocols (``--protocol``, repeatable):

* ``world`` -- the built-in world's captions of clips ``0 .. N-1`` of each split in ``--splits`` (default
  ``test,heldout``: seen vs held-out attribute combinations) are the prompts; the judge scores every
  sample against its caption (all correct, colour, shape, size, motion) and FVD compares the samples
  with the real clips of those captions.
* ``ucf`` -- UCF-101 style: N samples whose prompts are captions (class labels) of random clips of the
  train split, against N other random clips of the train split; repeated ``--repeats`` times with fresh
  draws, reported as mean and standard deviation (the protocol of TGAN/TATS/MAGVIT on UCF-101).
* ``frame_prediction`` -- Kinetics-600 / BAIR style: the first ``--context-frames`` frames (5 for K600,
  1 for BAIR) of each real clip of the eval split are encoded and kept, the model generates the rest of
  the token grid, and FVD compares the whole decoded clips with the real ones; PSNR/SSIM of the
  predicted frames against the truth are reported alongside.

Every score is computed on raw uint8 arrays straight from the decoder and the data source; nothing is
written to and read back from a compressed video file. FVD uses the first ``--fvd-frames`` (16)
frames of every clip, I3D Kinetics-400 logits at 224x224 (:mod:`videogen.eval.fvd`). With fewer clips
than the 400 feature dimensions FVD is biased upwards: compare runs at one N only.

The long-video drift curve (``--drift``): world prompts continued to ``--drift-frames`` frames by
:mod:`videogen.longvideo.continuation` and scored per window against the true renders by :mod:`videogen.longvideo.drift`
(judge score, persistence, bounces, position error, optional FVD per window).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter

from tokenizer import evaluate as tok_eval
from tokenizer.api import latest_step, load_tokenizer
from videogen import checks, errors
from videogen.data import world
from videogen.data.sources import build_source, judged_spec
from videogen.errors import UsageError
from videogen.eval import fvd as fvd_lib
from videogen.eval import judge as judge_lib
from videogen.eval.fvd import FeatureFn
from videogen.lm import load_lm, predict_frames, sample
from videogen.longvideo import continuation
from videogen.longvideo import drift as drift_lib
from videogen.training import mesh as mesh_lib

__all__ = [
    "PROTOCOLS",
    "evaluate_generator",
    "evaluate_tokenizer",
    "evaluate_tokenizer_workdir",
    "format_table",
    "main",
    "predict_frames",
    "workdir_kind",
]

PROTOCOLS = ("world", "ucf", "frame_prediction")

# ============================================================================================
# Helpers: workdirs, features, FVD
# ============================================================================================


def workdir_kind(workdir: str | Path) -> str:
    """``'lm'`` or ``'tokenizer'`` from the workdir's config.json; a clear error for anything else."""
    cfg = Path(workdir) / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(
            f"--workdir {str(workdir)!r} has no config.json: pass the workdir of a trained tokenizer "
            "(python -m tokenizer.train --workdir ...) or LM (python -m videogen.train --workdir ...)."
        )
    c = json.loads(cfg.read_text())
    if "tokenizer_workdir" in c:
        return "lm"
    if "quantizer" in c:
        return "tokenizer"
    raise ValueError(
        f"{cfg} is neither a tokenizer config (no 'quantizer') nor an LM config (no "
        "'tokenizer_workdir'); pass a workdir written by tokenizer.train or videogen.train."
    )


def _judge(videos: Sequence[np.ndarray], captions: Sequence[str]) -> dict:
    r = judge_lib.score(list(videos), list(captions))
    r.pop("verdicts")  # all_correct_lenient: the earlier motion rule, read from the same tracks
    return r


def _is_world(spec: dict) -> bool:
    return spec.get("kind", "world") == "world"


def _batches(n: int, batch_size: int):
    for s in range(0, n, batch_size):
        yield list(range(s, min(s + batch_size, n)))


def _pad(items: list, size: int) -> list:
    return items + [items[-1]] * (size - len(items))


# ============================================================================================
# Tokenizer
# ============================================================================================


def evaluate_tokenizer_workdir(workdir: str | Path, *, step: int | None = None, **options) -> dict:
    """PSNR, SSIM, code usage over the whole set, rFVD and (world) judge of a tokenizer workdir, per split
    (EMA weights of ``step``, default the latest); ``options``: :func:`evaluate_tokenizer`'s (splits,
    num_clips, batch_size, fvd, fvd_frames, feature_fn, judge)."""
    workdir = Path(workdir)
    mesh = mesh_lib.make_mesh({"data": -1})
    model, quantizer, config = load_tokenizer(workdir, step=step, mesh=mesh)
    out = evaluate_tokenizer(model, quantizer, config, mesh=mesh, **options)
    return {
        "kind": "tokenizer",
        "workdir": str(workdir),
        "step": latest_step(workdir) if step is None else step,
        **out,
    }


def evaluate_tokenizer(
    model,
    quantizer,
    config,
    *,
    splits: Sequence[str] | None = None,
    num_clips: int | None = None,
    batch_size: int | None = None,
    fvd: bool = True,
    fvd_frames: int = 16,
    feature_fn: FeatureFn | None = None,
    judge: bool = True,
    mesh=None,
) -> dict:
    """:func:`evaluate_tokenizer_workdir` of a loaded tokenizer (e.g. the pretrained one): ``{'splits': {split:
    figures}}`` (+ ``fvd_frames``), each split by :func:`tokenizer.evaluate.evaluate_split`. ``mesh``: the one
    its arrays are replicated on (batches split over it); None: one device."""
    out: dict[str, Any] = {"splits": {}}
    options = dict(num_clips=num_clips, batch_size=batch_size, mesh=mesh, judge=judge)
    if fvd:
        # FVD's frames as used: clips shorter than --fvd-frames give all theirs (FVD compares equal lengths)
        out["fvd_frames"] = min(int(fvd_frames), int(config.data.num_frames))
        options.update(feature_fn=feature_fn or fvd_lib.i3d_feature_fn(), fvd_frames=fvd_frames)
    for split in splits or [config.eval.split]:
        t0 = time.perf_counter()
        m = tok_eval.evaluate_split(model, quantizer, config, split, **options)
        r: dict[str, Any] = {"num_clips": int(m["num_clips"])}
        r.update({k: m[k] for k in ("psnr", "ssim", "usage", "used_codes")})
        r["codebook_size"] = quantizer.codebook_size
        r["perplexity"] = m["perplexity"]
        if fvd:
            r["rfvd"] = m["rfvd"]
        if "judge_all_correct" in m:
            r["judge"] = {"num_clips": r["num_clips"]}
            r["judge"].update({k.removeprefix("judge_"): v for k, v in m.items() if k.startswith("judge_")})
        r["seconds"] = time.perf_counter() - t0
        out["splits"][split] = r
    return out


# ============================================================================================
# Generator: protocols
# ============================================================================================


@dataclasses.dataclass
class GenSettings:
    num_clips: int = 64
    batch_size: int = 8
    guidance: float = 3.0
    num_steps: int = 12
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0
    fvd: bool = True
    fvd_frames: int = 16


def _generate(lm, prompts: list[str], s: GenSettings, seed_offset: int) -> np.ndarray:
    """Samples one clip per prompt in fixed-size batches (one compiled sampler)."""
    model, bundle, text_tok, config = lm
    out = []
    for k, idx in enumerate(_batches(len(prompts), s.batch_size)):
        batch = _pad([prompts[i] for i in idx], s.batch_size)
        v = sample(
            model,
            bundle,
            text_tok,
            batch,
            objective=config.objective,
            num_steps=s.num_steps,
            guidance=s.guidance,
            temperature=s.temperature,
            top_k=s.top_k,
            seed=s.seed + 1000 * seed_offset + k,
        )
        out.append(np.asarray(v)[: len(idx)])
    return np.concatenate(out)


def _real(source, indices: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    items = [source[int(i)] for i in indices]
    return np.stack([it["video"] for it in items]), [str(it["caption"]) for it in items]


def protocol_world(lm, spec: dict, splits: Sequence[str], s: GenSettings, feature_fn) -> dict:
    """Judge + FVD on the world's captions of each split (test: seen combinations; heldout: unseen)."""
    if not _is_world(spec):
        raise UsageError(
            f"--protocol world needs the built-in world as the LM's data, not {spec.get('kind')!r}; "
            "use --protocol ucf or frame_prediction."
        )
    out = {}
    for i, split in enumerate(splits):
        t0 = time.perf_counter()
        source = build_source(spec, split)
        n = min(s.num_clips, len(source))
        real, captions = _real(source, range(n))
        fake = _generate(lm, captions, s, seed_offset=i)
        r: dict[str, Any] = {"num_clips": n, "judge": _judge(fake, captions)}
        if s.fvd:
            r["fvd"] = _fvd(feature_fn, real, fake, s)
        r["seconds"] = time.perf_counter() - t0
        out[split] = r
    return out


def protocol_ucf(lm, spec: dict, repeats: int, s: GenSettings, feature_fn) -> dict:
    """UCF-101 style: N samples (prompts = captions of random train clips) vs N random train clips, repeated."""
    if not s.fvd:
        raise UsageError("--protocol ucf is an FVD protocol; drop --no-fvd.")
    source = build_source(spec, "train")
    n = min(s.num_clips, len(source))
    scores = []
    for r in range(repeats):
        rng = np.random.default_rng(s.seed + r)
        real_idx = rng.choice(len(source), n, replace=False)
        prompt_idx = rng.choice(len(source), n, replace=False)
        real, _ = _real(source, real_idx)
        prompts = _prompts(source, prompt_idx)
        fake = _generate(lm, prompts, s, seed_offset=100 + r)
        scores.append(_fvd(feature_fn, real, fake, s))
    return {
        "num_clips": n,
        "repeats": repeats,
        "fvd_mean": float(np.mean(scores)),
        "fvd_std": float(np.std(scores)),
        "fvd_runs": scores,
    }


def _prompts(source, indices) -> list[str]:
    if isinstance(source, world.WorldSource):  # captions without rendering
        return [world.sample_clip(source.cfg, source.split, int(i)).caption for i in indices]
    return [str(source[int(i)]["caption"]) for i in indices]


def protocol_frame_prediction(
    lm, spec: dict, split: str, context_frames: int, s: GenSettings, feature_fn
) -> dict:
    """K600/BAIR style: condition on the first frames of real clips, score the whole clips vs the real ones."""
    model, bundle, text_tok, config = lm
    source = build_source(spec, split)
    n = min(s.num_clips, len(source))
    real, captions, fake = [], [], []
    for k, idx in enumerate(_batches(n, s.batch_size)):
        v, c = _real(source, idx)
        vb = np.stack(_pad(list(v), s.batch_size))
        out = predict_frames(
            model,
            bundle,
            text_tok,
            vb,
            _pad(c, s.batch_size),
            context_frames=context_frames,
            objective=config.objective,
            num_steps=s.num_steps,
            guidance=s.guidance,
            temperature=s.temperature,
            top_k=s.top_k,
            seed=s.seed + k,
        )
        real.append(v)
        fake.append(out[: len(idx)])
        captions += c
    real, fake = np.concatenate(real), np.concatenate(fake)
    future_real, future_fake = real[:, context_frames:], fake[:, context_frames:]
    r: dict[str, Any] = {
        "split": split,
        "num_clips": n,
        "context_frames": context_frames,
        "predicted_frames": int(real.shape[1] - context_frames),
        "psnr_predicted": float(np.mean(tok_eval.psnr(future_fake, future_real))),
        "ssim_predicted": float(np.mean(tok_eval.ssim(future_fake, future_real))),
    }
    if s.fvd:
        r["fvd"] = _fvd(feature_fn, real, fake, s)
    if _is_world(spec):
        r["judge"] = _judge(fake, captions)
    return r


def _fvd(feature_fn, real: np.ndarray, fake: np.ndarray, s: GenSettings) -> float:
    """FVD of generated clips against real ones (each embedded in fixed-size batches)."""
    banks = [fvd_lib.FeatureBank(feature_fn, s.fvd_frames, s.batch_size) for _ in range(2)]
    banks[0].add(real)
    banks[1].add(fake)
    return fvd_lib.checked_fvd(banks[0].features(), banks[1].features())


def drift(
    workdir: str | Path,
    *,
    num_clips: int,
    num_frames: int | None = None,
    split: str = "test",
    seed: int = 0,
    fvd: bool = False,
    step: int | None = None,
    **sampling_kw,
) -> dict:
    """The long-video drift curve: world prompts of ``split`` continued to ``num_frames`` frames
    (:mod:`videogen.longvideo.continuation`) and scored window by window against the true renders
    (:func:`videogen.longvideo.drift.measure_videos`)."""
    config = json.loads((Path(workdir) / "config.json").read_text())
    data = config.get("data", {})
    if not _is_world(data):
        raise UsageError(
            "--drift measures against the built-in world's true renders; this LM was trained on "
            f"{data.get('kind')!r} data."
        )
    t = int(data["num_frames"])
    num_frames = int(num_frames or 4 * (t - 1) + 1)
    specs = drift_lib.world_prompts(
        int(data["resolution"]),
        num_clips,
        split=split,
        seed=int(data.get("seed", 0)),
        num_frames=t,
        max_objects=int(data.get("max_objects", 2)),
        min_objects=int(data.get("min_objects", 1)),
        caption_order=str(data.get("caption_order", "drawn")),
    )
    engine = continuation.from_workdir(workdir, step=step, **sampling_kw)
    videos = engine.generate([s.caption for s in specs], num_frames, seed=seed)
    r = drift_lib.measure_videos(list(videos), specs, window=t, fvd=fvd)
    r.pop("clips", None)
    r["split"] = split
    return r


def evaluate_generator(
    workdir: str | Path,
    *,
    protocols: Sequence[str] = ("world",),
    splits: Sequence[str] = ("test", "heldout"),
    settings: GenSettings | None = None,
    repeats: int = 1,
    context_frames: int = 5,
    prediction_split: str | None = None,
    feature_fn: FeatureFn | None = None,
    step: int | None = None,
) -> dict:
    """Runs the chosen protocols on an LM workdir (EMA weights) and returns one JSON-able dict."""
    s = settings or GenSettings()
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise ValueError(f"unknown protocol(s) {bad}: choose from {PROTOCOLS}.")
    lm = load_lm(workdir, step=step)
    config = lm[3]
    spec = judged_spec(config.data.to_dict())  # the world's natural mix, whatever the training mix
    feature_fn = feature_fn or (fvd_lib.i3d_feature_fn(s.batch_size) if s.fvd else None)
    out: dict[str, Any] = {
        "kind": "generator",
        "workdir": str(workdir),
        "objective": config.objective,
        "settings": dataclasses.asdict(s),
        "data": spec,
    }
    # FVD's frames as used: clips shorter than fvd_frames give all theirs (FVD compares equal lengths only).
    out["settings"]["fvd_frames"] = min(int(s.fvd_frames), int(config.data.num_frames))

    out["step"] = latest_step(workdir) if step is None else step
    for p in protocols:
        t0 = time.perf_counter()
        if p == "world":
            out["world"] = protocol_world(lm, spec, splits, s, feature_fn)
        elif p == "ucf":
            out["ucf"] = protocol_ucf(lm, spec, repeats, s, feature_fn)
        else:
            split = prediction_split or config.eval.split
            out["frame_prediction"] = protocol_frame_prediction(
                lm, spec, split, context_frames, s, feature_fn
            )
        out.setdefault("seconds", {})[p] = time.perf_counter() - t0
    return out


# ============================================================================================
# Output: table, JSON, TensorBoard
# ============================================================================================


def flat_metrics(result: dict, prefix: str = "") -> dict[str, float]:
    """Numbers of a result dict as ``{'world/test/judge/all_correct': 0.1, ...}`` (for tables / TensorBoard)."""
    out = {}
    for k, v in result.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_metrics(v, name + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step",):
            out[name] = float(v)
    return out


_TABLE_KEYS = (
    "first_window_judge",
    "last_windows_judge",
    "persistence",
    "bounces",
    "psnr",
    "ssim",
    "usage",
    "used_codes",
    "perplexity",
    "rfvd",
    "fvd",
    "fvd_mean",
    "fvd_std",
    "all_correct",
    "colour",
    "shape",
    "size",
    "motion",
    "psnr_predicted",
    "ssim_predicted",
)


def _in_table(name: str) -> bool:
    # the judge's per-object-count figures: all_correct_1_object, all_correct_2_objects, ...
    return name in _TABLE_KEYS or re.fullmatch(r"all_correct_\d+_objects?", name) is not None


def format_table(result: dict) -> str:
    """A short markdown table of the headline numbers."""
    rows = [
        (k, v)
        for k, v in flat_metrics(result).items()
        if _in_table(k.rsplit("/", 1)[-1]) and not k.startswith(("settings/", "data/"))
    ]
    width = max([len(k) for k, _ in rows] + [6])
    lines = [f"| {'metric':<{width}} | {'value':>10} |", f"|{'-' * (width + 2)}|{'-' * 12}|"]
    for k, v in rows:
        lines.append(f"| {k:<{width}} | {v:>10.4g} |")
    return "\n".join(lines)


def _write_tensorboard(result: dict, logdir: Path, step: int) -> None:
    with SummaryWriter(str(logdir)) as w:
        for k, v in flat_metrics(result).items():
            if math.isfinite(v) and not k.startswith(("settings/", "data/")):
                w.add_scalar(f"eval/{k}", v, step)


# ============================================================================================
# CLI
# ============================================================================================


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", required=True, help="a tokenizer or LM training workdir")
    p.add_argument(
        "--protocol",
        action="append",
        choices=PROTOCOLS,
        help="generator protocol, repeatable (default: world for world data, else ucf)",
    )
    p.add_argument(
        "--splits",
        default=None,
        help="comma-separated splits (generator world protocol default: test,heldout; "
        "frame_prediction: the first one, default the config's eval split; tokenizer default: its "
        "config's eval split)",
    )
    p.add_argument(
        "--num-clips",
        type=checks.positive_int,
        default=None,
        help="clips per split / per repeat (default 64; tokenizer: its config's)",
    )
    p.add_argument("--batch-size", type=checks.positive_int, default=None)
    p.add_argument("--repeats", type=checks.positive_int, default=1, help="ucf protocol: independent draws")
    p.add_argument(
        "--context-frames", type=checks.positive_int, default=5, help="frame_prediction: 5 = K600, 1 = BAIR"
    )
    p.add_argument(
        "--guidance",
        type=checks.nonnegative_float,
        default=3.0,
        help="0 = unconditional, 1 = conditional, >1 = CFG",
    )
    p.add_argument("--steps", type=checks.positive_int, default=12, help="MaskGIT decoding steps")
    p.add_argument("--temperature", type=checks.nonnegative_float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=checks.positive_int, default=None)
    p.add_argument("--seed", type=checks.nonnegative_int, default=0)
    p.add_argument(
        "--step", type=checks.nonnegative_int, default=None, help="checkpoint step (default: latest)"
    )
    p.add_argument("--no-fvd", action="store_true", help="skip FVD / rFVD (no I3D)")
    p.add_argument("--fvd-frames", type=checks.positive_int, default=16, help="frames of each clip I3D sees")
    p.add_argument("--no-judge", action="store_true", help="tokenizer: skip the judge on reconstructions")
    p.add_argument("--with-tokenizer", action="store_true", help="LM workdir: also evaluate its tokenizer")
    p.add_argument(
        "--drift",
        action="store_true",
        help="long-video drift curve (needs videogen.longvideo.continuation and videogen.longvideo.drift)",
    )
    p.add_argument(
        "--drift-frames",
        type=checks.positive_int,
        default=None,
        help="frames per long video (default 4x the clip)",
    )
    p.add_argument(
        "--drift-clips",
        type=checks.positive_int,
        default=8,
        help="long videos to generate (at most --num-clips)",
    )
    p.add_argument("--tensorboard", action="store_true", help="also write scalars to WORKDIR/eval/tb")
    p.add_argument("--out", help="JSON path (default WORKDIR/eval/eval_step<N>.json)")


def _check_request(args, workdir: Path) -> str:
    """Everything ``videogen eval`` was asked, before a model loads; the workdir's kind."""
    kind, config = checks.trained_workdir(workdir, "--workdir", step=args.step)
    if kind == "lm":
        checks.lm_workdir(workdir, "--workdir")
    if args.out:
        checks.output_file(args.out, "--out")
    else:
        checks.output_folder(workdir / "eval", "the default --out's folder")
    if not args.no_fvd and args.fvd_frames < fvd_lib.MIN_FRAMES:
        raise UsageError(
            f"--fvd-frames={args.fvd_frames} is below I3D's minimum of {fvd_lib.MIN_FRAMES}; use 16 (the "
            "standard), or --no-fvd."
        )
    if kind == "tokenizer":
        if args.drift or args.protocol:
            raise UsageError(
                f"{workdir} is a tokenizer workdir: --protocol and --drift apply to LM workdirs."
            )
        return kind
    world_data = _is_world(config.get("data", {}))
    if "world" in (args.protocol or []) and not world_data:
        raise UsageError(
            f"--protocol world needs the built-in world as the LM's data, not "
            f"{config['data'].get('kind')!r}; use --protocol ucf or frame_prediction."
        )
    if args.no_fvd and ("ucf" in (args.protocol or []) or (not args.protocol and not world_data)):
        raise UsageError(
            "--protocol ucf (the default for data other than the world) is an FVD protocol; drop --no-fvd."
        )
    if args.drift and not world_data:
        raise UsageError(
            "--drift measures against the built-in world's true renders; this LM was trained on "
            f"{config['data'].get('kind')!r} data."
        )
    return kind


def run(args) -> dict:
    workdir = Path(args.workdir)
    kind = _check_request(args, workdir)
    splits = [x for x in args.splits.split(",") if x] if args.splits else None
    tokenizer_options = dict(
        num_clips=args.num_clips,
        batch_size=args.batch_size,
        fvd=not args.no_fvd,
        fvd_frames=args.fvd_frames,
        judge=not args.no_judge,
    )
    if kind == "tokenizer":
        result = evaluate_tokenizer_workdir(workdir, splits=splits, step=args.step, **tokenizer_options)
    else:
        cfg = json.loads((workdir / "config.json").read_text())
        world_data = _is_world(cfg.get("data", {}))
        protocols = args.protocol or (["world"] if world_data else ["ucf"])
        s = GenSettings(
            num_clips=args.num_clips or 64,
            batch_size=args.batch_size or 8,
            guidance=args.guidance,
            num_steps=args.steps,
            temperature=args.temperature,
            top_k=args.top_k,
            seed=args.seed,
            fvd=not args.no_fvd,
            fvd_frames=args.fvd_frames,
        )
        result = evaluate_generator(
            workdir,
            protocols=protocols,
            splits=splits or ["test", "heldout"],
            settings=s,
            repeats=args.repeats,
            context_frames=args.context_frames,
            step=args.step,
            prediction_split=splits[0] if splits else None,
        )
        if args.drift:
            result["drift"] = drift(
                workdir,
                num_clips=min(s.num_clips, args.drift_clips),
                num_frames=args.drift_frames,
                seed=args.seed,
                fvd=s.fvd,
                num_steps=s.num_steps,
                guidance=s.guidance,
                temperature=s.temperature,
                top_k=s.top_k,
                step=args.step,
            )
        if args.with_tokenizer:
            tok_wd = checks.saved_tokenizer_workdir(cfg["tokenizer_workdir"], workdir)
            result["tokenizer"] = evaluate_tokenizer_workdir(tok_wd, **tokenizer_options)
    step = int(result.get("step") or 0)
    out = Path(args.out) if args.out else workdir / "eval" / f"eval_step{step}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if args.tensorboard:
        _write_tensorboard(result, workdir / "eval" / "tb", step)
    print(f"{kind} eval of {workdir} (step {step}) -> {out}")
    print(format_table(result))
    return result


def main(argv: list[str] | None = None) -> dict:
    p = errors.ArgumentParser(prog="python -m videogen.eval.evaluate", description=__doc__.split("\n\n")[0])
    add_eval_args(p)
    errors.add_verbose(p)
    args = p.parse_args(argv)
    errors.configure_logging(args.verbose)
    with errors.reported(p.prog, args.verbose):
        return run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
