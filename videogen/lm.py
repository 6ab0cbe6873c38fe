"""The text-to-video LM as a library: a config's model, a trained workdir loaded back, clips sampled from prompts.

    model, tokenizer_bundle, text_tokenizer, config = load_lm(workdir)
    videos = sample(model, tokenizer_bundle, text_tokenizer, ["a red circle moving left"],
                    objective=config.objective, guidance=3.0, seed=0)      # uint8 [N, T, H, W, 3]

The objectives (:data:`OBJECTIVES`) and how each is trained are described in videogen/objectives.py; the
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

from tokenizer.core import INIT_KEY_IMPL, checkpoint_manager, decode_indices, latest_step, load_tokenizer
from videogen import checkpointing, checks, optim, sampling
from videogen.config import to_plain
from videogen.data.text import MODEL_FILENAME, PAD_ID, TextTokenizer
from videogen.errors import UsageError
from videogen.model import (
    Transformer,
    TransformerConfig,
    make_positions,
    video_logits,
    video_token_ids,
    weight_decay_mask,
)

__all__ = [
    "ATTENTION_MODES",
    "OBJECTIVES",
    "abstract_model",
    "attention_is_causal",
    "check_objective",
    "code_logits",
    "factorised",
    "load_lm",
    "load_tokenizer_for_lm",
    "make_optimizer",
    "maskgit_video_codes",
    "sample",
    "transformer_config",
]


# next_token: causal, KV-cached AR sampling. maskgit: bidirectional over the video, all frames decoded together.
# maskgit_frames: causal across latent frames and bidirectional within one (block-causal), trained on masks
# drawn per frame behind a clean prefix of frames; sampled frame after frame, each in MaskGIT steps.
OBJECTIVES = ("next_token", "maskgit", "maskgit_frames")
# The attention mode (videogen.model) each objective trains and samples with.
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


def attention_is_causal(objective: str) -> bool:
    """Whether the objective's attention is (block-)causal: its FLOPs count half the attention
    (:func:`videogen.model.flops_per_token`)."""
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
    by the step from a host-side value (see videogen.optim.make_optimizer). Stacked (``scan_layers``)
    blocks' norm scales are not decayed either (:func:`videogen.model.weight_decay_mask`)."""
    return optim.make_optimizer(config, decay_mask=weight_decay_mask)


# ============================================================================================
# Sampling
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
    unknown (given codes are kept). ``maskgit``: all frames together (:func:`videogen.sampling.maskgit_decode`),
    ``num_steps`` passes over the whole sequence. ``maskgit_frames``: frame after frame, ``num_steps`` per
    frame; with ``kv_cache`` (default) the text is prefilled once and each call runs one frame against the
    cached earlier frames (:func:`videogen.sampling.maskgit_decode_frames_cached`), otherwise every call
    runs the whole sequence (:func:`videogen.sampling.maskgit_decode_frames`; same samples, the reference
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


def _sampler(graphdef, tcfg, objective, num_steps, temperature, top_k, schedule, top_p=None, kv_cache=True):
    key = (graphdef, tcfg, objective, num_steps, temperature, top_k, schedule, top_p, kv_cache)
    if key in _SAMPLERS:
        return _SAMPLERS[key]
    L, n, c = tcfg.max_text_len, tcfg.num_video_tokens, tcfg.codebook_size
    mode = ATTENTION_MODES[objective]

    def run(state, text2, rng, guidance):
        """text2 [2N, L] = [cond; null] -> codes [N, n]."""
        model = nnx.merge(graphdef, state)
        b2 = text2.shape[0]
        if objective != "next_token":
            init = jnp.full((b2 // 2, n), c, jnp.int32)
            return maskgit_video_codes(
                model,
                objective,
                text2,
                init,
                guidance=guidance,
                rng=rng,
                num_steps=num_steps,
                kv_cache=kv_cache,
                schedule=schedule,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
            )
        positions = make_positions(tcfg, b2)
        # next_token: prefill the text, sample video token 0 from the last text slot, then one cached step
        # per token (the fed token is the same for both halves, as guided_step requires).
        cache = model.init_cache(b2, L + n)
        logits, cache = model(text2, positions[:, :L], mode=mode, cache=cache, cache_index=0)
        logits = video_logits(logits)
        lp = code_logits(tcfg, logits[:, L - 1])
        k0, rng = jax.random.split(rng)
        cond, uncond = lp[: b2 // 2], lp[b2 // 2 :]
        first = sampling.sample_logits(
            k0,
            sampling.cfg_logits(cond, uncond, guidance),
            temperature,
            top_k,
            top_p,
            factorised=factorised(tcfg),
        )
        pos_table = positions[0]  # [L + n, 3]

        def step_fn_2b(cache, codes_b, index):
            tok = video_token_ids(tcfg, codes_b)[:, None]
            pos = jnp.broadcast_to(jax.lax.dynamic_slice_in_dim(pos_table, index, 1)[None], (b2, 1, 3))
            logits, cache = model(tok, pos, mode=mode, cache=cache, cache_index=index)
            logits = video_logits(logits)
            return code_logits(tcfg, logits[:, 0]), cache

        rest_codes, _ = sampling.ar_decode(
            sampling.guided_step(step_fn_2b, guidance),
            cache,
            first_token=first,
            rng=rng,
            num_tokens=n - 1,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            start_index=L,
            factorised=factorised(tcfg),
        )
        return jnp.concatenate([first[:, None], rest_codes], axis=1)

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
) -> np.ndarray:
    """Generates one clip per prompt -> uint8 ``[N, T, H, W, 3]``.

    ``objective='next_token'``: KV-cached autoregressive decoding (:func:`videogen.sampling.ar_decode`)
    of the ``t*h*w`` tokens after a text prefill; ``'maskgit'``: ``num_steps`` MaskGIT steps;
    ``'maskgit_frames'``: ``num_steps`` MaskGIT steps per latent frame, frame after frame, each step
    running that frame against a KV cache of the earlier ones (``kv_cache=False``: the whole sequence
    every step; the same samples, slower). All
    with classifier-free guidance from one pass over the doubled batch ``[prompts; null text]``:
    ``guidance`` 1 = conditional, 0 = unconditional (a ``None`` prompt is the null text itself),
    > 1 = extrapolated. ``temperature`` / ``top_k`` / ``top_p`` as in :func:`videogen.sampling.sample_logits`
    (per bit group for the bit-group head). ``tokenizer_bundle``: ``(autoencoder, quantizer, ...)`` from
    :func:`tokenizer.api.load_tokenizer`. A fixed ``seed`` reproduces the sample.
    """
    check_objective(objective)
    if top_p is not None and not 0 < float(top_p) <= 1:
        raise ValueError(f"top_p={top_p}: nucleus sampling needs 0 < top_p <= 1 (1 or None = off).")
    tcfg = model.config
    ae, quantizer = tokenizer_bundle[0], tokenizer_bundle[1]
    if text_tokenizer.max_length != tcfg.max_text_len:
        raise ValueError(
            f"text tokenizer max_length={text_tokenizer.max_length} != model max_text_len="
            f"{tcfg.max_text_len}."
        )
    L = tcfg.max_text_len
    cond = np.stack(
        [text_tokenizer.encode(p)[0] if p is not None else np.full(L, PAD_ID, np.int32) for p in prompts]
    )
    text2 = jnp.asarray(np.concatenate([cond, np.full_like(cond, PAD_ID)], axis=0))
    if tcfg.remat != "none":  # no backward pass here, and nnx.remat cannot run inside the decode loops
        model = nnx.merge(
            abstract_model(dataclasses.replace(tcfg, remat="none"))[0], *nnx.split(model, nnx.Param, ...)[1:]
        )
        tcfg = model.config
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
    )
    codes = fn(state, text2, jax.random.key(int(seed)), jnp.float32(guidance))
    ids = codes.reshape((len(prompts),) + tcfg.video_grid)
    return np.asarray(decode_indices(ae, quantizer, ids))


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
