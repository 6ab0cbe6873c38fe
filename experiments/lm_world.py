"""Text-to-video transformer on tokenizer codes of the built-in moving-shapes world.

Needs a trained tokenizer workdir (experiments/tokenizer_world.py) with the same clip shape.

Variants (``get_config(arg)``):

``tiny`` -- CPU, 32x32x17 clips through the tiny tokenizer (4x4x4: 5x8x8 = 320 video tokens, LFQ 10
bits = 1,024 codes, bit-group head 2 x 32), 32 text tokens, 4 layers d=128, MaskGIT::

    python -m tokenizer.train --config experiments/tokenizer_world.py:tiny --workdir runs/tok_tiny
    python -m videogen.train --config experiments/lm_world.py:tiny --workdir runs/lm_tiny \\
        --config.tokenizer_workdir=runs/tok_tiny

  Expected (measured 2026-12-01, 2-core build VM, 1 CPU device, no other job; on a 600-step tiny
  tokenizer (from ``make demo DEMO_ARGS="--tokenizer-steps 600 --lm-steps 240"``), judge 0.31 on its
  reconstructions): ~1.0 s/step including the tokenizer's
  encode of each batch (~5,800 tokens/s; the step alone ~0.9 s, ``make bench``), compile ~10 s; after
  240 steps (~4.5 min): eval token accuracy 0.41, loss 3.00 (lr 3e-3; 0.36 / 3.49 with the earlier 1e-3).
  Earlier (2026-11-22, lr 1e-3, a 2,400-step tokenizer with judge 0.53, the LM step then 1.03 s): after
  600 steps eval accuracy 0.47, loss 2.76; 32 test prompts judged 0 % fully correct (guidance 3: colour
  found 64 %, shape 32 %, size 68 %, motion 4 %) -- the LM needs far more steps than the CPU demo budget
  gives; 2,000 steps is ~35 min. ``make demo`` trains this variant with ``--config.objective=next_token``
  for 240 steps: on the 9,600-step plain-L2 tokenizer (judge 0.88) 16 test prompts at guidance 3 then find 24 % of
  the objects' colours next-token vs 5 % MaskGIT, whose decoding fills low-accuracy samples with background
  (BENCHMARKS.md "make demo: time vs score").

  Longer, next-token, on the 9,600-step edge-weighted tiny tokenizer (judge 0.945 on its reconstructions)::

    python -m videogen.train --config experiments/lm_world.py:tiny --workdir runs/lm_tiny_nt \
        --config.tokenizer_workdir=runs/tok_tiny --config.objective=next_token --config.steps=4800

  Expected (measured 2026-12-01, same VM): ~1.0 s/step, ~80 min on a quiet VM; eval loss 0.87, token
  accuracy 0.72; test prompts judged fully correct (guidance 3, EMA weights): 6 % at step 1,200, 31 % at
  1,800, ~50 % from 3,000 on; at 4,800 55 % of 64 prompts (colour found 86 %, motion 53 %; guidance 1:
  45 %, 6: 38 %), 20 % of 64 held-out combinations. ``eval/judge_all_correct`` in TensorBoard tracks it
  on the 8 eval prompts (BENCHMARKS.md "Tiny LM trained for 80 minutes"). The same command with
  ``--config.objective=maskgit`` (measured 2026-12-02): eval loss 2.46, masked-token accuracy 0.455; 9 %
  of 32 and 11 % of 64 test prompts fully correct at step 4,800 (guidance 3, 12 decoding steps; 17 % at
  temperature 0.5): colour and shape as next-token's, motion 10 % -- objects drawn but not moved.

default -- one GPU, 64x64x17 clips through the default tokenizer (4x8x8: 5x8x8 = 320 video tokens,
LFQ 12 bits = 4,096 codes, head 2 x 64), 32 text tokens, 12 layers d=512, bf16 compute::

    python -m tokenizer.train --config experiments/tokenizer_world.py --workdir runs/tok_world
    python -m videogen.train --config experiments/lm_world.py --workdir runs/lm_world \\
        --config.tokenizer_workdir=runs/tok_world --config.peak_flops=989e12

  Expected: runtime not yet measured; result not yet measured.

1b -- a cluster: the default's data and tokenizer with a ~1.1B-param transformer (24 layers, d=2048, 16
query / 8 key-value heads, SwiGLU 5632, bf16 compute, remat 'dots'), FSDP over all devices, batch 256::

    videogen plan --config experiments/lm_world.py:1b --config.model.codebook_size=4096 \
        --config.model.video_grid=(5,8,8)        # memory per device for your mesh, before you queue
    python -m videogen.train --config experiments/lm_world.py:1b --workdir runs/lm_1b \
        --config.tokenizer_workdir=runs/tok_world --config.peak_flops=<mesh bf16 FLOP/s>

  Expected: not measured (no accelerator has been lent to this project yet).

``--config.objective=next_token`` switches to autoregressive training / KV-cached sampling;
``--config.objective=maskgit_frames`` to MaskGIT within each latent frame, causal across frames (sampled
frame after frame, ``sample.num_steps`` per frame, each step one frame against a KV cache of the earlier
ones). Tiny on a 2,400-step tokenizer (measured 2026-12-06; 64 test prompts, guidance 3): 14 % fully
correct after a 1,200-step schedule (next-token 6 %, MaskGIT 0 %); 45 % after the 4,800-step one (~90 min;
motion 55 %; MaskGIT 11 %, next-token 55 % on a better tokenizer; BENCHMARKS.md "Frame-causal MaskGIT"). Any
key can be overridden, e.g. ``--config.grad_accum_steps=4 --config.model.remat=dots
--config.mesh.fsdp=2``. ``peak_flops`` (FLOP/s of the whole mesh, for MFU): 989e12 for one H100 SXM
in bf16; on CPU ``--config.peak_flops=measure`` (a timed matmul); None logs "MFU n/a".
"""

import ml_collections

from videogen.model import DEFAULT_LOGICAL_AXIS_RULES


def get_config(arg=None):
    variant = arg or "default"
    if variant not in ("default", "tiny", "1b"):
        raise ValueError(f"unknown variant {variant!r}: use experiments/lm_world.py, ...:tiny or ...:1b")
    tiny = variant == "tiny"
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.tokenizer_workdir = None  # required: --config.tokenizer_workdir=runs/tok_tiny
    c.objective = "maskgit"  # 'maskgit' | 'next_token' | 'maskgit_frames' (fixed for a workdir: resumes refuse another)
    c.steps = 2000 if tiny else 50_000
    c.batch_size = 16 if tiny else 64
    c.grad_accum_steps = 1  # microbatches per step (lax.scan); batch_size / grad_accum_steps per microbatch
    c.mesh = {"data": -1, "fsdp": 1, "tensor": 1}
    # Logical axis -> mesh axis (videogen/model.py); e.g. FSDP: --config.mesh.fsdp=N (embed -> fsdp already).
    c.logical_axis_rules = tuple(DEFAULT_LOGICAL_AXIS_RULES)
    c.data_threads = 0
    # Train on the codes of the first num_clips training clips, encoded once per tokenizer into
    # <tokenizer_workdir>/code_cache/ and reused by every LM on it (videogen/data/code_cache.py); 0 = render and
    # encode every batch. path: an explicit cache file instead.
    c.code_cache = {"num_clips": 0, "path": None}
    c.peak_flops = None  # FLOP/s of the mesh for MFU; None -> "MFU n/a"; "measure" -> timed matmul (CPU)

    c.data = {"kind": "world", "resolution": 32 if tiny else 64, "num_frames": 17, "max_objects": 2}
    # Long videos (videogen/continuation.py, experiments/long_video.py): render_frames = 1 + 4m > num_frames
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
    # TransformerConfig fields; codebook_size / video_grid come from the tokenizer (set them only to assert),
    # group_bits=None -> K/2 for the bit-group head.
    if tiny:
        c.model = dict(num_layers=4, d_model=128, num_heads=4, num_kv_heads=4, mlp_dim=384, head="bitgroups",
                       group_bits=None, dtype="float32", remat="none", qk_norm=True, text_loss=False,
                       codebook_size=None, video_grid=None, video_pos_emb=False, rope_video="shared",
                       text_bidirectional=False)
    else:
        c.model = dict(num_layers=12, d_model=512, num_heads=8, num_kv_heads=8, mlp_dim=1536, head="bitgroups",
                       group_bits=None, dtype="bfloat16", remat="none", qk_norm=True, text_loss=False,
                       codebook_size=None, video_grid=None, video_pos_emb=False, rope_video="shared",
                       text_bidirectional=False)
    # video_pos_emb: learned (t, h, w) embeddings on video inputs; rope_video: 'shared' one rotary ladder or
    # 'grid' per-axis ladders sized to the grid; text_bidirectional: the caption attends to all of itself.
    # model.text_loss=True adds a text head trained on next-token prediction of the captions (PAD not
    # scored), weighted by text_loss_weight against the video NLL; logged as train/text_loss.
    c.text_loss_weight = 0.1
    # Loss weight 1 + motion_weight on video tokens whose code differs from the same position one latent
    # frame earlier (training only; eval losses stay unweighted). 0 = off.
    c.motion_weight = 0.0
    # no_prefix_prob (objective maskgit_frames): extra probability that an example has no clean prefix, so
    # frame 0 (drawn from nothing when sampling) is trained; 0 = prefix uniform over 0..t-1 frames. 0.5 found
    # the prompted colour for 64 % of objects vs 24 % with 0 at 600 tiny steps (BENCHMARKS.md).
    c.maskgit = {"schedule": "cosine", "no_prefix_prob": 0.5}
    # tiny: lr 3e-3 / warmup 40 reached eval loss 3.00 after 240 steps vs 3.49 with 1e-3 / 100 (6e-3: 3.05).
    c.optim = {"lr": 3e-3 if tiny else 3e-4, "warmup_steps": 40 if tiny else 2000, "min_lr_ratio": 0.1,
               "b1": 0.9, "b2": 0.95, "weight_decay": 0.05, "grad_clip": 1.0}
    c.ema_decay = 0.99 if tiny else 0.999

    # judge: score the sample.num_prompts eval samples with the world's judge (eval/judge_all_correct and per
    # attribute; built-in world data only). A curve of what the targets measure, at ~0.1 s per clip.
    c.eval = {"split": "test", "every": 500 if tiny else 5000, "num_batches": 4, "data": {"num_clips": 256},
              "judge": True}
    c.sample = {"num_prompts": 8, "num_steps": 12, "guidance": 3.0, "temperature": 1.0, "top_k": None,
                "top_p": None, "seed": 0}

    if variant == "1b":  # the cluster size: ~1.1B params, FSDP over every device, GQA, remat
        c.model.update(num_layers=24, d_model=2048, num_heads=16, num_kv_heads=8, mlp_dim=5632, remat="dots")
        c.mesh = {"data": 1, "fsdp": -1, "tensor": 1}
        c.batch_size = 256
        c.steps = 100_000
        c.optim.update(lr=2e-4, warmup_steps=5000)
        c.eval.every = c.ckpt_every = 10_000

    c.log_every = 50 if tiny else 100
    c.ckpt_every = 500 if tiny else 5000
    c.max_to_keep = 3
    c.quiet = False
    return c
