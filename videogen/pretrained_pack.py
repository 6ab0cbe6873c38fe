"""The pretrained model shipped inside the package: pack it from two trained workdirs, verify it, show it.

    python -m videogen.pretrained pack --tokenizer-workdir runs/tok_a --lm-workdir runs/lm_b0 \\
        --out videogen/pretrained_data/tiny           # what `experiments/pretrained.py --pack-into` runs
    python -m videogen.pretrained verify              # the sha256 of every shipped file
    python -m videogen.pretrained show                # the manifest's commands and figures

(``python -m videogen.pretrained_pack`` is the same command line.) The folder's format and its loading are
videogen/pretrained.py's; packing lives here because it measures the figures with videogen.eval.evaluate, which
loads the shipped model (videogen/longvideo/continuation.py falls back to it).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from tokenizer.api import latest_step, load_tokenizer
from videogen import checks, errors
from videogen.data.sources import judged_spec
from videogen.errors import UsageError
from videogen.eval import evaluate as ev
from videogen.eval import fvd as fvd_lib
from videogen.lm import load_lm
from videogen.pretrained import (
    FILES,
    FORMAT,
    LM_CONFIG,
    LM_NPZ,
    MANIFEST,
    MAX_BYTES,
    REGRESSION,
    SHIPPED,
    TEXT_MODEL,
    TOKENIZER_CONFIG,
    TOKENIZER_NPZ,
    _display_path,
    _write_npz,
    figures_table,
    flatten_state,
    load,
    provenance,
    reconstruct_command,
    regression_figures,
    sha256,
    training_time,
    verify,
)

__all__ = ["EVAL_SIZES", "main", "measure", "pack"]


# Evaluation sizes of the manifest's figures, chosen for ~3 minutes on an idle 2-core CPU (I3D is most of it:
# ~1 s per clip there); the manifest's figures.seconds records what each part took where it was packed.
EVAL_SIZES = {
    "judge_clips": 64,
    "fvd_clips": 32,
    "tokenizer_clips": 64,
    "batch_size": 32,
    "seed": 0,
    "guidance": 3.0,
    "fvd_frames": 16,
}


# ============================================================================================
# Figures
# ============================================================================================


def measure(lm, sizes: dict | None = None, *, fvd: bool = True, log=print) -> dict:
    """The manifest's figures of a loaded model: judge on test and held-out prompts, FVD of the test samples
    against the world's test clips, the tokenizer's PSNR / SSIM / code usage on test clips, and the
    regression count; each with its size and its time."""
    s = dict(EVAL_SIZES, **(sizes or {}))
    model, bundle, text_tok, config = lm
    spec = judged_spec(config.data.to_dict())  # the world's natural mix, whatever the training mix
    out: dict[str, Any] = {"sizes": s, "seconds": {}}
    t0 = time.perf_counter()
    out["regression"] = {**REGRESSION, **regression_figures(lm)}
    out["seconds"]["regression"] = time.perf_counter() - t0
    r = out["regression"]
    log(
        f"[pretrained] regression: {r['fully_correct']} of {REGRESSION['num_prompts']} clips fully correct, colour "
        f"found for {r['colour_found']} of {r['objects']} objects ({out['seconds']['regression']:.0f} s)"
    )

    t0 = time.perf_counter()
    gen = ev.GenSettings(
        num_clips=s["judge_clips"],
        batch_size=s["batch_size"],
        guidance=s["guidance"],
        seed=s["seed"],
        fvd=False,
    )
    world = ev.protocol_world(lm, spec, ["test", "heldout"], gen, None)
    out["judge"] = {
        split: {
            k: r["judge"][k]
            for k in ("num_clips", "all_correct", "colour", "shape", "size", "motion", "all_correct_lenient")
        }
        for split, r in world.items()
    }
    out["seconds"]["judge"] = time.perf_counter() - t0
    log(
        f"[pretrained] judge: test {out['judge']['test']['all_correct']:.1%}, held-out "
        f"{out['judge']['heldout']['all_correct']:.1%} fully correct ({out['seconds']['judge']:.0f} s)"
    )

    if fvd:
        t0 = time.perf_counter()
        gen = ev.GenSettings(
            num_clips=s["fvd_clips"],
            batch_size=s["batch_size"],
            guidance=s["guidance"],
            seed=s["seed"],
            fvd=True,
            fvd_frames=s["fvd_frames"],
        )
        r = ev.protocol_world(lm, spec, ["test"], gen, fvd_lib.i3d_feature_fn(8))["test"]
        out["fvd"] = {
            "test": r["fvd"],
            "num_clips": r["num_clips"],
            "frames": min(int(s["fvd_frames"]), int(config.data.num_frames)),
        }
        out["seconds"]["fvd"] = time.perf_counter() - t0
        log(
            f"[pretrained] FVD vs {r['num_clips']} test clips: {r['fvd']:.1f} ({out['seconds']['fvd']:.0f} s)"
        )

    t0 = time.perf_counter()
    ae, quantizer, tok_config = bundle
    r = ev.evaluate_tokenizer(
        ae,
        quantizer,
        tok_config,
        splits=["test"],
        num_clips=s["tokenizer_clips"],
        batch_size=s["batch_size"],
        fvd=False,
    )["splits"]["test"]
    out["tokenizer"] = {
        "num_clips": r["num_clips"],
        "psnr": r["psnr"],
        "ssim": r["ssim"],
        "usage": r["usage"],
        "used_codes": r["used_codes"],
        "codebook_size": r["codebook_size"],
        "judge_all_correct": (r.get("judge") or {}).get("all_correct"),
    }
    out["seconds"]["tokenizer"] = time.perf_counter() - t0
    log(
        f"[pretrained] tokenizer: PSNR {r['psnr']:.2f} dB, code usage {r['usage']:.1%} ({r['used_codes']} of "
        f"{r['codebook_size']}) ({out['seconds']['tokenizer']:.0f} s)"
    )
    return out


def _finite(x):
    """NaN / inf (e.g. a judge attribute over no found objects) as None: the manifest is strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _finite(x.item())
    return x


# ============================================================================================
# Packing
# ============================================================================================


def pack(
    tokenizer_workdir: str | Path,
    lm_workdir: str | Path,
    out_dir: str | Path,
    *,
    commands: dict | None = None,
    sizes: dict | None = None,
    fvd: bool = True,
    name: str = "tiny",
    tokenizer_step: int | None = None,
    lm_step: int | None = None,
    note: str | None = None,
    log=print,
) -> dict:
    """Writes the pretrained folder ``out_dir`` from two trained workdirs and returns its manifest.

    The EMA weights of both (``tokenizer.api.load_tokenizer``, ``videogen.lm.load_lm``) are flattened to
    ``tokenizer.npz`` / ``lm.npz``; the LM's text tokenizer and both configs are copied. The folder is built
    next to ``out_dir`` and measured *as loaded back* by :func:`videogen.pretrained.load` (``measure``: judge on test and held-out
    prompts, FVD, tokenizer PSNR / usage, the regression count), then the manifest is written and the folder
    replaces ``out_dir`` in one rename. ``commands``: ``{'tokenizer': ..., 'lm': ...}`` command lines to
    record instead of the ones rebuilt from the workdirs' config.json.
    """
    tokenizer_workdir, lm_workdir, out_dir = Path(tokenizer_workdir), Path(lm_workdir), Path(out_dir)
    checks.trained_workdir(tokenizer_workdir, "--tokenizer-workdir", expect="tokenizer", step=tokenizer_step)
    lm_cfg = checks.lm_workdir(lm_workdir, "--lm-workdir", step=lm_step)
    named = Path(checks.saved_tokenizer_workdir(lm_cfg["tokenizer_workdir"], lm_workdir)).resolve()
    if named != tokenizer_workdir.resolve():
        raise UsageError(
            f"--lm-workdir {lm_workdir} was trained on the tokenizer in {named}, not "
            f"--tokenizer-workdir {tokenizer_workdir}: pack the pair that was trained together."
        )
    t_start = time.perf_counter()
    log(f"[pretrained] packing {tokenizer_workdir} + {lm_workdir} into {out_dir}")
    ae, quantizer, tok_config = load_tokenizer(tokenizer_workdir, step=tokenizer_step)
    model, _, _, config = load_lm(lm_workdir, step=lm_step)
    tok_arrays = {
        **flatten_state(nnx.as_pure(nnx.state(ae)), "autoencoder/"),
        **flatten_state(nnx.as_pure(nnx.state(quantizer)), "quantizer/"),
    }
    lm_arrays = flatten_state(nnx.as_pure(nnx.state(model)))

    work = out_dir.with_name(out_dir.name + ".packing")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _write_npz(work / TOKENIZER_NPZ, tok_arrays)
        _write_npz(work / LM_NPZ, lm_arrays)
        shutil.copyfile(lm_workdir / TEXT_MODEL, work / TEXT_MODEL)
        tok_json = json.loads((tokenizer_workdir / "config.json").read_text())
        lm_json = json.loads((lm_workdir / "config.json").read_text())
        # Provenance only (the manifest's commands say where it came from); loading never reads it.
        lm_json["tokenizer_workdir"] = _display_path(tokenizer_workdir)
        (work / TOKENIZER_CONFIG).write_text(json.dumps(tok_json, indent=1, sort_keys=True) + "\n")
        (work / LM_CONFIG).write_text(json.dumps(lm_json, indent=1, sort_keys=True) + "\n")
        files = {n: {"sha256": sha256(work / n), "bytes": (work / n).stat().st_size} for n in FILES}
        total = sum(f["bytes"] for f in files.values())
        if total > MAX_BYTES:
            raise UsageError(
                f"the packed model is {total / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB the "
                "package may carry: pack a smaller model."
            )
        manifest: dict[str, Any] = {"format": FORMAT, "name": name, **provenance(), "files": files}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")

        tok_step = tokenizer_step if tokenizer_step is not None else latest_step(tokenizer_workdir)
        step = lm_step if lm_step is not None else latest_step(lm_workdir)
        rebuilt = {
            "tokenizer": reconstruct_command(tokenizer_workdir, "tokenizer"),
            "lm": reconstruct_command(lm_workdir, "lm", tokenizer_workdir=tokenizer_workdir),
        }
        manifest["commands"] = {k: (commands or {}).get(k) or v["command"] for k, v in rebuilt.items()}
        manifest["configs"] = {k: v["config"] for k, v in rebuilt.items()}
        manifest["overrides"] = {k: v["overrides"] for k, v in rebuilt.items()}
        manifest["workdirs"] = {
            "tokenizer": _display_path(tokenizer_workdir),
            "lm": _display_path(lm_workdir),
        }
        manifest["steps"] = {"tokenizer": tok_step, "lm": step}
        manifest["params"] = {
            "tokenizer": int(sum(a.size for a in tok_arrays.values())),
            "lm": int(sum(a.size for a in lm_arrays.values())),
        }
        manifest["seeds"] = {"tokenizer": tok_json.get("seed"), "lm": lm_json.get("seed")}
        manifest["training"] = {
            "tokenizer": training_time(tokenizer_workdir),
            "lm": training_time(lm_workdir),
        }
        if note:
            manifest["note"] = note
        # Measured on the copy as it loads back (hash checks included).
        t0 = time.perf_counter()
        lm = load(work)
        manifest["figures"] = _finite(measure(lm, sizes, fvd=fvd, log=log))
        manifest["eval_seconds"] = time.perf_counter() - t0
        manifest["pack_seconds"] = time.perf_counter() - t_start
        manifest["total_bytes"] = total
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        verify(work)
        old = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out_dir.exists():
            out_dir.rename(old)
        work.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(
        f"[pretrained] wrote {out_dir} ({total / 2**20:.2f} MiB, {len(FILES) + 1} files) in "
        f"{time.perf_counter() - t_start:.0f} s"
    )
    return manifest


# ============================================================================================
# CLI
# ============================================================================================


def main(argv: list[str] | None = None) -> None:
    parser = errors.ArgumentParser(prog="python -m videogen.pretrained", description=__doc__.split("\n\n")[0])
    errors.add_verbose(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "pack", help="pack two trained workdirs into a pretrained folder (measures its figures)"
    )
    p.add_argument("--tokenizer-workdir", required=True)
    p.add_argument("--lm-workdir", required=True)
    p.add_argument("--out", default=str(SHIPPED))
    p.add_argument("--no-fvd", action="store_true", help="skip the FVD figure (I3D)")
    p.add_argument("--note", help="a line of context kept in the manifest")
    errors.add_verbose(p, top_level=False)
    for name, text in (
        ("verify", "check every file's sha256 against the manifest"),
        ("show", "the manifest's commands and figures"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--folder", default=str(SHIPPED))
        errors.add_verbose(p, top_level=False)
    args = parser.parse_args(argv)
    errors.configure_logging(args.verbose)
    with errors.reported(f"{parser.prog} {args.command}", args.verbose):
        if args.command == "pack":
            checks.output_folder(args.out, "--out")
            pack(args.tokenizer_workdir, args.lm_workdir, args.out, fvd=not args.no_fvd, note=args.note)
        elif args.command == "verify":
            m = verify(args.folder)
            print(f"{args.folder}: {len(m['files'])} files match {MANIFEST}")
        else:
            m = verify(args.folder)
            for k, c in (m.get("commands") or {}).items():
                print(f"{k}: {c}")
            print(figures_table([(Path(args.folder).name, m.get("figures") or {})]))


if __name__ == "__main__":
    main(sys.argv[1:])
