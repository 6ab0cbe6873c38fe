"""The text-to-video LM as a library: a config's model, a trained workdir loaded back, clips sampled from prompts.

    model, tokenizer_bundle, text_tokenizer, config = load_lm(workdir)
    videos = sample(model, tokenizer_bundle, text_tokenizer, ["a red circle moving left"],
                    objective=config.objective, guidance=3.0, seed=0)      # uint8 [N, T, H, W, 3]
    clips = predict_frames(model, tokenizer_bundle, text_tokenizer, real_clips, captions,
                           context_frames=5, objective=config.objective)   # the rest of each clip

Both run one jitted sampler per option set; it and the continuation windows (videogen/longvideo/continuation.py)
decode with :func:`maskgit_video_codes` (MaskGIT, frame-causal MaskGIT) and :func:`next_token_codes`
(KV-cached next-token decoding after a prefix), with classifier-free guidance over ``[cond; null]``.

The objectives (:data:`OBJECTIVES`) and how each is trained are described in videogen/lm/objectives.py; the
trainer (videogen/train.py) builds on this module; everything that uses a trained LM (sampling, continuation,
evaluation, the shipped model) imports this module, never the trainer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from tokenizer.core import (
    INIT_KEY_IMPL,
    checkpoint_manager,
    decode_indices,
    encode_video,
    latest_step,
    load_tokenizer,
)
from videogen import checks
from videogen.data.text import MODEL_FILENAME, PAD_ID, TextTokenizer
from videogen.errors import UsageError
from videogen.lm import sampling
from videogen.lm.model import (
    Transformer,
    TransformerConfig,
    flops_per_token,
    make_positions,
    video_logits,
    video_token_ids,
    weight_decay_mask,
)
from videogen.training import checkpointing, optim
from videogen.training.config import to_plain

__all__ = [
    "ATTENTION_MODES",
    "OBJECTIVES",
    "abstract_model",
    "attention_is_causal",
    "lm_throughput",
    "check_objective",
    "check_text_tokenizer",
    "clean_context_len",
    "code_logits",
    "factorised",
    "for_decoding",
    "load_lm",
    "load_tokenizer_for_lm",
    "make_optimizer",
    "maskgit_video_codes",
    "next_token_codes",
    "predict_frames",
    "prompt_pairs",
    "sample",
    "train_seq_len",
    "transformer_config",
]


# next_token: causal, KV-cached AR sampling. maskgit: bidirectional over the video, all frames decoded together.
# maskgit_frames: causal across latent frames and bidirectional within one (block-causal), trained on masks
# drawn per frame behind a clean prefix of frames; sampled frame after frame, each in MaskGIT steps.
OBJECTIVES = ("next_token", "maskgit", "maskgit_frames")
# The attention mode (videogen.lm.model) each objective trains and samples with.
ATTENTION_MODES = {
    "next_token": "causal",
    "maskgit": "prefix_bidirectional_video",
    "maskgit_frames": "block_causal",
}


def check_objective(objective: str) -> str:
    """``objective`` if it is one of :data:`OBJECTIVES`, else a UsageError naming them."""
    if objective not in OBJECTIVES:
        raise UsageError(f"objective={objective!r}: must be one of {OBJECTIVES}.")
    return objective


def train_seq_len(config, tcfg) -> int:
    """Tokens per training row: ``[text | video]`` (next-token drops the last video token as input), or
    ``[text | clean frames 0..t-2 | masked video]`` for ``maskgit_frames`` with ``maskgit.clean_context``."""
    if config.objective == "next_token":
        return tcfg.max_seq_len - 1
    m = config.get("maskgit", None) or {}
    if config.objective == "maskgit_frames" and m.get("clean_context", False):
        return clean_context_len(tcfg)
    return tcfg.max_seq_len


def clean_context_len(tcfg) -> int:
    """Tokens of a clean-context row: ``L + N + (t - 1) h w``."""
    _, h, w = tcfg.video_grid
    return tcfg.max_text_len + 2 * tcfg.num_video_tokens - h * w


def attention_is_causal(objective: str) -> bool:
    """Whether the objective's attention is (block-)causal: its FLOPs count half the attention
    (:func:`videogen.lm.model.flops_per_token`)."""
    return ATTENTION_MODES[check_objective(objective)] in ("causal", "block_causal")


# ============================================================================================
# Config -> model
# ============================================================================================


def transformer_config(config, codebook_size: int, grid: tuple[int, int, int]) -> TransformerConfig:
    """``config.model`` + the tokenizer's codebook/grid + the text settings -> TransformerConfig.

    ``model.codebook_size`` / ``model.video_grid`` may be left None (filled in) or set, in which case
    they must match the tokenizer. ``model.group_bits=None`` picks ``K/2`` bits (``K`` if odd).
    """
    kw = to_plain(config.model)
    for name, want in (("codebook_size", int(codebook_size)), ("video_grid", tuple(int(g) for g in grid))):
        have = kw.get(name)
        if have is not None and (tuple(have) if isinstance(have, (list, tuple)) else have) != want:
            raise UsageError(
                f"model.{name}={have} is incompatible with the tokenizer in "
                f"{config.tokenizer_workdir!r}, which gives {name}={want} for this data; leave "
                f"model.{name}=None to take it from the tokenizer."
            )
        kw[name] = want
    kw["text_vocab_size"] = int(config.text.vocab_size)
    kw["max_text_len"] = int(config.text.max_length)
    if kw.get("head", "bitgroups") == "bitgroups" and kw.get("group_bits") is None:
        k = max(1, (int(codebook_size) - 1).bit_length())
        kw["group_bits"] = k // 2 if k % 2 == 0 else k
    elif kw.get("group_bits") is None:
        kw.pop("group_bits", None)
    return TransformerConfig(**kw)


def abstract_model(tcfg: TransformerConfig):
    """``(graphdef, abstract params, abstract rest)``: shapes and logical names, nothing allocated."""
    rngs = lambda: nnx.Rngs(jax.random.key(0, impl=INIT_KEY_IMPL))  # noqa: E731
    return nnx.split(nnx.eval_shape(lambda: Transformer(tcfg, rngs=rngs())), nnx.Param, ...)


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Clip by global norm -> AdamW at lr 1 (decay on matrices only); warmup + cosine schedule applied
    by the step from a host-side value (see videogen.training.optim.make_optimizer). Stacked (``scan_layers``)
    blocks' norm scales are not decayed either (:func:`videogen.lm.model.weight_decay_mask`)."""
    return optim.make_optimizer(config, decay_mask=weight_decay_mask)


# ============================================================================================
# Sampling: the guided decoders (MaskGIT, next-token) behind text-to-video, frame prediction and the
# continuation windows (videogen/longvideo/continuation.py)
# ============================================================================================


_SAMPLERS: dict[tuple, Any] = {}


def code_logits(tcfg: TransformerConfig, logits):
    """Head logits -> the log-probs the samplers draw codes from: ``[..., C]`` for the softmax head;
    ``[..., G, 2^g]`` per bit group for the bit-group head (sampled with ``factorised=True``: each group
    drawn on its own, exactly the model's product distribution, never a 2^K-wide array per token)."""
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


def factorised(tcfg: TransformerConfig) -> bool:
    """Whether the head draws codes per bit group (``sampling.sample_logits(..., factorised=True)``)."""
    return tcfg.head == "bitgroups"


def for_decoding(model: Transformer) -> Transformer:
    """``model`` with ``remat='none'`` and the same weights: decoding has no backward pass, and
    ``nnx.remat`` cannot run inside the decode loops."""
    tcfg = model.config
    if tcfg.remat == "none":
        return model
    return nnx.merge(
        abstract_model(dataclasses.replace(tcfg, remat="none"))[0], *nnx.split(model, nnx.Param, ...)[1:]
    )


def check_text_tokenizer(text_tokenizer: TextTokenizer, tcfg: TransformerConfig) -> None:
    """A ValueError unless the text tokenizer pads to the model's text length (the one saved with the LM)."""
    if text_tokenizer.max_length != tcfg.max_text_len:
        raise ValueError(
            f"text tokenizer max_length={text_tokenizer.max_length} != model max_text_len="
            f"{tcfg.max_text_len}: use the text tokenizer saved with this LM."
        )


def prompt_pairs(text_tokenizer: TextTokenizer, prompts: Sequence[str | None]) -> jax.Array:
    """``[2N, L]`` int32 ``[prompts; null text]``: the doubled batch of classifier-free guidance (a ``None``
    prompt is the null text, all PAD, itself)."""
    L = text_tokenizer.max_length
    cond = np.stack(
        [text_tokenizer.encode(p)[0] if p is not None else np.full(L, PAD_ID, np.int32) for p in prompts]
    ).astype(np.int32)
    return jnp.asarray(np.concatenate([cond, np.full_like(cond, PAD_ID)], axis=0))


def maskgit_video_codes(
    model: Transformer,
    objective: str,
    text2: jax.Array,
    init_codes: jax.Array,
    *,
    guidance,
    rng: jax.Array,
    num_steps: int,
    kv_cache: bool = True,
    **decode_kwargs,
) -> jax.Array:
    """MaskGIT decoding of video codes the way ``objective`` was trained, with classifier-free guidance.

    ``text2`` [2B, L] = ``[cond; null]`` text; ``init_codes`` [B, n] codes, ``codebook_size`` where
    unknown (given codes are kept). ``maskgit``: all frames together (:func:`videogen.lm.sampling.maskgit_decode`),
    ``num_steps`` passes over the whole sequence. ``maskgit_frames``: frame after frame, ``num_steps`` per
    frame; with ``kv_cache`` (default) the text is prefilled once and each call runs one frame against the
    cached earlier frames (:func:`videogen.lm.sampling.maskgit_decode_frames_cached`), otherwise every call
    runs the whole sequence (:func:`videogen.lm.sampling.maskgit_decode_frames`; same samples, the reference
    it is tested against). ``decode_kwargs``: schedule, temperature, top_k, top_p. Returns codes [B, n].
    """
    tcfg = model.config
    objective = check_objective(objective)
    L, C = tcfg.max_text_len, tcfg.codebook_size
    b2 = text2.shape[0]
    positions = make_positions(tcfg, b2)  # [2B, L + n, 3]
    mode = ATTENTION_MODES[objective]
    kwargs = dict(rng=rng, mask_id=C, num_steps=num_steps, factorised=factorised(tcfg), **decode_kwargs)

    def video_ids(codes2):
        return jnp.where(codes2 == C, tcfg.mask_token_id, video_token_ids(tcfg, codes2))

    def logits_fn_2b(codes2):  # [2B, n] -> the whole sequence's video log-probs
        logits, _ = model(jnp.concatenate([text2, video_ids(codes2)], axis=1), positions, mode=mode)
        return code_logits(tcfg, video_logits(logits)[:, L:])

    if objective == "maskgit":
        return sampling.maskgit_decode(sampling.guided(logits_fn_2b, guidance), init_codes, **kwargs).tokens
    _, h, w = tcfg.video_grid
    p = h * w
    if not kv_cache:
        return sampling.maskgit_decode_frames(
            sampling.guided(logits_fn_2b, guidance), init_codes, tokens_per_frame=p, **kwargs
        ).tokens
    cache = model.init_cache(b2, L + init_codes.shape[1])
    _, cache = model(text2, positions[:, :L], mode=mode, cache=cache, cache_index=0)

    def frame_step_2b(cache, frame2, f):  # frame2 [2B, P] -> (its log-probs, cache with frame f written)
        start = L + f * p
        pos = jax.lax.dynamic_slice_in_dim(positions, start, p, axis=1)
        logits, cache = model(video_ids(frame2), pos, mode=mode, cache=cache, cache_index=start)
        return code_logits(tcfg, video_logits(logits)), cache

    state, _ = sampling.maskgit_decode_frames_cached(
        sampling.guided_step(frame_step_2b, guidance), cache, init_codes, tokens_per_frame=p, **kwargs
    )
    return state.tokens


def next_token_codes(
    model: Transformer,
    text2: jax.Array,
    num_tokens: int,
    *,
    guidance,
    rng: jax.Array,
    temperature=1.0,
    top_k=None,
    top_p=None,
    context: jax.Array | None = None,
    context_len=0,
    first: jax.Array | None = None,
    forced: jax.Array | None = None,
    active=None,
) -> jax.Array:
    """Guided, KV-cached next-token decoding of ``num_tokens`` video codes after a prefix -> codes
    ``[B, num_tokens]``: text-to-video, frame prediction and the continuation windows all decode with it.

    ``text2`` [2B, L] = ``[cond; null]`` text. The doubled batch shares one cache: ``[text | context]`` is
    prefilled in one call, then one cached step per code (:func:`videogen.lm.sampling.ar_decode`), each step's
    two halves combined by classifier-free guidance (:func:`videogen.lm.sampling.guided_step`) and the code
    drawn fed to both. ``context`` [B, m] (optional): codes of video tokens ``0 .. m - 1`` (a window's
    context frames), of which the first ``context_len`` (may be traced) are given; the other slots stay
    empty (token -1, masked out as keys), so one program serves every context length. New code ``j`` is
    video token ``context_len + j`` (its position; cache slot ``L + m + j``).

    Code 0 is drawn from the prefill's logits at the last given prefix token, or is ``first`` [B] when given
    (frame prediction: the clip's first code; the rng then goes to the other codes alone). ``forced``
    [B, num_tokens - 1]: codes ``1 ..`` taken from it where ``>= 0`` (teacher-forced through the cache), the
    rest drawn. ``active`` (may be traced): only the first ``active`` codes are wanted; the steps after
    them skip the model call (their codes are meaningless). ``temperature`` / ``top_k`` / ``top_p`` as in
    :func:`videogen.lm.sampling.sample_logits`.
    """
    tcfg = model.config
    L = tcfg.max_text_len
    _, h, w = tcfg.video_grid
    P = h * w
    b2 = text2.shape[0]
    b = b2 // 2
    m = 0 if context is None else context.shape[1]
    mode = ATTENTION_MODES["next_token"]
    fact = factorised(tcfg)
    tokens = text2
    if m:
        ctx2 = jnp.concatenate([context, context], axis=0)
        ctx_tok = jnp.where(jnp.arange(m)[None] < context_len, video_token_ids(tcfg, ctx2), -1)
        tokens = jnp.concatenate([text2, ctx_tok], axis=1)
    positions = make_positions(tcfg, b2, num_frames=-(-m // P))[:, : L + m]
    cache = model.init_cache(b2, L + m + num_tokens)
    logits, cache = model(tokens, positions, mode=mode, cache=cache, cache_index=0)
    last = jax.lax.dynamic_index_in_dim(video_logits(logits), L + context_len - 1, axis=1, keepdims=False)
    lp = code_logits(tcfg, last)
    if first is None:
        k0, rng = jax.random.split(rng)
        guided = sampling.cfg_logits(lp[:b], lp[b:], guidance)
        first = sampling.sample_logits(k0, guided, temperature, top_k, top_p, factorised=fact)
    start = L + m

    def step_fn_2b(cache, codes_b, index):  # feeds new code index - start: video token context_len + that
        i = context_len + index - start
        pos = jnp.stack([L + i // P, L + i % P // w, L + i % w]).astype(jnp.int32)
        tok = video_token_ids(tcfg, codes_b)[:, None]
        logits, cache = model(
            tok, jnp.broadcast_to(pos, (b2, 1, 3)), mode=mode, cache=cache, cache_index=index
        )
        return code_logits(tcfg, video_logits(logits)[:, 0]), cache

    step = step_fn_2b
    if active is not None:

        def skip_step(cache, codes_b, index):  # past the wanted codes: no model call
            return jnp.zeros((b2,) + lp.shape[1:], jnp.float32), cache

        def step(cache, codes_b, index):
            return jax.lax.cond(index - start < active - 1, step_fn_2b, skip_step, cache, codes_b, index)

    rest, _ = sampling.ar_decode(
        sampling.guided_step(step, guidance),
        cache,
        first_token=first,
        rng=rng,
        num_tokens=num_tokens - 1,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        forced_tokens=forced,
        start_index=start,
        factorised=fact,
    )
    return jnp.concatenate([jnp.asarray(first, jnp.int32)[:, None], rest], axis=1)


def _sampler(
    graphdef, tcfg, objective, num_steps, temperature, top_k, schedule, top_p=None, kv_cache=True, known=0
):
    """Jitted ``(state, text2 [2N, L], rng, guidance, codes=None) -> codes [N, n]``, one per option set:
    ``text2 = [cond; null]`` text; ``known`` > 0: the first ``known`` of ``codes`` [N, n] are given and kept
    (MaskGIT never re-masks them; next-token decoding teacher-forces them through the cache), the rest
    drawn (frame prediction); ``known = 0``: all drawn (text-to-video)."""
    key = (graphdef, tcfg, objective, num_steps, temperature, top_k, schedule, top_p, kv_cache, known)
    if key in _SAMPLERS:
        return _SAMPLERS[key]
    n, c = tcfg.num_video_tokens, tcfg.codebook_size

    def run(state, text2, rng, guidance, codes=None):
        model = nnx.merge(graphdef, state)
        given = jnp.arange(n)[None] < known
        options = dict(guidance=guidance, rng=rng, temperature=temperature, top_k=top_k, top_p=top_p)
        if objective != "next_token":
            init = jnp.where(given, codes, c) if known else jnp.full((text2.shape[0] // 2, n), c, jnp.int32)
            return maskgit_video_codes(
                model,
                objective,
                text2,
                init,
                num_steps=num_steps,
                kv_cache=kv_cache,
                schedule=schedule,
                **options,
            )
        if known:  # teacher-forced through the cache, the first one fed as the first step's token
            options.update(first=codes[:, 0], forced=jnp.where(given[:, 1:], codes[:, 1:], -1))
        return next_token_codes(model, text2, n, **options)

    fn = jax.jit(run)
    _SAMPLERS[key] = fn
    return fn


def sample(
    model: Transformer,
    tokenizer_bundle,
    text_tokenizer: TextTokenizer,
    prompts: Sequence[str | None],
    *,
    objective: str,
    num_steps: int = 12,
    guidance: float = 3.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    schedule: str = "cosine",
    kv_cache: bool = True,
    given_codes: np.ndarray | None = None,
) -> np.ndarray:
    """Generates one clip per prompt -> uint8 ``[N, T, H, W, 3]``.

    ``objective='next_token'``: KV-cached autoregressive decoding (:func:`next_token_codes`) of the
    ``t*h*w`` tokens after a text prefill; ``'maskgit'``: ``num_steps`` MaskGIT steps;
    ``'maskgit_frames'``: ``num_steps`` MaskGIT steps per latent frame, frame after frame, each step
    running that frame against a KV cache of the earlier ones (``kv_cache=False``: the whole sequence
    every step; the same samples, slower). All
    with classifier-free guidance from one pass over the doubled batch ``[prompts; null text]``:
    ``guidance`` 1 = conditional, 0 = unconditional (a ``None`` prompt is the null text itself),
    > 1 = extrapolated. ``temperature`` / ``top_k`` / ``top_p`` as in :func:`videogen.lm.sampling.sample_logits`
    (per bit group for the bit-group head). ``tokenizer_bundle``: ``(autoencoder, quantizer, ...)`` from
    :func:`tokenizer.api.load_tokenizer`. A fixed ``seed`` reproduces the sample.

    ``given_codes`` ``[N, k]`` (frame prediction, :func:`predict_frames`): each clip's first ``k`` codes
    are given and kept -- MaskGIT never re-masks them, next-token decoding teacher-forces them through the
    cache -- and only the rest is generated.
    """
    check_objective(objective)
    if top_p is not None and not 0 < float(top_p) <= 1:
        raise ValueError(f"top_p={top_p}: nucleus sampling needs 0 < top_p <= 1 (1 or None = off).")
    model = for_decoding(model)
    tcfg = model.config
    check_text_tokenizer(text_tokenizer, tcfg)
    known = 0 if given_codes is None else int(given_codes.shape[1])
    if not 0 <= known < tcfg.num_video_tokens:
        raise ValueError(
            f"given_codes {given_codes.shape}: give fewer than the clip's {tcfg.num_video_tokens} codes."
        )
    graphdef, state = nnx.split(model)
    fn = _sampler(
        graphdef,
        tcfg,
        objective,
        int(num_steps),
        float(temperature),
        None if top_k is None else int(top_k),
        schedule,
        None if top_p is None else float(top_p),
        bool(kv_cache),
        known,
    )
    args = [state, prompt_pairs(text_tokenizer, prompts), jax.random.key(int(seed)), jnp.float32(guidance)]
    if known:  # [N, n], the codes after the given ones unread
        codes = np.zeros((len(prompts), tcfg.num_video_tokens), np.int32)
        codes[:, :known] = given_codes
        args.append(jnp.asarray(codes))
    codes = fn(*args).reshape((len(prompts),) + tcfg.video_grid)
    return np.asarray(decode_indices(tokenizer_bundle[0], tokenizer_bundle[1], codes))


def predict_frames(
    model: Transformer,
    tokenizer_bundle,
    text_tokenizer: TextTokenizer,
    videos: np.ndarray,
    prompts: Sequence[str | None],
    *,
    context_frames: int,
    **options,
) -> np.ndarray:
    """Frame prediction (the K600 / BAIR protocol of ``videogen eval``): keeps the first ``context_frames``
    frames of each real clip (as tokens) and generates the rest of the clip: :func:`sample` with the
    context's codes given. ``options``: :func:`sample`'s (``objective`` required).

    ``videos`` uint8 ``[N, T, H, W, 3]`` of the model's clip shape; returns the decoded uint8 clips (the
    context frames as the tokenizer reconstructs them). With a causal tokenizer of temporal compression
    ``c``, ``1 + c*k`` frames are exactly ``1 + k`` latent frames. Longer videos, or continuations that keep
    the given pixels: :meth:`videogen.longvideo.continuation.Continuation.continue_video`.
    """
    ae, quantizer = tokenizer_bundle[0], tokenizer_bundle[1]
    ct = ae.config.temporal_compression
    t_lat, h, w = model.config.video_grid
    if context_frames < 1 or (context_frames - 1) % ct:
        raise UsageError(
            f"--context-frames={context_frames} does not fall on a latent frame boundary of the "
            f"tokenizer (temporal compression {ct}): use 1 + {ct}k frames, e.g. 1 (BAIR) or "
            f"{1 + ct} (K600 uses 5)."
        )
    known_t = 1 + (context_frames - 1) // ct
    if known_t >= t_lat:
        raise UsageError(
            f"--context-frames={context_frames} covers all {t_lat} latent frames of the clip: "
            "nothing is left to predict; use fewer context frames."
        )
    codes = np.asarray(encode_video(ae, quantizer, videos)).reshape(len(videos), -1).astype(np.int32)
    given = codes[:, : known_t * h * w]
    return sample(model, tokenizer_bundle, text_tokenizer, prompts, given_codes=given, **options)


# ============================================================================================
# Loading a trained LM (and the tokenizer it reads)
# ============================================================================================


def load_tokenizer_for_lm(tokenizer_workdir, *, mesh=None):
    """``(autoencoder, quantizer, tokenizer_config)`` (EMA weights), with errors that say what to do."""
    if not tokenizer_workdir:
        raise ValueError(
            "config.tokenizer_workdir is required: the workdir of a trained video tokenizer, e.g. "
            "--config.tokenizer_workdir=runs/tok_tiny (train one with `python -m tokenizer.train "
            "--config experiments/tokenizer_world.py:tiny --workdir runs/tok_tiny`)."
        )
    wd = Path(tokenizer_workdir)
    if not (wd / "config.json").is_file():
        raise FileNotFoundError(
            f"tokenizer_workdir {str(wd)!r} is not a tokenizer workdir (no config.json"
            f"{'' if wd.is_dir() else '; the folder does not exist'}). Train one with "
            f"`python -m tokenizer.train --config experiments/tokenizer_world.py:tiny "
            f"--workdir {wd}` or point --config.tokenizer_workdir at an existing one."
        )
    if latest_step(wd) is None:
        raise FileNotFoundError(
            f"tokenizer_workdir {str(wd)!r} has no checkpoint in {wd / 'checkpoints'}: "
            "its training has not saved yet."
        )
    return load_tokenizer(wd, mesh=mesh)


def load_lm(workdir: str | os.PathLike, *, step: int | None = None, ema: bool = True):
    """``(model, (autoencoder, quantizer, tokenizer_config), text_tokenizer, config)`` from a workdir
    (EMA weights by default), on the default device."""
    workdir = Path(workdir)
    cfg_path = workdir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{cfg_path} not found: is {workdir} an LM workdir (python -m videogen.train)?"
        )
    config = ml_collections.ConfigDict(json.loads(cfg_path.read_text()))
    tok_bundle = load_tokenizer_for_lm(checks.saved_tokenizer_workdir(config.tokenizer_workdir, workdir))
    tcfg = transformer_config(config, config.model.codebook_size, config.model.video_grid)
    text_tok = TextTokenizer(workdir / MODEL_FILENAME, int(config.text.max_length))
    graphdef, abs_params, rest = abstract_model(tcfg)
    dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abs_pure = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev), nnx.as_pure(abs_params)
    )

    def load(step: int):  # restored and checked against the fingerprints saved with it
        if ema:
            model = mngr.restore(
                step, args=ocp.args.Composite(model=ocp.args.StandardRestore({"ema": abs_pure}))
            ).model
            checkpointing.verify_restored(mngr, step, "model", model)
            return model["ema"]
        tx, _ = make_optimizer(config)
        abs_opt = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev), jax.eval_shape(tx.init, abs_pure)
        )
        item = {
            "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=dev),
            "params": abs_pure,
            "opt_state": abs_opt,
        }
        train = mngr.restore(step, args=ocp.args.Composite(train=ocp.args.StandardRestore(item))).train
        checkpointing.verify_restored(mngr, step, "train", train)
        return train["params"]

    with checkpoint_manager(workdir, read_only=True) as mngr:
        _, params = checkpointing.load_step(mngr, step, load, what="lm")
    return nnx.merge(graphdef, params, nnx.as_pure(rest)), tok_bundle, text_tok, config


def lm_throughput(config, tcfg, n_steps: int, dt: float, peak: float | None) -> dict:
    """Steps, tokens and TFLOP/s (and MFU against ``peak``) of ``n_steps`` LM train steps taking ``dt`` s."""
    seq_len = train_seq_len(config, tcfg)
    tokens = n_steps * int(config.batch_size) * seq_len
    flops = flops_per_token(tcfg, seq_len, causal=attention_is_causal(config.objective)) * tokens
    m = {"steps_per_sec": n_steps / dt, "tokens_per_sec": tokens / dt, "tflops_per_sec": flops / dt / 1e12}
    if peak:
        m["mfu"] = flops / dt / peak
    return m
