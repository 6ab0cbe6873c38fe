"""One input pipeline for every source: seeded shuffle, per-process slicing, batching, global arrays.

Determinism is by index, not by iterator state. Global batch k holds elements
[k·B, (k+1)·B) of the shuffled, endlessly repeated source (grain shuffles each epoch differently,
as a pure function of (seed, epoch, index)). Process p of P reads elements p, p+P, p+2P, …, so the
set of elements in global batch k does not depend on the number of processes. The pipeline's whole
position is therefore one integer, the step: restoring it yields exactly the batches that would have
come next, and it survives a change of process count.

Numeric fields become global `jax.Array`s whose batch dimension is split over the mesh's data axes
(data, fsdp); strings (captions) stay on the host, per process.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grain
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from videogen.training import mesh as mesh_lib

log = logging.getLogger("videogen.data")

# Errors a source raises for one bad item (unreadable file, corrupt record); anything else is a bug.
SKIPPABLE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError)
MAX_CONSECUTIVE_FAILURES = 50


class SkippingSource:
    """Wraps a random-access source: an item that fails to load is replaced by the next good one.

    The replacement is deterministic (index+1, index+2, …), so batches stay a pure function of the
    step; every skip is counted and logged once per index.
    """

    def __init__(self, source):
        self.source = source
        self._lock = threading.Lock()
        self.failed: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        n = len(self.source)
        for attempt in range(MAX_CONSECUTIVE_FAILURES):
            i = (int(index) + attempt) % n
            try:
                return self.source[i]
            except SKIPPABLE_ERRORS as e:
                with self._lock:
                    if i not in self.failed:
                        self.failed[i] = f"{type(e).__name__}: {e}"
                        log.warning(
                            "Skipping unreadable item %d of %s (%d skipped so far): %s",
                            i,
                            type(self.source).__name__,
                            len(self.failed),
                            e,
                        )
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_FAILURES} consecutive items of {self.source!r} from index {index} "
            f"failed to load; last errors: {list(self.failed.values())[-3:]}. Check the data."
        )

    @property
    def num_skipped(self) -> int:
        return len(self.failed)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    global_batch_size: int
    seed: int = 0
    shuffle: bool = True
    num_threads: int = 0  # 0: read in the calling thread (fastest on 2 cores); >0 for I/O-bound sources
    prefetch: int = 2  # batches read ahead when num_threads > 0


class Pipeline:
    """Batches from `source` for training on `mesh`.

    Each batch is a dict: numeric fields as global jax.Arrays [B, ...] sharded over the data axes (or
    numpy arrays when mesh is None), "caption" as a host list of this process's captions, and
    "text_ids"/"text_mask" when a text tokenizer is given.

    Args:
      source: random-access (`__len__`, `__getitem__` → dict with "video" uint8 [T, H, W, 3], "caption").
      config: batch size, seed, threads.
      mesh: the device mesh; None yields host numpy batches (tools, tests, benchmarks).
      text_tokenizer: a `videogen.data.text.TextTokenizer`, or None.
      start_step: the pipeline state to resume from (`pipeline.state()["step"]`).
      transform: optional per-example function applied after loading (e.g. augmentation).
    """

    def __init__(
        self,
        source,
        config: PipelineConfig,
        *,
        mesh: Mesh | None = None,
        text_tokenizer=None,
        start_step: int = 0,
        transform: Callable[[dict], dict] | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.config = config
        self.mesh = mesh
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        B = config.global_batch_size
        if B % self.process_count:
            raise ValueError(
                f"global_batch_size={B} is not divisible by the {self.process_count} processes; "
                f"use a multiple of {self.process_count}."
            )
        if mesh is not None:
            dp = mesh_lib.data_parallel_size(mesh)
            if B % dp:
                raise ValueError(
                    f"global_batch_size={B} is not divisible by the data-parallel size {dp} of mesh "
                    f"{dict(mesh.shape)} (axes {mesh_lib.batch_axes(mesh)}); use a multiple of {dp}."
                )
        if len(source) == 0:
            raise ValueError(f"Data source {source!r} is empty.")
        self.local_batch_size = B // self.process_count
        self.source = SkippingSource(source)
        self.text_tokenizer = text_tokenizer
        self.transform = transform
        self._step = int(start_step)

        ds = grain.MapDataset.source(self.source)
        if config.shuffle:
            ds = ds.shuffle(seed=config.seed)
        ds = ds.repeat()  # endless; each epoch reshuffled
        ds = ds[self.process_index :: self.process_count]
        ds = ds.map(self._prepare)
        self._batches = ds.batch(self.local_batch_size, drop_remainder=True)

    def _prepare(self, example: dict) -> dict:
        if self.transform is not None:
            example = self.transform(example)
        out = {k: np.asarray(v) for k, v in example.items() if k not in ("caption", "source")}
        out["caption"] = np.asarray(example["caption"], dtype=object)
        if self.text_tokenizer is not None:
            out["text_ids"], out["text_mask"] = self.text_tokenizer.encode(str(example["caption"]))
        return out

    # ---- state -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The whole position: save it with the checkpoint, pass `start_step=state['step']` to resume."""
        return {
            "step": self._step,
            "seed": self.config.seed,
            "global_batch_size": self.config.global_batch_size,
        }

    @property
    def num_skipped(self) -> int:
        return self.source.num_skipped

    # ---- batches -----------------------------------------------------------------------------------
    def host_batch(self, step: int) -> dict:
        """This process's slice of global batch `step`, as numpy (random access; no iterator state)."""
        return self._batches[step]

    def to_global(self, host: dict) -> dict:
        """Numeric fields → global jax.Arrays split over the mesh's batch axes; captions stay a list."""
        out = {"caption": list(host["caption"])}
        for key, value in host.items():
            if key == "caption":
                continue
            if self.mesh is None:
                out[key] = value
                continue
            sharding = NamedSharding(self.mesh, PartitionSpec(mesh_lib.batch_axes(self.mesh)))
            global_shape = (self.config.global_batch_size,) + value.shape[1:]
            out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
        return out

    def __iter__(self) -> Iterator[dict]:
        """Yields global batches from the current step on; the step advances as batches are taken."""
        batches = self._batches[self._step :]
        if self.config.num_threads > 0:
            stream = iter(
                batches.to_iter_dataset(
                    grain.ReadOptions(
                        num_threads=self.config.num_threads, prefetch_buffer_size=self.config.prefetch
                    )
                )
            )
        else:
            stream = (batches[i] for i in range(len(batches)))
        for host in stream:
            batch = self.to_global(host)
            self._step += 1
            yield batch


def resume_step(saved: dict, global_batch_size: int, seed: int) -> tuple[int, str | None]:
    """The pipeline step to resume at from a checkpoint's ``Pipeline.state()``, and a note when the run's
    batch size or seed differ from the saved ones (else None).

    The position is a count of examples of one shuffled stream, so a new batch size resumes after the same
    examples: ``step * old_B / new_B`` batches, exact when it divides, else rounded up (the few examples
    in between are skipped, never repeated). A new seed is another stream: there the count of examples
    seen is kept, but not which ones."""
    step, old_batch = int(saved["step"]), int(saved.get("global_batch_size", global_batch_size))
    old_seed = saved.get("seed", seed)
    examples = step * old_batch
    new_step = -(-examples // int(global_batch_size))
    notes = []
    if old_batch != int(global_batch_size):
        skipped = new_step * int(global_batch_size) - examples
        notes.append(
            f"batch size {old_batch} -> {global_batch_size}: data step {step} -> {new_step} (the same "
            f"{examples} examples seen"
            + (f", {skipped} skipped to the next batch boundary)" if skipped else ")")
        )
    if old_seed != seed:
        notes.append(
            f"seed {old_seed} -> {seed}: another shuffle of the data; {examples} examples counted as seen, "
            "but not the same ones"
        )
    return new_step, ("; ".join(notes) or None)
