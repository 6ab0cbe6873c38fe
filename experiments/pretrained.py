"""`make pretrained`: reproduce the pretrained model shipped in videogen/pretrained_data/tiny, or refresh it.

    python experiments/pretrained.py --out runs/pretrained          # what `make pretrained` runs
    python experiments/pretrained.py --dry-run                      # the commands it would run, nothing else
    python experiments/pretrained.py --pack-into videogen/pretrained_data/tiny \\
        --tokenizer-workdir runs/tok_a --lm-workdir runs/lm_b0       # refresh the shipped copy, no training

Reproduction: the two trainer commands of the shipped manifest (the same config file, variant, overrides and
seeds -- rebuilt from the shipped configs against today's experiment files, so the trained configs equal the
shipped ones even if a default moved since; a changed override is printed) are run one after the other into
``OUT/tokenizer`` and ``OUT/lm`` (a rerun resumes them; a finished one is not retrained), their logs in
``OUT/*.log``. The pair is then packed into ``OUT/model`` exactly as the shipped one was
(``videogen.pretrained_pack.pack``: the same evaluation sizes), and both sets of figures are printed side by side,
with the training times and this machine's measured matmul peak; ``OUT/compare.json`` keeps them.

Refresh (``--pack-into``): packs the given workdirs into the folder (the shipped one: commit the result; the
repo grows by the folder's size, <= 10 MB) and prints the new figures beside the old ones.

Runtime: the reproduction trains the tokenizer (4,800 steps) and the LM (3,000 steps) of the manifest on this
machine -- see README "Pretrained model" for the measured time -- plus ~3-5 min of evaluation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videogen import errors, pretrained, pretrained_pack  # noqa: E402

KINDS = ("tokenizer", "lm")
JUDGE_POINTS = 5.0  # the tolerance: the reproduced judge figures within +-5 points of the manifest's


def reproduction_plan(out: Path, folder: Path | None = None) -> dict:
    """``{kind: {'argv', 'workdir', 'manifest_overrides', 'overrides'}}``: the commands that retrain the
    shipped pair into ``out`` (checked: each gives exactly the shipped config)."""
    folder = folder or pretrained.SHIPPED
    manifest = pretrained.verify(folder)
    plan = {}
    for kind in KINDS:
        name = pretrained.TOKENIZER_CONFIG if kind == "tokenizer" else pretrained.LM_CONFIG
        config = json.loads((folder / name).read_text())
        workdir = out / kind
        rebuilt = pretrained.reconstruct_command(
            workdir,
            kind,
            config=config,
            tokenizer_workdir=out / "tokenizer",
            variants=[manifest["configs"][kind].split(":", 1)[1]] if manifest.get("configs") else None,
        )
        argv = [sys.executable, *rebuilt["argv"][1:]]
        strip = lambda o: [x for x in o if not x.startswith("--config.tokenizer_workdir=")]  # noqa: E731
        plan[kind] = {
            "argv": argv,
            "workdir": workdir,
            "config": rebuilt["config"],
            "overrides": strip(rebuilt["overrides"]),
            "manifest_overrides": strip((manifest.get("overrides") or {}).get(kind, [])),
            "new_keys": rebuilt["new_keys"],
            "steps": int(config["steps"]),
        }
    return plan


def same_config(kind: str, config: dict) -> bool:
    """Whether ``config`` (a trained or rebuilt one) has the shipped config's value for every key the shipped
    one has (``tokenizer_workdir`` aside; keys added since are not compared)."""
    name = pretrained.TOKENIZER_CONFIG if kind == "tokenizer" else pretrained.LM_CONFIG
    want = pretrained._leaves(json.loads((pretrained.SHIPPED / name).read_text()))
    have = pretrained._leaves(json.loads(json.dumps(config)))
    return all(have.get(k) == v for k, v in want.items() if k != "tokenizer_workdir")


def _finished(workdir: Path, steps: int) -> bool:
    from tokenizer.api import latest_step

    return (workdir / "config.json").is_file() and (latest_step(workdir) or 0) >= steps


def _train(kind: str, item: dict, out: Path) -> float:
    """Runs one trainer command (output to OUT/KIND.log and the terminal); its wall time in seconds."""
    log = out / f"{kind}.log"
    print(f"== {kind}: {' '.join(item['argv'][1:])}\n   log: {log}", flush=True)
    t0 = time.perf_counter()
    with open(log, "a") as f:
        proc = subprocess.Popen(
            item["argv"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in proc.stdout:
            f.write(line)
            if (
                line.startswith(("[tokenizer] step", "[lm] step", "[lm] eval", "{"))
                or "error" in line.lower()
            ):
                print("   " + line, end="", flush=True)
        code = proc.wait()
    if code:
        raise SystemExit(f"{kind} training failed (exit {code}); see {log}. Rerun to resume it.")
    return time.perf_counter() - t0


def _points(a, b) -> str:
    if a is None or b is None:
        return "n/a"
    return f"{100 * (b - a):+.1f} points"


def compare(shipped: dict, reproduced: dict) -> dict:
    """The judge figures' differences in points and whether each is within the issue's +-5."""
    out = {}
    for split in ("test", "heldout"):
        a = ((shipped.get("judge") or {}).get(split) or {}).get("all_correct")
        b = ((reproduced.get("judge") or {}).get(split) or {}).get("all_correct")
        if a is not None and b is not None:
            out[split] = {
                "shipped": a,
                "reproduced": b,
                "points": 100 * (b - a),
                "within": abs(100 * (b - a)) <= JUDGE_POINTS,
            }
    return out


def reproduce(out: Path, *, dry_run: bool = False, fvd: bool = True) -> dict:
    plan = reproduction_plan(out)
    manifest = pretrained.read_manifest()
    for kind, item in plan.items():
        if item["new_keys"]:
            print(
                f"note: {item['config']} has gained {', '.join(item['new_keys'])} since the {kind} was packed: "
                "today's defaults are used (new options are off by default)."
            )
        if item["overrides"] != item["manifest_overrides"]:
            print(
                f"note: the {kind} command's overrides differ from the manifest's (a default of {item['config']} "
                f"moved since it was packed); these give the shipped config exactly:\n   "
                f"{' '.join(item['overrides'])}\n   manifest: {' '.join(item['manifest_overrides'])}"
            )
    if dry_run:
        for kind, item in plan.items():
            print(f"{kind}: {' '.join(item['argv'][1:])}")
        return {"plan": {k: v["argv"] for k, v in plan.items()}}
    out.mkdir(parents=True, exist_ok=True)
    from videogen import train as lm_train

    peak = lm_train.measure_matmul_flops()
    print(f"matmul peak of this machine now: {peak / 1e9:.1f} GFLOP/s (float32)", flush=True)
    times = {}
    for kind, item in plan.items():
        if _finished(item["workdir"], item["steps"]):
            print(f"== {kind}: {item['workdir']} already holds step {item['steps']}: not retrained")
            times[kind] = None
        else:
            times[kind] = _train(kind, item, out)
    for kind, item in plan.items():  # the trained config is the shipped one (paths and new keys aside)
        if not same_config(kind, json.loads((item["workdir"] / "config.json").read_text())):
            name = pretrained.TOKENIZER_CONFIG if kind == "tokenizer" else pretrained.LM_CONFIG
            raise SystemExit(
                f"{item['workdir']}/config.json differs from the shipped {name}: this is not a "
                "reproduction (a workdir left from another run? remove it and rerun)."
            )
    model = out / "model"
    new = pretrained_pack.pack(
        plan["tokenizer"]["workdir"],
        plan["lm"]["workdir"],
        model,
        sizes=(manifest.get("figures") or {}).get("sizes"),
        fvd=fvd,
        note=f"reproduction of the shipped model (make pretrained); matmul peak {peak:.3g} FLOP/s",
    )
    result = {
        "matmul_peak_flops": peak,
        "train_seconds": times,
        "shipped_train_seconds": {
            k: (manifest.get("training") or {}).get(k, {}).get("seconds") for k in KINDS
        },
        "shipped": manifest.get("figures"),
        "reproduced": new.get("figures"),
        "judge": compare(manifest.get("figures") or {}, new.get("figures") or {}),
        "weights": pretrained.compare_weights(pretrained.SHIPPED, model),
    }
    (out / "compare.json").write_text(json.dumps(result, indent=1) + "\n")
    print(
        "\n"
        + pretrained.figures_table(
            [("shipped", manifest.get("figures") or {}), ("reproduced", new.get("figures") or {})]
        )
    )
    for kind in KINDS:
        t, s = times[kind], result["shipped_train_seconds"][kind]
        print(
            f"{kind} training: {'not run (resumed a finished workdir)' if t is None else f'{t / 60:.1f} min'} "
            f"here; the manifest's: {'n/a' if s is None else f'{s / 60:.1f} min'}"
        )
    for split, c in result["judge"].items():
        print(
            f"judge {split}: {_points(c['shipped'], c['reproduced'])} "
            f"({'within' if c['within'] else 'OUTSIDE'} +-{JUDGE_POINTS:g})"
        )
    for name, w in result["weights"].items():
        print(
            f"weights {name}: "
            + (
                "bit-identical to the shipped ones"
                if w["identical"]
                else f"{w['differing']} of {w['arrays']} arrays differ (max |diff| {w['max_abs_diff']:.3g})"
                + (f", {len(w['missing'])} missing on one side" if w["missing"] else "")
            )
        )
    print(
        f"matmul peak now: {peak / 1e9:.1f} GFLOP/s. Wrote {out / 'compare.json'} and the packed copy {model}"
    )
    return result


def refresh(
    into: Path, tokenizer_workdir: str, lm_workdir: str, *, fvd: bool = True, note: str | None = None
) -> dict:
    old = None
    try:
        old = pretrained.read_manifest(into)
    except errors.UsageError:
        pass
    new = pretrained_pack.pack(tokenizer_workdir, lm_workdir, into, fvd=fvd, note=note)
    cols = ([("before", old.get("figures") or {})] if old else []) + [("now", new.get("figures") or {})]
    print("\n" + pretrained.figures_table(cols))
    print(f"{into}: {new['total_bytes'] / 2**20:.2f} MiB; commands:")
    for kind, command in new["commands"].items():
        print(f"  {kind}: {command}")
    return new


def main(argv: list[str] | None = None) -> None:
    p = errors.ArgumentParser(prog="python experiments/pretrained.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", default="runs/pretrained", help="reproduction: where the pair is trained and packed"
    )
    p.add_argument("--dry-run", action="store_true", help="print the reproduction's commands and stop")
    p.add_argument(
        "--pack-into", help="refresh: pack --tokenizer-workdir + --lm-workdir into this folder instead"
    )
    p.add_argument("--tokenizer-workdir")
    p.add_argument("--lm-workdir")
    p.add_argument("--no-fvd", action="store_true", help="skip the FVD figure")
    p.add_argument("--note", help="refresh: a line of context kept in the manifest")
    errors.add_verbose(p)
    args = p.parse_args(argv)
    errors.configure_logging(args.verbose)
    with errors.reported(p.prog, args.verbose):
        if args.pack_into:
            if not (args.tokenizer_workdir and args.lm_workdir):
                raise errors.UsageError(
                    "--pack-into needs --tokenizer-workdir and --lm-workdir: the trained pair to pack."
                )
            refresh(
                Path(args.pack_into),
                args.tokenizer_workdir,
                args.lm_workdir,
                fvd=not args.no_fvd,
                note=args.note,
            )
        else:
            if args.tokenizer_workdir or args.lm_workdir:
                raise errors.UsageError(
                    "--tokenizer-workdir / --lm-workdir go with --pack-into (refresh); the "
                    "reproduction trains its own into --out."
                )
            reproduce(Path(args.out), dry_run=args.dry_run, fvd=not args.no_fvd)


if __name__ == "__main__":
    main()
