"""Input pipeline throughput: `videogen bench-data` (and `make bench-data`) prints a table.

Rows are clips per second at the given resolution/length, all measured in one run on this machine:
rendering the world alone (the ceiling of the on-the-fly source), the pipeline over the on-the-fly
world with global arrays on the local mesh, the pipeline over the same world prepared as TFDS
ArrayRecord (random access reads), and the judge.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time

import jax

from videogen.data import pipeline, world
from videogen.data.tfds_source import TfdsSource
from videogen.eval import judge
from videogen.training import mesh as mesh_lib


def _rate(fn, clips_per_call: int, calls: int) -> float:
    fn()  # warm-up: first reads open files, first device_put compiles nothing but allocates
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return clips_per_call * calls / (time.perf_counter() - start)


def main(args) -> dict:
    R, T, B, steps = args.resolution, args.num_frames, args.batch_size, args.steps
    cfg = world.WorldConfig(resolution=R, num_frames=T)
    source = world.WorldSource(cfg, "train", num_clips=100_000)
    mesh = mesh_lib.make_mesh()
    results = {}

    counter = iter(range(10**9))
    results["world render (1 thread)"] = _rate(lambda: source[next(counter)], 1, B * steps)

    def pipeline_rate(src, num_threads):
        pipe = pipeline.Pipeline(
            src, pipeline.PipelineConfig(global_batch_size=B, num_threads=num_threads), mesh=mesh
        )
        it = iter(pipe)
        return _rate(lambda: jax.block_until_ready(next(it)["video"]), B, steps)

    results["pipeline: world → global arrays, 0 threads"] = pipeline_rate(source, 0)
    results[f"pipeline: world → global arrays, {os.cpu_count()} threads"] = pipeline_rate(
        source, os.cpu_count()
    )

    from videogen.data import tfds_world  # deferred: imports tensorflow_datasets, slow to load

    with tempfile.TemporaryDirectory() as data_dir:
        n = max(4 * B, 128)
        start = time.perf_counter()
        builder = tfds_world.prepare(
            tfds_world.builder_for_world(data_dir, cfg, {"train": n, "test": 0, "heldout": 0})
        )
        results["TFDS prepare (write ArrayRecord)"] = n / (time.perf_counter() - start)
        tfds_src = TfdsSource(
            f"videogen_world/{builder.builder_config.name}", split="train", data_dir=data_dir
        )
        results["pipeline: TFDS ArrayRecord → global arrays, 0 threads"] = pipeline_rate(tfds_src, 0)

    examples = [source[i] for i in range(B)]
    k = iter(range(10**9))
    results["judge (1 thread)"] = _rate(lambda: judge.judge_video(**_pick(examples, next(k))), 1, B)

    header = (
        f"Data pipeline, {R}×{R}×{T}, batch {B}, {steps} batches per row; {platform.node()} "
        f"({os.cpu_count()} CPUs, {jax.device_count()} {jax.devices()[0].platform} devices); "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print(header)
    print(f"| {'what':58s} | {'clips/s':>9s} |\n|{'-' * 60}|{'-' * 11}|")
    for name, value in results.items():
        print(f"| {name:58s} | {value:9.1f} |")
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            json.dump({"header": header, "clips_per_second": results}, f, indent=2)
    return results


def _pick(examples, i):
    e = examples[i % len(examples)]
    return {"video": e["video"], "caption": e["caption"]}
