"""Tiny trainer workdirs shared by the test modules (no train-step compile needed to make them)."""

from __future__ import annotations

from pathlib import Path

from tokenizer import train as T
from videogen.training.config import apply_overrides, load_config

ROOT = Path(__file__).resolve().parents[1]

# The tiny tokenizer variant shrunk to 16x16x9 clips, a 2-stage width-8 model without res blocks:
# compression 2x8x8 -> a 5x2x2 = 20-token grid, LFQ 6 bits (64 codes).
TINY_TOKENIZER_OVERRIDES = [
    "data.resolution=16",
    "data.num_frames=9",
    "model.channels=8",
    "model.num_groups=4",
    "model.channel_multipliers=(1,2)",
    "model.num_res_blocks=0",
    "model.use_adaptive_group_norm=False",
    "model.temporal_downsample=(True,)",
    "model.spatial_downsample=(True,)",
    "quantizer.lfq.num_bits=6",
]


# The tiny LM shrunk to those 20-token clips: 2 layers d 32 (GQA 4/2) on an emulated 2x2x2 mesh, constant lr
# (an N-step run is a prefix of a longer one: the resume tests), no eval, no samples, quiet.
TINY_LM_OVERRIDES = [
    "data.resolution=16",
    "data.num_frames=9",
    "batch_size=8",
    "mesh.data=2",
    "mesh.fsdp=2",
    "mesh.tensor=2",
    "text.max_length=32",
    "text.num_captions=300",
    "model.num_layers=2",
    "model.d_model=32",
    "model.num_heads=4",
    "model.num_kv_heads=2",
    "model.mlp_dim=64",
    "optim.lr=3e-3",
    "optim.warmup_steps=0",
    "optim.min_lr_ratio=1.0",
    "eval.every=0",
    "eval.num_batches=0",
    "sample.num_prompts=0",
    "log_every=1",
    "quiet=True",
]


def tiny_lm_config(tok_dir, *extra: str, **overrides):
    """experiments/lm_world.py:tiny with TINY_LM_OVERRIDES on the tokenizer in ``tok_dir``, then ``extra``
    ('key=value') and ``overrides`` (key=value) in that order."""
    c = load_config(str(ROOT / "experiments/lm_world.py") + ":tiny")
    extra = list(extra) + [f"{k}={v}" for k, v in overrides.items()]
    return apply_overrides(c, [f"tokenizer_workdir={tok_dir}"] + TINY_LM_OVERRIDES + extra)


def tiny_tokenizer_config(*extra: str):
    c = load_config(str(ROOT / "experiments/tokenizer_world.py") + ":tiny")
    return apply_overrides(c, TINY_TOKENIZER_OVERRIDES + list(extra))


def save_initialised_tokenizer(workdir: Path, config) -> Path:
    """A tokenizer workdir holding its initialised state, saved as tokenizer.train saves it: config.json +
    a step-1 checkpoint (what load_tokenizer reads)."""
    mesh = T.make_mesh(config)
    tx, _ = T.make_optimizer(config)
    _, shardings = T.state_shardings(config, mesh, tx)
    state = T.init_state(config, mesh, tx, shardings)
    with T.checkpoint_manager(workdir, config) as mngr:
        T.save_checkpoint(mngr, 1, state, {"step": 1, "seed": 0, "global_batch_size": 8}, force=True)
        mngr.wait_until_finished()
    (workdir / "config.json").write_text(config.to_json(indent=1, sort_keys=True))
    return workdir


def tensorboard_tags(workdir: Path) -> set[tuple[str, int, str]]:
    """``(tag, step, kind)`` of every value in ``workdir/tb``'s event files (kind: 'simple_value', 'image',
    ...), read with tensorboardX's own protos (TFRecord framing: length, crc, payload, crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    tags = set()
    for f in sorted((Path(workdir) / "tb").glob("events.out.tfevents.*")):
        data, i = f.read_bytes(), 0
        while i + 12 <= len(data):
            n = struct.unpack("<Q", data[i : i + 8])[0]
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            tags.update((v.tag, event.step, v.WhichOneof("value")) for v in event.summary.value)
    return tags
