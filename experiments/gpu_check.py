"""What only an accelerator shows, in one command of about 7.5 minutes: for a GPU host you hold briefly.

    bash experiments/gpu_check.sh                         # on the GPU host, from the repo root
    OUT=/tmp/gpu_check bash experiments/gpu_check.sh --budget 420

Runs, in this order, each in its own process with its own time limit (a crash or hang in one is logged
and the next still runs), and writes ``OUT/summary.json`` plus one log per section:

1. ``env``       -- jax / jaxlib / flax / optax / orbax versions, the devices, the GPU's name and memory.
2. ``bench``     -- ``python -m videogen.bench --platforms gpu``: the measured bf16 matmul peak and memory
                    bandwidth, the default (64x64x17) tokenizer's train/encode/decode frames/s, the default
                    LM's tokens/s and MFU (next-token and MaskGIT, ours vs jax.nn.dot_product_attention),
                    AR sampling against its bandwidth bound, MaskGIT s/clip (``OUT/bench.json``).
3. ``numerics``  -- the model, sampling and quantizer tests on the GPU (f32 and bf16 paths: KV-cached decode
                    vs a full pass, custom attention VJP vs autodiff, bf16 finiteness, ...). On a GPU XLA may
                    run f32 matmuls in TF32, so a tight f32 tolerance that holds on CPU can fail here: that
                    is what this section is for. Tests that need the 8-device mesh are left out.
4. ``tokenizer`` -- the default 64x64x17 tokenizer config (42M params, bf16) trained for as many steps as
                    fit its share of the budget (sized from the bench's step time), one evaluation at the
                    end (PSNR, SSIM, code usage, the judge on reconstructions): the first points of the
                    issue's 64x64 curve and its wall-clock cost per step.
5. ``lm``        -- the default LM (12 layers, d 512, next-token) on that tokenizer's codes for as many steps
                    as fit, MFU against the bench's measured peak, one eval with samples judged.

The figures to copy into BENCHMARKS.md are printed at the end as a table. Nothing is downloaded: a host
without network gets the few packages the image may lack from ``.offline/wheels`` and the I3D weights from
``.offline/cache`` (``make gpu-offline`` fills both on a machine with network; experiments/gpu_check.sh
installs the wheels into a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Share of the budget per section (seconds at --budget 450: 18, 162, 90, 90, 90); the trainers get what the earlier ones leave.
SHARES = {"env": 0.04, "bench": 0.36, "numerics": 0.2, "tokenizer": 0.2, "lm": 0.2}

NUMERICS_TESTS = [
    "tests/test_model.py::test_cached_decode_matches_full_pass_and_compiles_once",
    "tests/test_model.py::test_block_causal_chunked_cache_matches_full_pass",
    "tests/test_model.py::test_frame_causal_maskgit_with_kv_cache_samples_as_the_full_pass",
    "tests/test_model.py::test_attention_custom_vjp_matches_autodiff",
    "tests/test_model.py::test_model_gradients_match_dot_product_attention",
    "tests/test_model.py::test_gqa_matches_mha_with_tied_kv_heads",
    "tests/test_model.py::test_bf16_compute_is_finite_with_float32_params",
    "tests/test_sampling.py::test_guidance_scale_0_reproduces_unconditional_sampling",
    "tests/test_sampling.py::test_ar_decode_sequence_state_and_single_compile",
    "tests/test_sampling.py::test_maskgit_keeps_given_tokens_with_per_example_unknowns",
    "tests/test_sampling.py::test_sample_logits_reproducible_and_path_independent",
    "tests/test_quantizers.py::test_lfq_entropy_matches_full_enumeration",
    "tests/test_quantizers.py::test_fsq_codes_on_grid",
    "tests/test_tokenizer_model.py::test_conv_impls_share_params_and_function",
]

ENV_SNIPPET = r"""
import importlib.metadata as md, json, jax
out = {"python": __import__("sys").version.split()[0], "jax_backend": jax.default_backend(),
       "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()]}
for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml_collections", "grain"):
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
import flax, optax, orbax.checkpoint  # noqa: F401  (what the trainers import: fails here, not later)
import videogen.train, tokenizer.train, videogen.bench  # noqa: F401
d = jax.devices()[0]
stats = d.memory_stats() or {}
out["device_memory_bytes"] = stats.get("bytes_limit")
print("GPU_CHECK_ENV " + json.dumps(out))
"""


def run_section(name: str, cmd: list[str], out: Path, timeout: float, env: dict | None = None) -> dict:
    """One section as a subprocess: its output to OUT/<name>.log, its status and wall time returned."""
    log = out / f"{name}.log"
    print(f"[gpu_check] {name}: {' '.join(cmd)} (limit {timeout:.0f} s)", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=max(timeout, 5),
                env={**os.environ, **(env or {})},
            )
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    tail = log.read_text(errors="replace").splitlines()[-15:]
    print(
        f"[gpu_check] {name}: {status} in {wall:.0f} s"
        + ("" if status == "ok" else "\n  " + "\n  ".join(tail)),
        flush=True,
    )
    return {"status": status, "seconds": round(wall, 1), "log": log.name}


def _metrics(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def _last(rows: list[dict], kind: str) -> dict:
    picked = [r for r in rows if r.get("kind") == kind]
    return picked[-1] if picked else {}


def steps_that_fit(
    seconds: float, step_seconds: float | None, *, overhead: float, floor: int, cap: int
) -> int:
    """Train steps that fit ``seconds`` after ``overhead`` (compile, eval, save) at ``step_seconds`` each (from
    the bench; without it, ``floor``)."""
    if not step_seconds or step_seconds <= 0:
        return floor
    return int(max(floor, min(cap, (seconds - overhead) / (step_seconds * 1.15))))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu_check", help="output folder")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all sections together")
    p.add_argument(
        "--workdir",
        default="/tmp/videogen_gpu_check",
        help="trainers' workdirs, emptied at the start (a leftover run would be resumed or refused)",
    )
    p.add_argument("--platform", default="gpu", help="'gpu'; 'cpu' runs a tiny dry run of the script itself")
    p.add_argument("--skip", default="", help="comma-separated sections to skip")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir)
    if work.exists():  # e.g. a --platform cpu dry run's tiny models: the trainers would refuse or resume them
        shutil.rmtree(work)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - set(SHARES):  # a typo would spend the GPU's few minutes on the section meant to be skipped
        p.error(
            f"--skip {args.skip}: unknown section(s) {sorted(skip - set(SHARES))}; sections: {list(SHARES)}"
        )
    dry = args.platform == "cpu"
    py = sys.executable
    t_start = time.perf_counter()
    summary: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "budget_s": args.budget,
        "platform": args.platform,
        "sections": {},
    }
    budget = {k: v * args.budget for k, v in SHARES.items()}

    def left() -> float:
        return args.budget - (time.perf_counter() - t_start)

    def save() -> None:
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    # ---------------------------------------------------------------- env
    if "env" not in skip:
        r = run_section("env", [py, "-c", ENV_SNIPPET], out, budget["env"] + 20)
        log = (out / "env.log").read_text(errors="replace")
        for line in log.splitlines():
            if line.startswith("GPU_CHECK_ENV "):
                r["found"] = json.loads(line.split(" ", 1)[1])
        try:
            r["nvidia_smi"] = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                    "--format=csv,noheader",
                ],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            r["nvidia_smi"] = None
        summary["sections"]["env"] = r
        save()

    # ---------------------------------------------------------------- bench
    bench = {}
    if "bench" not in skip:
        cmd = [
            py,
            "-m",
            "videogen.bench",
            "--platforms",
            "cpu" if dry else "gpu",
            "--out",
            str(out / "bench.json"),
        ]
        if dry:
            cmd.append("--quick")
        r = run_section("bench", cmd, out, min(budget["bench"], left()))
        if (out / "bench.json").is_file():
            bench = json.loads((out / "bench.json").read_text())["platforms"].get("cpu" if dry else "gpu", {})
            r["figures"] = bench
        summary["sections"]["bench"] = r
        save()

    # ---------------------------------------------------------------- numerics
    if "numerics" not in skip:
        # The tests whose tolerances an accelerator's arithmetic can break (f32 matmuls may run in TF32; bf16
        # compute), chosen so they fit the section's share: the 8-device-mesh tests need 8 host devices.
        cmd = [
            py,
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            "--junitxml",
            str(out / "numerics.xml"),
            *NUMERICS_TESTS,
        ]
        env = {} if dry else {"JAX_PLATFORMS": "cuda,cpu"}
        r = run_section("numerics", cmd, out, min(budget["numerics"], left()), env=env)
        r["failed"], r["passed"] = _test_outcomes(out / "numerics.xml", out / "numerics.log")
        summary["sections"]["numerics"] = r
        save()

    # ---------------------------------------------------------------- tokenizer (64x64x17, default config)
    tok_dir = work / "tok"
    if "tokenizer" not in skip:
        seconds = min(budget["tokenizer"], left() - budget["lm"])
        step_s = bench.get("tokenizer_train_seconds_per_step")
        steps = steps_that_fit(seconds, step_s, overhead=60, floor=20 if dry else 100, cap=20_000)
        if dry:
            steps = 20
        overrides = [
            f"--config.steps={steps}",
            f"--config.eval.every={steps}",
            f"--config.ckpt_every={steps}",
            "--config.quiet=True",
            "--config.eval.num_clips=64",
            "--config.eval.data.num_clips=64",
            "--config.eval.num_samples=0",
        ]  # sample mp4s need imageio-ffmpeg (~70 MB), not carried
        if dry:  # the quick bench's shapes: the script's own logic, not a measurement
            overrides += [
                "--config.data.resolution=16",
                "--config.data.num_frames=9",
                "--config.model.channels=8",
                "--config.model.num_groups=4",
                "--config.model.channel_multipliers=(1,2)",
                "--config.model.num_res_blocks=0",
                "--config.model.temporal_downsample=(True,)",
                "--config.model.spatial_downsample=(True,)",
                "--config.quantizer.lfq.num_bits=6",
                "--config.batch_size=4",
                "--config.eval.batch_size=16",
                "--config.model.dtype=float32",
                "--config.loss.perceptual_weight=0.0",
            ]
        cmd = [
            py,
            "-m",
            "tokenizer.train",
            "--config",
            "experiments/tokenizer_world.py",
            "--workdir",
            str(tok_dir),
            *overrides,
        ]
        r = run_section("tokenizer", cmd, out, max(seconds, 30))
        rows = _metrics(tok_dir)
        r.update(steps=steps, bench_step_seconds=step_s, train=_last(rows, "train"), eval=_last(rows, "eval"))
        _copy(tok_dir / "metrics.jsonl", out / "tokenizer_metrics.jsonl")
        summary["sections"]["tokenizer"] = r
        save()

    # ---------------------------------------------------------------- LM (default config, next-token)
    if "lm" not in skip:
        seconds = max(left() - 5, 30)
        step_s = bench.get("lm_train_seconds_per_step")
        steps = steps_that_fit(seconds, step_s, overhead=90, floor=20 if dry else 100, cap=50_000)
        if dry:
            steps = 20
        peak = bench.get("matmul_peak_flops")
        overrides = [
            f"--config.steps={steps}",
            f"--config.eval.every={steps}",
            f"--config.ckpt_every={steps}",
            "--config.quiet=True",
            "--config.objective=next_token",
            f"--config.tokenizer_workdir={tok_dir}",
            f"--config.optim.warmup_steps={max(1, steps // 10)}",
        ]
        if peak:
            overrides.append(f"--config.peak_flops={peak}")
        if dry:
            overrides += [
                "--config.data.resolution=16",
                "--config.data.num_frames=9",
                "--config.batch_size=8",
                "--config.model.num_layers=2",
                "--config.model.d_model=32",
                "--config.model.num_heads=4",
                "--config.model.num_kv_heads=2",
                "--config.model.mlp_dim=64",
                "--config.model.dtype=float32",
                "--config.sample.num_prompts=2",
            ]
        cmd = [
            py,
            "-m",
            "videogen.train",
            "--config",
            "experiments/lm_world.py",
            "--workdir",
            str(work / "lm"),
            *overrides,
        ]
        r = run_section("lm", cmd, out, seconds)
        rows = _metrics(work / "lm")
        r.update(
            steps=steps,
            bench_step_seconds=step_s,
            peak_flops=peak,
            train=_last(rows, "train"),
            eval=_last(rows, "eval"),
        )
        _copy(work / "lm" / "metrics.jsonl", out / "lm_metrics.jsonl")
        summary["sections"]["lm"] = r
        save()

    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    save()
    print(format_summary(summary))
    return summary


def failed(summary: dict) -> list[str]:
    """Sections that did not end ``ok`` (and numerics with failing tests): the script's exit status is 1 then."""
    bad = [n for n, r in summary["sections"].items() if r.get("status") != "ok"]
    if summary["sections"].get("numerics", {}).get("failed") and "numerics" not in bad:
        bad.append("numerics")
    return bad


def _copy(src: Path, dst: Path) -> None:
    if src.is_file():
        dst.write_bytes(src.read_bytes())


def _test_outcomes(junit: Path, log: Path) -> tuple[list[str], int]:
    """(failed test ids, number passed): from pytest's JUnit XML, or from its -v log if it was stopped first."""
    failed, passed = [], 0
    if junit.is_file():
        import xml.etree.ElementTree as ET

        for case in ET.parse(junit).iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}")
            elif case.find("skipped") is None:
                passed += 1
        return failed, passed
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        if " PASSED" in line:
            passed += 1
        elif " FAILED" in line or " ERROR" in line:
            failed.append(line.split(" ")[0])
    return failed, passed


HEADLINE_KEYS = (
    "step",
    "loss",
    "psnr",
    "ssim",
    "usage",
    "accuracy",
    "steps_per_sec",
    "tokens_per_sec",
    "mfu",
    "judge_all_correct",
    "judge_colour",
    "judge_motion",
)


def _pick(metrics: dict) -> str:
    return ", ".join(
        f"{k} {metrics[k]:.4g}" for k in HEADLINE_KEYS if isinstance(metrics.get(k), (int, float))
    )


def format_summary(summary: dict) -> str:
    s = summary["sections"]
    lines = [
        f"gpu_check {summary['date']} ({summary['platform']}), {summary.get('total_seconds')} s of "
        f"{summary['budget_s']:.0f}",
        "| section | status | s | figures |",
        "|---|---|---:|---|",
    ]
    for name, r in s.items():
        fig = ""
        if name == "env":
            fig = json.dumps(r.get("found", {})) + f" {r.get('nvidia_smi') or ''}"
        elif name == "bench" and r.get("figures"):
            b = r["figures"]
            fig = (
                f"peak {b.get('matmul_peak_flops', 0) / 1e12:.0f} TFLOP/s {b.get('matmul_dtype')}, "
                f"LM MFU {b.get('lm_train_mfu', 0):.1%} (MaskGIT {b.get('lm_train_maskgit_mfu', 0):.1%}), "
                f"tokenizer {b.get('tokenizer_train_seconds_per_step', 0):.3g} s/step, "
                f"AR b1 {b.get('ar_sampling_b1_tokens_per_s', 0):.0f} tok/s, "
                f"MaskGIT {b.get('maskgit_seconds_per_clip', 0):.3g} s/clip"
            )
        elif name == "numerics":
            fig = f"{r.get('passed')} passed, failed: {r.get('failed')}"
        elif name in ("tokenizer", "lm"):
            fig = (
                f"{r.get('steps')} steps; train "
                + _pick(r.get("train", {}))
                + "; eval "
                + _pick(r.get("eval", {}))
            )
        lines.append(f"| {name} | {r['status']} | {r['seconds']:.0f} | {fig} |")
    return "\n".join(lines)


if __name__ == "__main__":
    bad = failed(main(sys.argv[1:]))
    if bad:
        print(
            f"gpu_check: failed sections: {', '.join(bad)} (their logs are in the output folder)",
            file=sys.stderr,
        )
        sys.exit(1)
