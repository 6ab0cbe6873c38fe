"""Tokenizer evaluation: PSNR, SSIM, codebook usage over a whole split, judge score on reconstructions.

Run on a trained workdir (EMA weights, the eval split named in its config)::

    python -m tokenizer.evaluate --workdir runs/tok_tiny
    python -m tokenizer.evaluate --workdir runs/tok_tiny --split heldout --num-clips 200 --samples 8

It prints one JSON line of metrics and writes ``<workdir>/eval/<split>_step<N>.json`` (plus
``.gif``/``.mp4`` of originals | reconstructions when ``--samples`` > 0).

Metrics, all on the uint8 reconstructions a user would see (``round((x + 1) * 127.5)``):

* ``psnr``: per clip over all of its pixels (``data_range`` 255, capped at ``max_db`` = 100 dB so a
  perfect clip does not make the mean infinite), then averaged over clips.
* ``ssim``: Wang et al. (2004) SSIM with an 11-tap Gaussian window (sigma 1.5), per frame and
  colour channel over the region where the window fits ("valid"), averaged per clip, then over
  clips. Identical to ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)`` per frame
  (tests/test_tokenizer_train.py checks it against a scipy re-implementation and skimage's value).
* ``usage`` / ``perplexity`` / ``used_codes`` / ``entropy``: :class:`tokenizer.quantizers.CodeUsage`
  over every token of the evaluated clips (not per batch).
* ``judge_all_correct`` (+ ``judge_colour/shape/size/motion``, ``judge_all_correct_lenient``):
  :mod:`videogen.eval.judge` on the reconstructions against the source captions -- does the tokenizer keep what
  the caption says? Only meaningful for the built-in world (ground-truth clips score 1.0).
* ``rfvd`` (when a feature function is given: ``videogen eval``, ``videogen eval-tokenizer --rfvd``): FVD of
  the reconstructions against the originals, each clip's first 16 frames (:mod:`videogen.eval.fvd`).

:func:`evaluate_tokenizer` is the one evaluation loop: the trainer's periodic eval, this command,
``videogen eval-tokenizer`` (tokenizer/codes.py) and ``videogen eval`` (videogen/eval/evaluate.py) all run it,
the commands through :func:`evaluate_split` (a config's eval data, batch and judge rules).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from tokenizer.core import eval_data_spec, latest_step, load_tokenizer, to_float, to_uint8
from tokenizer.quantizers import CodeUsage
from videogen import checks, errors
from videogen.data import video_io
from videogen.data.sources import build_source
from videogen.errors import UsageError
from videogen.eval import fvd as fvd_lib
from videogen.eval import judge as judge_lib
from videogen.training import mesh as mesh_lib

__all__ = [
    "eval_source",
    "evaluate_split",
    "evaluate_tokenizer",
    "gaussian_window",
    "psnr",
    "reconstruct",
    "ssim",
    "to_float",
    "to_uint8",
    "write_samples",
]


# ----------------------------------------------------------------------------- PSNR / SSIM


def psnr(x: Any, y: Any, *, data_range: float = 255.0, max_db: float = 100.0) -> jax.Array:
    """Per-example PSNR in dB of ``[B, ...]`` arrays, over all non-batch dims, capped at ``max_db``.

    Identical inputs (MSE 0) give exactly ``max_db``.
    """
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    mse = jnp.mean(jnp.square(x - y), axis=tuple(range(1, x.ndim)))  # [B]
    db = 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse, 1e-30))
    return jnp.where(mse > 0, jnp.minimum(db, max_db), max_db)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    """Normalised 1-D Gaussian taps, the same as ``scipy.ndimage.gaussian_filter1d`` uses (11 for 1.5)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def _filter_valid(a: jax.Array, taps: np.ndarray) -> jax.Array:
    """Separable 'valid' filtering of ``[N, H, W, C]`` over H and W by shifted adds.

    Shifted multiply-adds instead of a conv: exact float32 on every backend (no TF32 convs).
    """
    k = len(taps)
    h, w = a.shape[1] - k + 1, a.shape[2] - k + 1
    a = sum(float(taps[i]) * a[:, i : i + h] for i in range(k))
    return sum(float(taps[i]) * a[:, :, i : i + w] for i in range(k))


def ssim(
    x: Any,
    y: Any,
    *,
    data_range: float = 255.0,
    sigma: float = 1.5,
    truncate: float = 3.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Per-example mean SSIM of images ``[B, H, W, C]`` or videos ``[B, T, H, W, C]``.

    The SSIM map is computed per frame and per channel with a Gaussian window, over the positions
    where the whole window fits inside the frame (needs ``H, W >= 2 * round(truncate * sigma) + 1``,
    11 by default), and averaged over frames, positions and channels.
    """
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if x.shape != y.shape or x.ndim not in (4, 5):
        raise ValueError(
            f"ssim expects two [B, H, W, C] or [B, T, H, W, C] arrays of one shape, got {x.shape}, {y.shape}."
        )
    taps = gaussian_window(sigma, truncate)
    hh, ww, cc = x.shape[-3:]
    if hh < len(taps) or ww < len(taps):
        raise ValueError(
            f"ssim needs frames of at least {len(taps)}x{len(taps)} (the Gaussian window), got "
            f"{hh}x{ww}; lower sigma."
        )
    b = x.shape[0]
    x = x.reshape(-1, hh, ww, cc)  # [N, H, W, C], N = B (x T)
    y = y.reshape(-1, hh, ww, cc)
    f = lambda a: _filter_valid(a, taps)  # noqa: E731
    # (Co)variances are shift-invariant: take them of per-frame-centred values, so E[x^2] - E[x]^2
    # does not cancel catastrophically in float32 for bright frames (1e-4 off on constant ones).
    m_x = jnp.mean(x, axis=(1, 2), keepdims=True)
    m_y = jnp.mean(y, axis=(1, 2), keepdims=True)
    xc, yc = x - m_x, y - m_y
    d_x, d_y = f(xc), f(yc)
    mu_x, mu_y = d_x + m_x, d_y + m_y
    var_x = f(xc * xc) - d_x * d_x
    var_y = f(yc * yc) - d_y * d_y
    cov = f(xc * yc) - d_x * d_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return jnp.mean(s.reshape(b, -1), axis=1)  # [B]


# ----------------------------------------------------------------------------- batched reconstruction


@nnx.jit
def _eval_batch(model, quantizer, video: jax.Array):
    """uint8 video -> (uint8 reconstruction, token ids, per-clip PSNR, per-clip SSIM)."""
    z = model.encode(to_float(video))
    z_q, indices, _ = quantizer(z, train=False)
    recon = to_uint8(model.decode(z_q))
    return recon, indices, psnr(recon, video), ssim(recon, video)


def reconstruct(model, quantizer, video: Any, *, mesh=None):
    """uint8 ``[B, T, H, W, 3]`` -> numpy ``(reconstruction uint8, ids int32, psnr [B], ssim [B])``.

    With ``mesh`` the batch is split over its data axes (B must divide by their size).
    """
    video = np.asarray(video)
    if mesh is not None:
        video = jax.device_put(video, NamedSharding(mesh, PartitionSpec(mesh_lib.batch_axes(mesh))))
    out = _eval_batch(model, quantizer, video)
    return tuple(np.asarray(a) for a in jax.device_get(out))


def write_samples(
    path: str | Path, originals: np.ndarray, recons: np.ndarray, *, cols: int = 4, fps: float = 8
) -> list[Path]:
    """Writes ``path`` (.gif) and the same grid as .mp4: each cell is original | reconstruction; and a still
    (.png: one row per pair, frames spread over time)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs = np.concatenate([originals, recons], axis=3)  # [N, T, H, 2W, 3]
    video_io.contact_sheet(list(pairs), path=path.with_suffix(".png"))
    grid = video_io.gif_grid(list(pairs), path.with_suffix(".gif"), cols=cols, fps=fps)
    mp4 = video_io.write_mp4(path.with_suffix(".mp4"), grid, fps=fps)
    return [path.with_suffix(".gif"), mp4, path.with_suffix(".png")]


# ----------------------------------------------------------------------------- whole-split evaluation


def evaluate_tokenizer(
    model,
    quantizer,
    source,
    *,
    batch_size: int = 16,
    mesh=None,
    num_clips: int | None = None,
    judge: bool = True,
    num_samples: int = 0,
    sample_path: str | Path | None = None,
    feature_fn: fvd_lib.FeatureFn | None = None,
    fvd_frames: int = 16,
) -> dict[str, float]:
    """Evaluates a tokenizer on ``source`` (clips ``0 .. num_clips - 1``, in order): the one evaluation loop
    of the trainer's eval, ``python -m tokenizer.evaluate``, ``videogen eval-tokenizer`` and ``videogen eval``.

    Args:
        model: an :class:`tokenizer.model.Autoencoder` (e.g. with EMA weights).
        quantizer: its quantizer (``train=False``: no state updates).
        source: random-access source of ``{"video": uint8 [T, H, W, 3], "caption": str}``.
        batch_size: clips per forward pass; with ``mesh`` a multiple of its data-parallel size. The
            last batch is padded (repeating its last clip) and the padding is dropped from every metric.
        mesh: shard batches over its data axes; None runs on the default device.
        num_clips: evaluate the first ``num_clips`` clips; None = the whole source.
        judge: also score the reconstructions with :mod:`videogen.eval.judge` (built-in world captions).
        num_samples: how many (original, reconstruction) pairs to write to ``sample_path``.
        sample_path: ``.gif`` path (an ``.mp4`` is written next to it).
        feature_fn: with it, rFVD: the FVD of the reconstructions against the originals under this
            embedding (:func:`videogen.eval.fvd.i3d_feature_fn` for the standard I3D one), over each clip's
            first ``fvd_frames`` frames (all of a shorter clip's).

    Returns:
        Flat dict of floats: ``psnr``, ``ssim``, ``usage``, ``used_codes``, ``perplexity``,
        ``entropy``, ``tokens``, ``num_clips``, ``eval_seconds``; with ``judge``, ``judge_all_correct``,
        ``judge_colour``, ``judge_shape``, ``judge_size``, ``judge_motion``, ``judge_all_correct_lenient``
        (:func:`videogen.eval.judge.summary`); with ``feature_fn``, ``rfvd`` and ``rfvd_seconds`` (the
        embedding's share of the time).
    """
    n = len(source) if num_clips is None else min(int(num_clips), len(source))
    if n < 1:
        raise ValueError(f"nothing to evaluate: source has {len(source)} clips, num_clips={num_clips}.")
    if mesh is not None and batch_size % mesh_lib.data_parallel_size(mesh):
        raise ValueError(
            f"eval batch_size={batch_size} must be a multiple of the mesh's data-parallel size "
            f"{mesh_lib.data_parallel_size(mesh)}."
        )
    t0 = time.perf_counter()
    usage = CodeUsage(quantizer.codebook_size)
    psnrs, ssims, verdicts = [], [], []
    samples_orig, samples_rec = [], []
    banks = [fvd_lib.FeatureBank(feature_fn, fvd_frames, batch_size) for _ in range(2)] if feature_fn else []
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        items = [source[i] for i in idx]
        real = len(items)
        video = np.stack([it["video"] for it in items] + [items[-1]["video"]] * (batch_size - real))
        recon, ids, p, s = reconstruct(model, quantizer, video, mesh=mesh)
        recon, ids = recon[:real], ids[:real]
        usage.update(ids)
        psnrs.extend(p[:real].tolist())
        ssims.extend(s[:real].tolist())
        if judge:
            verdicts += [judge_lib.judge_video(clip, item["caption"]) for clip, item in zip(recon, items)]
        for bank, clips in zip(banks, (video[:real], recon)):
            bank.add(clips)
        if len(samples_orig) < num_samples:
            k = num_samples - len(samples_orig)
            samples_orig.extend(video[:real][:k])
            samples_rec.extend(recon[:k])
    out = {"num_clips": float(n), "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}
    summary = usage.summary()
    out.update(
        {
            "usage": summary["usage"],
            "used_codes": summary["used_codes"],
            "perplexity": summary["perplexity"],
            "entropy": summary["entropy"],
            "tokens": summary["tokens"],
        }
    )
    if judge:
        scores = judge_lib.summary(verdicts)
        out.update({f"judge_{k}": v for k, v in scores.items() if k not in ("num_clips", "verdicts")})
    if banks:
        out["rfvd"] = fvd_lib.checked_fvd(banks[0].features(), banks[1].features())
        out["rfvd_seconds"] = sum(bank.seconds for bank in banks)
    if num_samples and sample_path is not None and samples_orig:
        write_samples(sample_path, np.stack(samples_orig), np.stack(samples_rec))
    out["eval_seconds"] = time.perf_counter() - t0
    return out


def evaluate_split(
    model,
    quantizer,
    config,
    split: str | None = None,
    *,
    num_clips: int | None = None,
    batch_size: int | None = None,
    mesh=None,
    judge: bool = True,
    **kwargs,
) -> dict[str, float]:
    """:func:`evaluate_tokenizer` on ``split`` (default: the config's eval split) of a tokenizer config's
    eval data (:func:`eval_source`: ``num_clips``, default the config's; more than a folder holds is an
    error when asked for explicitly). The batch (default the config's) is rounded up to a multiple of the
    mesh's data-parallel size; the judge runs on the built-in world only. ``kwargs``: the rest of
    :func:`evaluate_tokenizer`'s options (samples, rFVD)."""
    source, n = eval_source(config, split or config.eval.split, num_clips, strict=bool(num_clips))
    dp = mesh_lib.data_parallel_size(mesh) if mesh is not None else 1
    bs = math.ceil(int(batch_size or config.eval.batch_size) / dp) * dp
    is_world = config.data.get("kind", "world") == "world"
    return evaluate_tokenizer(
        model, quantizer, source, batch_size=bs, mesh=mesh, num_clips=n, judge=judge and is_world, **kwargs
    )


def eval_source(config, split: str, num_clips: int | None = None, *, strict: bool = True):
    """``(source, n)``: a tokenizer config's eval source for ``split`` and the number of its clips to evaluate,
    ``num_clips`` or else the config's ``eval.num_clips``.

    The built-in world renders as many clips as asked (clip ``i`` is the same whatever the total), so its
    source is sized to ``n``. A TFDS or folder source has what it has: asking for more is an error naming
    its size when ``strict`` (an explicit ``--num-clips``), otherwise ``n`` is cut to it with a line saying so
    (a config's default eval size against a small folder)."""
    spec = eval_data_spec(config)
    n = int(num_clips or config.eval.num_clips)
    kind = spec.get("kind", "world")
    if kind == "world":
        spec["num_clips"] = n
    source = build_source(spec, split)
    if n > len(source):
        # A folder has no splits: its eval reads the whole folder (sources.eval_spec).
        data = (
            f"the folder {spec.get('root')}"
            if kind == "folder"
            else f"the {split!r} split of the {kind} data"
        )
        if strict:
            raise UsageError(
                f"num_clips={n}: {data} has only {len(source)} clips; ask for {len(source)} or fewer "
                "(--num-clips, or --config.eval.num_clips)."
            )
        print(
            f"[tokenizer] eval: {data} has {len(source)} clips, fewer than eval.num_clips={n}: evaluating all "
            f"{len(source)}.",
            flush=True,
        )
        n = len(source)
    return source, n


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> dict:
    p = errors.ArgumentParser(prog="python -m tokenizer.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workdir", required=True, help="a tokenizer training workdir (config.json + checkpoints/)"
    )
    p.add_argument(
        "--step", type=checks.nonnegative_int, default=None, help="checkpoint step (default: latest)"
    )
    p.add_argument("--split", default=None, help="data split (default: the config's eval split)")
    p.add_argument(
        "--num-clips",
        type=checks.positive_int,
        default=None,
        help="clips to evaluate (default: the config's)",
    )
    p.add_argument("--batch-size", type=checks.positive_int, default=None)
    p.add_argument(
        "--samples",
        type=checks.nonnegative_int,
        default=8,
        help="original|reconstruction pairs to write (0: none)",
    )
    p.add_argument("--no-judge", action="store_true")
    p.add_argument("--raw", action="store_true", help="use the raw (non-EMA) params")
    errors.add_verbose(p)
    args = p.parse_args(argv)
    errors.configure_logging(args.verbose)
    with errors.reported(p.prog, args.verbose):
        return _evaluate_workdir(args)


def _evaluate_workdir(args) -> dict:
    """`python -m tokenizer.evaluate`: the workdir and its eval folder checked, then the evaluation."""
    workdir = Path(args.workdir)
    checks.trained_workdir(workdir, "--workdir", expect="tokenizer", step=args.step)
    checks.output_folder(workdir / "eval", "the workdir's eval folder")
    mesh = mesh_lib.make_mesh({"data": -1})
    model, quantizer, config = load_tokenizer(workdir, step=args.step, mesh=mesh, ema=not args.raw)
    split = args.split or config.eval.split
    step = latest_step(workdir) if args.step is None else args.step
    stem = workdir / "eval" / f"{split}_step{step}"
    metrics = evaluate_split(
        model,
        quantizer,
        config,
        split,
        num_clips=args.num_clips,
        batch_size=args.batch_size,
        mesh=mesh,
        judge=not args.no_judge,
        num_samples=args.samples,
        sample_path=stem.with_suffix(".gif"),
    )
    metrics = {"split": split, "step": step, "ema": not args.raw, **metrics}
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
