"""A training run's metrics log, shared by both trainers: TensorBoard scalars and images under ``<workdir>/tb``
and every logged row in ``<workdir>/metrics.jsonl`` (one JSON object per line). Only process 0 writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import jax
import numpy as np
from tensorboardX import SummaryWriter

__all__ = ["MetricsLog"]


class MetricsLog:
    """TensorBoard scalars + metrics.jsonl, one call per logging point."""

    def __init__(self, workdir: Path):
        self.enabled = jax.process_index() == 0  # one writer per run, not one per process
        self.writer = SummaryWriter(str(workdir / "tb")) if self.enabled else None
        self.jsonl = open(workdir / "metrics.jsonl", "a") if self.enabled else None

    def __call__(self, step: int, prefix: str, metrics: dict) -> None:
        if not self.enabled:
            return
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.jsonl.write(json.dumps({"step": step, "kind": prefix, **metrics}) + "\n")
        self.jsonl.flush()

    def has(self, step: int, kind: str) -> bool:
        """Whether metrics.jsonl holds a ``kind`` row for ``step`` (e.g. an eval a preempted run never did)."""
        if not self.enabled:
            return True
        self.jsonl.flush()
        with open(self.jsonl.name) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut by a crash mid-write
                    continue
                if row.get("step") == step and row.get("kind") == kind:
                    return True
        return False

    def image(self, step: int, tag: str, path: Path) -> None:
        """A still written by this run (e.g. samples/step_N.png, a contact sheet) into TensorBoard's Images."""
        if not self.enabled or not Path(path).is_file():
            return
        self.writer.add_image(tag, np.asarray(iio.imread(path))[..., :3], step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()
