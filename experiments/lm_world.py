"""Text-to-video transformer on tokenizer codes of the built-in moving-shapes world.

Needs a trained tokenizer workdir (experiments/tokenizer_world.py) with the same clip shape. Variants:

``tiny`` -- CPU: 32x32x17 clips through the tiny tokenizer (5x8x8 = 320 video tokens, 1,024 codes), 32 text
tokens, 4 layers d=128, frame-causal MaskGIT (``maskgit_frames``), learned (t, h, w) position embeddings and
per-axis rotary ladders::

    python -m tokenizer.train --config experiments/tokenizer_world.py:tiny --workdir runs/tok_tiny
    python -m videogen.train --config experiments/lm_world.py:tiny --workdir runs/lm_tiny \
        --config.tokenizer_workdir=runs/tok_tiny --config.code_cache.num_clips=20000

  Stage 2 of the tiny recipe: 3,000 steps (both stages: 72-85 min on a 2-core CPU). Expect ~39 % of 128 test
  prompts fully correct under the strict judge, ~8 % of held-out ones
  (BENCHMARKS.md "The tiny recipe", with its learning curve and the ablations behind each default).

``default`` -- one accelerator: 64x64x17 clips through the default tokenizer (320 tokens, 4,096 codes), 12
layers d=512, bf16. ``--config.peak_flops=989e12`` on an H100 for MFU. Not measured yet.

``1b`` -- a cluster: ~1.1B params (24 layers, d=2048, GQA 16/8, SwiGLU 5632, remat 'dots'), FSDP over all
devices, batch 256. ``videogen plan --config experiments/lm_world.py:1b`` sizes it for a mesh first. Not
measured yet.

Any key can be overridden (``--config.objective=next_token``, ``--config.model.remat=dots``,
``--config.mesh.fsdp=2``); ``--config.peak_flops=measure`` times a matmul for MFU on CPU.
"""

import ml_collections

from videogen.lm.model import DEFAULT_LOGICAL_AXIS_RULES


def get_config(arg=None):
    variant = arg or "default"
    if variant not in ("default", "tiny", "1b"):
        raise ValueError(f"unknown variant {variant!r}: use experiments/lm_world.py, ...:tiny or ...:1b")
    tiny = variant == "tiny"
    c = ml_collections.ConfigDict()
    c.seed = 0  # init, data order, masks and caption drop
    c.tokenizer_workdir = None  # required: --config.tokenizer_workdir=runs/tok_tiny
    # 'maskgit_frames' (frame-causal MaskGIT: learns motion first) | 'next_token' | 'maskgit' (fixed for a
    # workdir: resumes refuse another).
    c.objective = "maskgit_frames"
    c.steps = 3000 if tiny else 50_000  # optimizer steps (the lr schedule spans them)
    c.batch_size = 16 if tiny else 64  # clips per step, over the whole mesh
    c.grad_accum_steps = 1  # microbatches per step (lax.scan); batch_size / grad_accum_steps per microbatch
    c.mesh = {"data": -1, "fsdp": 1, "tensor": 1}
    # Logical axis -> mesh axis (videogen/lm/model.py); e.g. FSDP: --config.mesh.fsdp=N (embed -> fsdp already).
    c.logical_axis_rules = tuple(DEFAULT_LOGICAL_AXIS_RULES)
    c.data_threads = 0  # background threads rendering clips (0 = in the train loop)
    # Train on the codes of the first num_clips training clips, encoded once per tokenizer into
    # <tokenizer_workdir>/code_cache/ and reused by every LM on it (videogen/data/code_cache.py); 0 = render and
    # encode every batch. path: an explicit cache file instead.
    c.code_cache = {"num_clips": 0, "path": None}
    c.peak_flops = None  # FLOP/s of the mesh for MFU; None -> "MFU n/a"; "measure" -> timed matmul (CPU)

    c.data = {"kind": "world", "resolution": 32 if tiny else 64, "num_frames": 17, "max_objects": 2}
    # Long videos (videogen/longvideo/continuation.py, experiments/long_video.py): render_frames = 1 + 4m > num_frames
    # renders longer clips and trains on a random window of the model's latent frames in each (set in
    # experiments/long_video.py; None = train on the clips' first num_frames frames only).
    c.data.render_frames = None
    # Continuation training: with probability `prob` an example's first `context_frames` latent frames are
    # given (not masked, not scored), as in a continuation window; `corruption` replaces that fraction of
    # their tokens by random codes ('replace') or [MASK] ('mask', maskgit) against exposure bias. 0 = off.
    c.continuation = {"context_frames": 3, "prob": 0.0, "corruption": 0.0, "corruption_kind": "replace"}
    c.text = {
        "max_length": 32,  # text slots L (BOS ... EOS PAD...); world captions are <= 28 pieces
        "vocab_size": 512,  # sentencepiece target size = the model's text vocabulary
        "num_captions": 5000,  # captions the text tokenizer is trained on (when absent from the workdir)
        "drop_prob": 0.1,  # caption -> all PAD (classifier-free guidance)
    }
    # TransformerConfig fields (videogen/lm/model.py).
    c.model = dict(
        num_layers=4 if tiny else 12,  # transformer blocks
        d_model=128 if tiny else 512,  # residual width
        num_heads=4 if tiny else 8,  # query heads (head_dim = d_model / num_heads)
        num_kv_heads=4 if tiny else 8,  # key/value heads (< num_heads: grouped-query attention)
        mlp_dim=384 if tiny else 1536,  # SwiGLU hidden width
        head="bitgroups",  # video head: 'bitgroups' (LFQ bits in groups) or 'softmax' (one joint softmax)
        group_bits=None,  # bits per group of the bit-group head; None -> half the code's bits
        dtype="float32" if tiny else "bfloat16",  # activation dtype (params stay float32)
        remat="none",  # activation checkpointing per block: 'none' | 'dots' | 'full'
        qk_norm=True,  # RMSNorm on queries and keys (stable attention logits at high lr)
        text_loss=False,  # a text head trained on next-token prediction of the captions (text_loss_weight)
        codebook_size=None,  # from the tokenizer; set only to assert it
        video_grid=None,  # (t, h, w) latent grid, from the tokenizer; set only to assert it
        video_pos_emb=True,  # learned (t, h, w) embeddings added to video inputs
        rope_video="grid",  # rotary on video: 'grid' (per-axis ladders sized to the grid) | 'shared'
        text_bidirectional=False,  # the caption attends to all of itself (prefix-LM)
        scan_layers=False,  # blocks stacked on a 'layers' axis, run by nnx.scan (one compiled block; deep models)
    )
    # Weight of the caption's next-token loss against the video NLL, when model.text_loss (train/text_loss).
    c.text_loss_weight = 0.1
    # Loss weight 1 + motion_weight on video tokens whose code differs from the same position one latent
    # frame earlier (training only; eval losses stay unweighted). 0 = off.
    c.motion_weight = 0.0
    # no_prefix_prob (objective maskgit_frames): extra probability that an example has no clean prefix, so
    # frame 0 (drawn from nothing when sampling) is trained; 0 = prefix uniform over 0..t-1 frames
    # (BENCHMARKS.md "Frame-causal MaskGIT" for the measurement behind 0.5).
    # clean_context (maskgit_frames): rows [text | clean video | masked video], every frame masked and scored
    # with the clean frames before it as context, as when sampled (no_prefix_prob then unused); N more tokens.
    # prefix_weights: relative weights of a clean prefix of 0..t-1 latent frames (replaces the uniform draw
    # and no_prefix_prob), e.g. more rows where frame 1 -- each object's first move -- follows a clean frame 0.
    c.maskgit = {"schedule": "cosine", "no_prefix_prob": 0.5, "clean_context": False, "prefix_weights": ()}
    # AdamW with warmup then cosine decay to min_lr_ratio * lr (tiny lr: the sweep in BENCHMARKS.md).
    c.optim = {
        "lr": 3e-3 if tiny else 3e-4,  # peak learning rate
        "warmup_steps": 40 if tiny else 2000,  # linear warmup from 0
        "min_lr_ratio": 0.1,  # cosine decay ends at this fraction of lr
        "b1": 0.9,  # Adam first-moment decay
        "b2": 0.95,  # Adam second-moment decay
        "weight_decay": 0.05,  # decoupled, on matrices only (not norms or biases)
        "grad_clip": 1.0,  # global gradient-norm clip
    }
    c.ema_decay = 0.99 if tiny else 0.999  # EMA of the weights (sampling and eval use the EMA)

    c.eval = {
        "split": "test",  # world split the eval loss and samples use (train / test / heldout)
        "every": 500 if tiny else 5000,  # steps between evals (eval loss, samples, judge); 0 = never
        "num_batches": 4,  # eval-loss batches
        "data": {"num_clips": 256},  # entries replacing c.data's for the eval source
        # Score the sample.num_prompts eval samples with the world's judge (eval/judge_all_correct and per
        # attribute; built-in world data only), ~0.1 s per clip.
        "judge": True,
    }
    c.sample = {
        "num_prompts": 8,  # samples drawn at each eval (and judged)
        "num_steps": 12,  # MaskGIT decoding steps (per latent frame for maskgit_frames)
        "guidance": 3.0,  # classifier-free guidance scale (1 = none)
        "temperature": 1.0,  # sampling temperature
        "top_k": None,  # keep the k most likely codes (None = all)
        "top_p": None,  # nucleus sampling mass (None = off)
        "seed": 0,  # sampling seed (fixed: the same prompts and noise at every eval)
    }

    if variant == "1b":  # the cluster size: ~1.1B params, FSDP over every device, GQA, remat
        c.model.update(
            num_layers=24,
            d_model=2048,
            num_heads=16,
            num_kv_heads=8,
            mlp_dim=5632,
            remat="dots",
            scan_layers=True,
        )
        c.mesh = {"data": 1, "fsdp": -1, "tensor": 1}
        c.batch_size = 256
        c.steps = 100_000
        c.optim.update(lr=2e-4, warmup_steps=5000)
        c.eval.every = c.ckpt_every = 10_000

    c.log_every = 50 if tiny else 100  # steps between metric lines (metrics.jsonl, TensorBoard)
    c.ckpt_every = 500 if tiny else 5000  # steps between checkpoints (atomic; resumes are exact)
    c.max_to_keep = 3  # checkpoints kept
    c.quiet = False  # True: no progress bar
    return c
