"""The LM objectives as pure functions: a batch's input sequences, MaskGIT masks, loss weights and loss terms.
The trainer (videogen/train.py) builds its update and eval steps on them.

* ``next_token`` -- ``[text | video]`` in causal mode; cross-entropy of every video token given all
  tokens before it (the logits at sequence index ``L - 1 + j`` predict video token ``j``).
* ``maskgit`` -- a MaskGIT mask (:func:`videogen.lm.sampling.sample_mask`, cosine schedule) over the
  video tokens, masked tokens replaced by ``[MASK]``, mode ``prefix_bidirectional_video``;
  cross-entropy on the masked positions only.
* ``maskgit_frames`` -- MaskGIT within each latent frame, causal across frames (mode ``block_causal``):
  per example a clean prefix of ``k ~ U{0..t-1}`` frames, then an independent MaskGIT mask per later
  frame (:func:`frame_masks`); cross-entropy on the masked positions. Sampled frame after frame
  (:func:`videogen.lm.sampling.maskgit_decode_frames`), so each frame is drawn after all earlier ones in
  full, as next-token sampling does, in ``t * num_steps`` model calls. With ``maskgit.clean_context``
  the row is ``[text | clean frames 0..t-2 | masked video]`` (:func:`clean_context_mask`): every frame is
  masked and scored, each seeing the clean copies of the frames before it -- exactly the context it has
  when sampled -- at the price of a row ``(t - 1) h w`` tokens longer (Block Diffusion's vectorised
  training; the last frame's clean copy would be context to nothing, so it is left out).

All use ``code_log_prob`` (exact NLL for the softmax head and the factorised bit-group head).
Classifier-free guidance training: with probability ``text.drop_prob`` an example's caption is
replaced by all PAD (the model's learned null text).

Here: :func:`build_sequences` (a batch's ``(tokens, positions, targets, weights)``: caption drop, masks,
temporal windows, continuation examples), :func:`frame_masks`, :func:`motion_emphasis` (extra weight on
tokens that changed since the frame before), :func:`loss_terms` (summed weighted NLL, correct predictions
and text NLL of one forward pass), :func:`text_targets`, and :func:`mask_kwargs` /
:func:`continuation_kwargs` (build_sequences' options from a config).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from videogen.data.text import PAD_ID
from videogen.lm.core import ATTENTION_MODES, clean_context_len, sampling
from videogen.lm.model import (
    TransformerConfig,
    code_log_prob,
    key_padding_mask,
    make_positions,
    sample_codes,
    video_token_ids,
)

__all__ = [
    "build_sequences",
    "check_prefix_weights",
    "clean_context_len",
    "clean_context_mask",
    "continuation_kwargs",
    "frame_masks",
    "loss_terms",
    "mask_kwargs",
    "motion_emphasis",
    "text_targets",
]


def build_sequences(
    tcfg: TransformerConfig,
    objective: str,
    codes,
    text_ids,
    key,
    *,
    drop_prob: float,
    schedule: str = "cosine",
    context_frames: int = 0,
    context_prob: float = 0.0,
    context_corruption: float = 0.0,
    corruption_kind: str = "replace",
    no_prefix_prob: float = 0.0,
    prefix_weights: tuple[float, ...] = (),
    clean_context: bool = False,
):
    """``(tokens, positions, targets, weights)`` for a batch.

    codes ``[B, t, h, w]`` int, text_ids ``[B, L]``. Captions are replaced by PAD with probability
    ``drop_prob`` (CFG). next_token: tokens ``[B, L + N - 1]`` (the last video token is never an
    input); maskgit, maskgit_frames: ``[B, L + N]`` with masked video tokens = MASK (the latter's masks
    drawn per frame behind a clean prefix, :func:`frame_masks`); maskgit_frames with ``clean_context``:
    ``[B, L + 2N - P]`` = ``[text | clean frames 0..t-2 | masked video]`` (``P = h w``), every frame
    masked by its own schedule ratio (attention: :func:`clean_context_mask`). targets ``[B, N]`` codes,
    weights ``[B, N]`` float (1 on scored positions).

    Long-video training (videogen/longvideo/continuation.py; all off by default):

    * temporal windows: codes may have more latent frames than the model's grid (``config.data.
      render_frames`` renders clips longer than ``num_frames``); each example then takes a window of the
      grid's ``t`` latent frames at a random offset in ``[0, t_codes - t]``, so windows that start
      mid-clip (as continuation windows do) are trained on. Window positions are window-relative.
    * continuation examples: with probability ``context_prob`` an example's first ``context_frames``
      latent frames are its given context, as in a continuation window: never masked (maskgit) and not
      scored (either objective); the rest is masked by the schedule (maskgit) / predicted (next_token).
    * ``context_corruption`` (exposure bias): in continuation examples each context token is, with this
      probability, replaced by a random code (``corruption_kind='replace'``) or by ``[MASK]`` (``'mask'``,
      maskgit only); inputs only, the scored targets stay clean.
    """
    b = codes.shape[0]
    n = tcfg.num_video_tokens
    t, h, w = tcfg.video_grid
    codes = codes.astype(jnp.int32)
    if codes.ndim == 4 and codes.shape[1] > t:  # a random window of t latent frames per example
        offsets = jax.random.randint(jax.random.fold_in(key, 1), (b,), 0, codes.shape[1] - t + 1)
        codes = jax.vmap(lambda c, o: jax.lax.dynamic_slice_in_dim(c, o, t, axis=0))(codes, offsets)
    codes = codes.reshape(b, n)
    k_drop, k_mask = jax.random.split(key)
    text = text_ids.astype(jnp.int32)
    if drop_prob > 0:
        drop = jax.random.bernoulli(k_drop, drop_prob, (b,))
        text = jnp.where(drop[:, None], PAD_ID, text)
    video = video_token_ids(tcfg, codes)
    positions = make_positions(tcfg, b)
    context = jnp.zeros((b, n), bool)  # given context tokens of continuation examples
    if context_frames > 0 and context_prob > 0:
        if not 0 < context_frames < t:
            raise ValueError(
                f"continuation.context_frames={context_frames} must be in [1, {t - 1}] (the model's "
                f"window has {t} latent frames); 0 turns continuation training off."
            )
        if corruption_kind not in ("replace", "mask") or (
            corruption_kind == "mask" and objective == "next_token"
        ):
            raise ValueError(
                f"continuation.corruption_kind={corruption_kind!r}: 'replace' (random codes) or, "
                "for the MaskGIT objectives only, 'mask'."
            )
        k_ex, k_cor, k_code = jax.random.split(jax.random.fold_in(key, 2), 3)
        is_cont = jax.random.bernoulli(k_ex, context_prob, (b,))
        context = is_cont[:, None] & (jnp.arange(n) < context_frames * h * w)[None]
        if context_corruption > 0:
            hit = context & jax.random.bernoulli(k_cor, context_corruption, (b, n))
            if corruption_kind == "replace":
                noise = video_token_ids(tcfg, jax.random.randint(k_code, (b, n), 0, tcfg.codebook_size))
            else:
                noise = jnp.full((b, n), tcfg.mask_token_id, jnp.int32)
            video = jnp.where(hit, noise, video)
    scored = (~context).astype(jnp.float32)
    if objective == "next_token":
        tokens = jnp.concatenate([text, video], axis=1)[:, :-1]
        return tokens, positions[:, :-1], codes, scored
    if objective == "maskgit_frames" and clean_context:
        mask = sampling.sample_mask(k_mask, (b * t, h * w), schedule).reshape(b, n) & ~context
        masked = jnp.where(mask, tcfg.mask_token_id, video)
        clean = video[:, : n - h * w]
        tokens = jnp.concatenate([text, clean, masked], axis=1)
        video_pos = positions[:, tcfg.max_text_len :]
        positions = jnp.concatenate([positions[:, : tcfg.max_text_len + n - h * w], video_pos], axis=1)
        return tokens, positions, codes, mask.astype(jnp.float32)
    if clean_context:
        raise ValueError(f"maskgit.clean_context is for objective 'maskgit_frames', not {objective!r}.")
    if objective == "maskgit_frames":
        mask = frame_masks(k_mask, b, (t, h * w), schedule, no_prefix_prob, prefix_weights) & ~context
    else:
        mask = sampling.sample_mask(k_mask, (b, n), schedule) & ~context
    tokens = jnp.concatenate([text, jnp.where(mask, tcfg.mask_token_id, video)], axis=1)
    return tokens, positions, codes, mask.astype(jnp.float32)


def frame_masks(
    key,
    batch: int,
    grid: tuple[int, int],
    schedule: str,
    no_prefix_prob: float = 0.0,
    prefix_weights: tuple[float, ...] = (),
) -> jax.Array:
    """``maskgit_frames`` training masks ``[B, t * P]``: per example a clean prefix of ``k ~ U{0..t-1}``
    latent frames (never masked: the context every frame has when sampled frame after frame), then an
    independent MaskGIT mask per later frame, each with its own schedule ratio. So frame ``k`` learns
    to be drawn after clean frames, as in sampling, and the frames after it learn from partly masked
    context too (more scored tokens per step than scoring frame ``k`` alone). Frame 0 is trained only
    when ``k = 0``; ``no_prefix_prob`` sets ``k = 0`` with that extra probability (frame 0 is where
    sampling draws the objects from nothing). ``prefix_weights`` (``t`` relative weights of ``k = 0 ..
    t-1``) replaces both: e.g. more weight on ``k = 1`` trains the first motion step -- frame 1 drawn after
    a clean frame 0, where each object's motion must be read from the caption -- in more rows."""
    t, p = grid
    k_prefix, k_mask, k_none = jax.random.split(key, 3)
    if prefix_weights:
        check_prefix_weights(prefix_weights, t)
        logits = jnp.log(jnp.asarray(prefix_weights, jnp.float32))
        prefix = jax.random.categorical(k_prefix, logits, shape=(batch,))[:, None]  # [B, 1] clean frames
    else:
        prefix = jax.random.randint(k_prefix, (batch, 1), 0, t)  # [B, 1] clean frames
    if no_prefix_prob > 0 and not prefix_weights:
        prefix = jnp.where(jax.random.bernoulli(k_none, no_prefix_prob, (batch, 1)), 0, prefix)
    per_frame = sampling.sample_mask(k_mask, (batch * t, p), schedule).reshape(batch, t, p)
    return (per_frame & (jnp.arange(t)[None, :, None] >= prefix[:, :, None])).reshape(batch, t * p)


def check_prefix_weights(prefix_weights, t: int) -> None:
    """ValueError unless ``prefix_weights`` are ``t`` non-negative weights, not all zero."""
    w = tuple(prefix_weights)
    if len(w) != t or any(not x >= 0 for x in w) or not sum(w) > 0:
        raise ValueError(
            f"maskgit.prefix_weights={w}: give {t} non-negative weights (not all zero), one per clean "
            f"prefix of 0..{t - 1} latent frames (the model's grid has {t} latent frames)."
        )


def clean_context_mask(tcfg: TransformerConfig, tokens: jax.Array) -> jax.Array:
    """``[B, 1, S, S]`` attention of a clean-context row ``[text | clean frames 0..t-2 | masked video]``
    (``S = L + 2N - P``, ``P = h w``): text as in ``block_causal`` (causal, or all text with ``text_bidirectional``); a clean
    frame sees the text and the clean frames up to itself (``block_causal``, as when frames are cached);
    a masked frame sees the text, the clean frames before it and itself -- what frame ``f`` sees while it
    is decoded. Nothing sees a masked copy but itself. AND key padding, as :func:`make_attention_mask`."""
    big_l, n = tcfg.max_text_len, tcfg.num_video_tokens
    _, h, w = tcfg.video_grid
    p = h * w
    s = clean_context_len(tcfg)
    if tokens.shape[-1] != s:
        raise ValueError(f"clean-context rows have {s} tokens (L + 2N - P); got {tokens.shape[-1]}.")
    idx = np.arange(s)
    first_masked = big_l + n - p
    stream = np.where(idx < big_l, 0, np.where(idx < first_masked, 1, 2))  # text / clean / masked
    frame = np.where(idx < big_l, -1, np.where(idx < first_masked, idx - big_l, idx - first_masked) // p)
    qs, ks, qf, kf = stream[:, None], stream[None, :], frame[:, None], frame[None, :]
    text_rule = np.ones((s, s), bool) if tcfg.text_bidirectional else idx[None, :] <= idx[:, None]
    rule = (ks == 0) & ((qs > 0) | text_rule)
    rule |= (ks == 1) & (qs == 1) & (kf <= qf)
    rule |= (ks == 1) & (qs == 2) & (kf < qf)
    rule |= (ks == 2) & (qs == 2) & (kf == qf)
    return jnp.asarray(rule)[None, None] & key_padding_mask(tokens, tcfg.text_pad_id)


def mask_kwargs(config) -> dict:
    """build_sequences' MaskGIT mask options from ``config.maskgit`` (absent -> cosine, no extra k = 0,
    no clean context)."""
    m = config.get("maskgit", None) or {}
    return {
        "schedule": str(m.get("schedule", "cosine")),
        "no_prefix_prob": float(m.get("no_prefix_prob", 0.0)),
        "prefix_weights": tuple(float(x) for x in (m.get("prefix_weights", None) or ())),
        "clean_context": bool(m.get("clean_context", False)),
    }


def continuation_kwargs(config) -> dict:
    """build_sequences' long-video options from ``config.continuation`` (absent -> off)."""
    c = config.get("continuation", None) or {}
    return {
        "context_frames": int(c.get("context_frames", 0)),
        "context_prob": float(c.get("prob", 0.0)),
        "context_corruption": float(c.get("corruption", 0.0)),
        "corruption_kind": str(c.get("corruption_kind", "replace")),
    }


def motion_emphasis(tcfg: TransformerConfig, targets: jax.Array, motion_weight: float) -> jax.Array:
    """``[B, N]`` loss weights ``1 + motion_weight`` on video tokens whose code differs from the same
    position one latent frame earlier (where something moved or appeared), 1 elsewhere and on frame 0.

    Most tokens of the world are static background; without this the loss is dominated by them and a
    model that draws still frames is cheap (seed 001's motion-promoting loss, in token form)."""
    t, h, w = tcfg.video_grid
    frames = targets.reshape(targets.shape[0], t, h * w)
    changed = jnp.concatenate([jnp.zeros_like(frames[:, :1], bool), frames[:, 1:] != frames[:, :-1]], axis=1)
    return 1.0 + motion_weight * changed.reshape(targets.shape).astype(jnp.float32)


def text_targets(tcfg, tokens):
    """Next-token targets of the text slots ``[B, L - 1]`` (slot i predicts text token i + 1) and their
    weights (PAD is not scored: no text loss on padding or on captions dropped for guidance). The text is
    causal in both attention modes, so this is an honest language-model loss on the captions."""
    targets = tokens[:, 1 : tcfg.max_text_len]
    return targets, (targets != PAD_ID).astype(jnp.float32)


def loss_terms(model, tcfg, objective, tokens, positions, targets, weights):
    """``(sum of weighted video NLL, sum of weighted correct, sum of text NLL)`` -- the last is 0 unless
    the model has a text head (``model.text_loss``)."""
    n = tcfg.num_video_tokens
    clean_context = objective == "maskgit_frames" and tokens.shape[1] == clean_context_len(tcfg)
    if clean_context:  # [text | clean video | masked video]: score the masked copy
        logits, _ = model(tokens, positions, attn_mask=clean_context_mask(tcfg, tokens))
    else:
        logits, _ = model(tokens, positions, mode=ATTENTION_MODES[objective])
    text_nll = jnp.zeros((), jnp.float32)
    if isinstance(logits, dict):  # text_loss: {'video': ..., 'text': [B, S, text_vocab]}
        text_tgt, text_w = text_targets(tcfg, tokens)
        text_logp = jax.nn.log_softmax(
            logits["text"][:, : tcfg.max_text_len - 1].astype(jnp.float32), axis=-1
        )
        text_nll = -jnp.sum(jnp.take_along_axis(text_logp, text_tgt[..., None], axis=-1)[..., 0] * text_w)
        logits = logits["video"]
    start = tcfg.max_text_len - 1 if objective == "next_token" else tcfg.max_text_len
    start += clean_context_len(tcfg) - tcfg.max_text_len - n if clean_context else 0
    logits = logits[:, start : start + tcfg.num_video_tokens]
    nll = -code_log_prob(tcfg, logits, targets)
    correct = (sample_codes(tcfg, None, logits, temperature=0) == targets).astype(jnp.float32)
    return jnp.sum(nll * weights), jnp.sum(correct * weights), text_nll
