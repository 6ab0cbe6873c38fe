"""Long videos: sliding-window continuation over latent frames, from tokens.

The LM (videogen/lm/model.py) sees a window of ``W`` latent frames (its ``video_grid[0]``; 5 for 17-frame
clips) of ``P = h * w`` tokens each. A video of any length is generated window after window: each new
window is conditioned on the text and on the **tokens** of the last ``K`` latent frames already made
(``context_frames``, ``1 <= K < W``) -- never a decode / re-encode round trip through pixels -- and its
positions are window-relative (frames ``0 .. W-1``), so nothing depends on the absolute frame index.

Per window (:class:`Continuation`; both objectives, with classifier-free guidance):

* ``maskgit`` -- the window's first ``c`` frames are the context, given and frozen (MaskGIT never
  re-masks given tokens), the other ``W - c`` frames start as ``[MASK]`` and are decoded in
  ``num_steps`` parallel steps; the first ``W - K`` of them are kept (``W - K + 1`` in the first window of
  a video, ``c = 0``, which is a normal text-to-video sample).
* ``maskgit_frames`` -- the same window, its new frames decoded one after another, ``num_steps`` MaskGIT
  steps each (block-causal attention: each frame sees the frames before it in full).
* ``next_token`` -- ``[text | K context frames]`` is prefilled into the KV cache in one call, then the
  new tokens are sampled one by one (``ar_decode``): ``(W - K) P`` of them (``(W - K + 1) P`` when
  ``c = 0``; the scan has that many steps and skips the unneeded ones with ``lax.cond``). With fewer
  than ``K`` context frames (the first window, a short user video) the missing frames' slots are empty
  (token ``-1``), which the model masks out as keys: the same program serves every window.

``c = min(K, latent frames so far)`` is a traced scalar and the window's shapes never change, so **one
compiled step serves every window of every video of every length** (for a given batch size and sampling
options); :attr:`Continuation.trace_count` counts its traces (tests check it stays 1). Time per
generated frame is therefore constant, and so is memory: the engine keeps only the last ``K`` latent
frames for the model and the last ``overlap`` for the decoder.

Pixels are decoded as the tokens come (:class:`StreamDecoder`): the causal 3D CNN decoder runs on a
fixed-size chunk ``[overlap history latents | new latents]`` (padded at the end, which a causal decoder
ignores) and keeps the new latents' frames; ``overlap`` is the decoder's measured temporal reach
(:func:`decoder_reach`), so the streamed frames equal a whole-video decode (tested).

Entry points (all return uint8 ``[B, T, H, W, 3]``; :meth:`Continuation.stream` yields chunks instead):

* :meth:`Continuation.generate` -- ``N`` frames (any ``N``, e.g. 16x the training length) from prompts;
* :meth:`Continuation.continue_video` -- encode a user's video, then continue it; the given frames are
  returned unchanged (pixels) and their tokens are the context;
* :meth:`Continuation.story` -- Phenaki-style story mode: ``[(prompt, num_frames), ...]`` segments
  continued one after another, each window conditioned on its segment's prompt.

Frame prediction within one clip (the K600 protocol of ``videogen eval``) is :func:`videogen.lm.predict_frames`;
beyond the clip, :meth:`Continuation.continue_video` of the given first frames.

Each window decodes with the samplers of :mod:`videogen.lm` (:func:`~videogen.lm.maskgit_video_codes`,
:func:`~videogen.lm.next_token_codes`), the ones text-to-video sampling and frame prediction use.

Frame counts: the causal tokenizer maps ``1 + 4m`` frames to ``1 + m`` latent frames (frame 0 alone), so a
video of ``N`` frames needs ``1 + ceil((N - 1) / 4)`` latents (extra decoded frames are cut); a user's video
of ``T`` frames loses its first ``(T - 1) % 4`` frames for encoding (the kept frames are the last ones,
which the continuation follows) -- they are still returned unchanged.

CLI: ``videogen continue --workdir runs/lm --prompt "..." --frames 272`` (``make continue``); long-video
training and the drift measurement: experiments/long_video.py and videogen/longvideo/drift.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tokenizer.core import Tokenizer, autoencoder_config, decode_indices, encode_video, quantizer_kwargs
from videogen import checks, lm, pretrained
from videogen.data import text as text_lib
from videogen.data import video_io, world
from videogen.errors import UsageError
from videogen.lm import OBJECTIVES
from videogen.lm.model import Transformer, TransformerConfig
from videogen.longvideo import drift
from videogen.samples import judge_samples, write_samples
from videogen.training.config import apply_overrides, load_config

__all__ = ["Continuation", "StreamDecoder", "decoder_reach", "latents_for_frames", "plan_windows"]


def latents_for_frames(num_frames: int, temporal_compression: int = 4) -> int:
    """Latent frames needed for ``num_frames`` pixel frames: ``1 + ceil((N - 1) / c_t)``."""
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be >= 1.")
    return 1 + -(-(int(num_frames) - 1) // int(temporal_compression))


def plan_windows(
    num_new: int, *, window: int, context: int, objective: str, have: int = 0
) -> list[tuple[int, int, int]]:
    """The windows that make ``num_new`` latent frames after ``have`` existing ones.

    Returns ``[(c, made, kept), ...]``: context frames given to the window (``min(context, frames so
    far)``), new latent frames it makes and how many of them are kept (the last window's surplus is
    dropped: the model is causal across frames, so dropping it changes nothing before it). Every window
    makes ``window - context`` frames, the first of a video (``c = 0``) one more: its first latent frame is
    a single pixel frame, so every window yields about ``c_t (window - context)`` pixel frames and the
    time per frame is the same at any length (maskgit samples the whole window either way; next_token
    skips the steps it does not need). The objective does not change the plan.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}: must be one of {OBJECTIVES}.")
    if not 1 <= context < window:
        raise UsageError(
            f"context_frames={context} must be in [1, {window - 1}] for a model window of {window} "
            "latent frames."
        )
    plan, so_far, left = [], int(have), int(num_new)
    while left > 0:
        c = min(context, so_far)
        made = window - context + (1 if c == 0 else 0)
        kept = min(made, left)
        plan.append((c, made, kept))
        so_far += kept
        left -= kept
    return plan


# ----------------------------------------------------------------------------------------------- decoding


def _decode_fn(ae, quantizer):
    return lambda codes: decode_indices(ae, quantizer, codes)


def decoder_reach(
    ae, quantizer, grid_hw: tuple[int, int], *, max_reach: int = 8, seed: int = 0, tolerance: int = 2
) -> int:
    """Latent frames of history the causal decoder needs: the smallest ``o`` such that decoding a chunk
    that starts ``o`` latents before latent ``j`` gives latent ``j``'s frames as a whole-video decode does
    (max abs difference <= ``tolerance`` in uint8, i.e. float rounding), for random codes. Two compiles of
    the decoder (one chunk, one whole sequence); ``max_reach`` if none up to it matches."""
    h, w = grid_hw
    ct = int(ae.config.temporal_compression)
    n_codes = int(quantizer.codebook_size)
    chunk, start = max_reach + 1, 2
    codes = np.random.default_rng(seed).integers(0, n_codes, (1, start + chunk, h, w)).astype(np.int32)
    decode = _decode_fn(ae, quantizer)
    full = np.asarray(decode(codes))[0].astype(np.int16)
    part = np.asarray(decode(codes[:, start:]))[0].astype(np.int16)

    def frames(i):  # frames of latent i (>= 1) of a decode
        return slice(ct * (i - 1) + 1, ct * i + 1)

    ok = [np.abs(part[frames(o)] - full[frames(start + o)]).max() <= tolerance for o in range(1, chunk)]
    for o in range(1, chunk):
        if all(ok[o - 1 :]):
            return o
    return max_reach


class StreamDecoder:
    """Decodes a growing latent sequence to pixels in fixed-size chunks (one compile, constant memory).

    ``push(codes [B, n, h, w])`` (``n <= max_new``) returns the new latents' frames ``[B, f, H, W, 3]``:
    ``1 + c_t (n - 1)`` frames if they start the video, ``c_t n`` otherwise. ``prime(codes)`` makes the
    decoder continue after existing latents without emitting their frames (a user's video).
    """

    def __init__(self, ae, quantizer, *, overlap: int, max_new: int):
        self._decode = _decode_fn(ae, quantizer)
        self.ct = int(ae.config.temporal_compression)
        self.overlap, self.max_new = int(overlap), int(max_new)
        if self.overlap < 1:
            # With no history a chunk starts a new video: its first latent decodes to 1 frame, not c_t.
            raise ValueError(
                f"decode overlap {overlap}: at least 1 latent of history is needed to decode a "
                "continuation (the causal decoder turns a chunk's first latent into a single frame); "
                "leave decode_overlap unset to use the measured decoder reach."
            )
        self.history: np.ndarray | None = None  # last `overlap` latents [B, <=o, h, w]
        self.count = 0  # latents seen

    def prime(self, codes: np.ndarray) -> None:
        codes = np.asarray(codes, np.int32)
        self.history = codes[:, max(0, codes.shape[1] - self.overlap) :]
        self.count = codes.shape[1]

    def push(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, np.int32)
        n = codes.shape[1]
        if not 1 <= n <= self.max_new:
            raise ValueError(f"StreamDecoder.push: {n} latents; between 1 and {self.max_new} at a time.")
        hist = self.history if self.history is not None else codes[:, :0]
        o = hist.shape[1]
        chunk = np.concatenate([hist, codes], axis=1)
        pad = self.overlap + self.max_new - chunk.shape[1]  # end padding: invisible to a causal decoder
        chunk = np.concatenate([chunk, np.repeat(chunk[:, -1:], pad, axis=1)], axis=1)
        frames = np.asarray(self._decode(chunk))
        ct = self.ct
        lo = 0 if o == 0 else ct * (o - 1) + 1
        out = frames[:, lo : ct * (o + n - 1) + 1]
        both = np.concatenate([hist, codes], axis=1)
        self.history = both[:, max(0, both.shape[1] - self.overlap) :]
        self.count += n
        return out


# ----------------------------------------------------------------------------------------------- engine


@dataclasses.dataclass
class Chunk:
    """One window's output from :meth:`Continuation.stream`."""

    window: int  # window index (over the whole call)
    segment: int  # story segment index
    context: int  # context latent frames the window was given
    codes: np.ndarray  # [B, kept, h, w] new latent frames kept
    frames: np.ndarray  # [B, f, H, W, 3] their decoded pixels (original pixels for given frames)
    first_frame: int  # index of frames[:, 0] in the whole video


class Continuation:
    """Sliding-window long-video generation with a trained LM; see the module docstring.

    Args:
        model: the :class:`videogen.lm.model.Transformer` (e.g. from ``videogen.lm.load_lm``).
        tokenizer_bundle: ``(autoencoder, quantizer, ...)``.
        text_tokenizer: the LM's :class:`videogen.data.text.TextTokenizer`.
        objective: ``'maskgit'`` or ``'next_token'`` (how the model was trained).
        context_frames: ``K`` latent frames of context per window (default ``W - 2``, at least 1).
        num_steps, schedule: MaskGIT decoding. guidance, temperature, top_k: sampling (CFG scale 1 =
            conditional, 0 = unconditional).
        decode_overlap: decoder history in latents (default: :func:`decoder_reach`, measured once).
    """

    def __init__(
        self,
        model,
        tokenizer_bundle,
        text_tokenizer,
        *,
        objective: str,
        context_frames: int | None = None,
        num_steps: int = 12,
        guidance: float = 3.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        schedule: str = "cosine",
        decode_overlap: int | None = None,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}: must be one of {OBJECTIVES}.")
        model = lm.for_decoding(model)
        tcfg = model.config
        lm.check_text_tokenizer(text_tokenizer, tcfg)
        self.model, self.tcfg, self.objective = model, tcfg, objective
        self.ae, self.quantizer = tokenizer_bundle[0], tokenizer_bundle[1]
        self.text_tokenizer = text_tokenizer
        self.window, self.h, self.w = tcfg.video_grid
        if self.window < 2:
            raise ValueError(
                f"the model's window has {self.window} latent frame(s); continuation needs >= 2 "
                "(train on clips of >= 5 frames with a 4x temporal tokenizer)."
            )
        self.context = max(1, self.window - 2) if context_frames is None else int(context_frames)
        plan_windows(1, window=self.window, context=self.context, objective=objective)  # validates K
        if int(self.quantizer.codebook_size) != tcfg.codebook_size:
            raise ValueError(
                f"tokenizer codebook {self.quantizer.codebook_size} != LM codebook {tcfg.codebook_size}: "
                "use the tokenizer the LM was trained on."
            )
        self.ct = int(self.ae.config.temporal_compression)
        self.num_steps, self.schedule = int(num_steps), schedule
        self.guidance, self.temperature = float(guidance), float(temperature)
        self.top_k = None if top_k is None else int(top_k)
        self._overlap = None if decode_overlap is None else int(decode_overlap)
        self.trace_count = 0
        self._graphdef, self._state = nnx.split(model)
        self._step = jax.jit(self._window_step)

    # -- the one compiled window step ---------------------------------------------------------------

    @property
    def tokens_per_frame(self) -> int:
        return self.h * self.w

    @property
    def decode_overlap(self) -> int:
        if self._overlap is None:
            self._overlap = decoder_reach(self.ae, self.quantizer, (self.h, self.w))
        return self._overlap

    def _window_step(self, state, text2, ctx, c, rng, guidance):
        """text2 [2B, L] ([cond; null]), ctx [B, K P] codes (first c frames valid), c int32 scalar ->
        maskgit: window codes [B, W P]; next_token: new codes [B, (W - K + 1) P] (the last P unused
        unless c == 0)."""
        self.trace_count += 1  # Python side effect: runs once per trace (compile), never per call
        tcfg, K, W, P = self.tcfg, self.context, self.window, self.tokens_per_frame
        model = nnx.merge(self._graphdef, state)
        C = tcfg.codebook_size
        b = text2.shape[0] // 2

        if self.objective != "next_token":
            frame = jnp.arange(W * P) // P
            init = jnp.concatenate([ctx, jnp.full((b, (W - K) * P), C, jnp.int32)], axis=1)
            init = jnp.where(frame[None] < c, init, C)
            # maskgit_frames skips the given context frames (committing them to its KV cache) and draws
            # the rest frame after frame.
            return lm.maskgit_video_codes(
                model,
                self.objective,
                text2,
                init,
                guidance=guidance,
                rng=rng,
                num_steps=self.num_steps,
                schedule=self.schedule,
                temperature=self.temperature,
                top_k=self.top_k,
            )

        # next_token: prefill [text | K context frames] (frames >= c empty), then the new tokens: the scan has
        # the first window's count; other windows skip its last P steps.
        n_new = (W - K + 1) * P
        return lm.next_token_codes(
            model,
            text2,
            n_new,
            guidance=guidance,
            rng=rng,
            temperature=self.temperature,
            top_k=self.top_k,
            context=ctx,
            context_len=c * P,
            active=jnp.where(c == 0, n_new, n_new - P),
        )

    # -- helpers -------------------------------------------------------------------------------------

    def _text2(self, prompts: Sequence[str | None]) -> jax.Array:
        return lm.prompt_pairs(self.text_tokenizer, prompts)

    def encode(self, video: np.ndarray) -> tuple[np.ndarray, int]:
        """uint8 ``[B, T, H, W, 3]`` -> (codes ``[B, 1 + (T' - 1) / c_t, h, w]``, frames dropped at the
        start ``T - T'`` so that ``T' = 1 + c_t m``)."""
        video = np.asarray(video)
        if video.ndim != 5 or video.shape[-1] != 3 or video.dtype != np.uint8:
            raise ValueError(
                f"video must be uint8 [B, T, H, W, 3], got {video.dtype} {video.shape}; read a file "
                "with videogen.data.video_io.read_video(path, size=R)."
            )
        ct, cs = self.ct, self.ae.config.spatial_compression
        want = (self.h * cs, self.w * cs)
        if video.shape[2:4] != want:
            raise ValueError(
                f"video frames are {video.shape[2]}x{video.shape[3]}; this LM's tokenizer grid "
                f"{self.h}x{self.w} needs {want[0]}x{want[1]}: resize it (videogen continue --video "
                f"does, or read_video(path, size={want[0]}))."
            )
        drop = (video.shape[1] - 1) % ct
        codes = np.asarray(encode_video(self.ae, self.quantizer, video[:, drop:]), np.int32)
        return codes, drop

    # -- the generator ---------------------------------------------------------------------------------

    def stream(
        self,
        segments: Sequence[tuple[Sequence[str | None], int]],
        *,
        seed: int = 0,
        init_video: np.ndarray | None = None,
    ) -> Iterator[Chunk]:
        """Yields :class:`Chunk` s window by window; constant memory whatever the length.

        ``segments``: ``[(prompts (one per example), num_frames), ...]`` -- the frames each segment adds.
        ``init_video``: uint8 ``[B, T, H, W, 3]`` to continue (yielded first, unchanged, as window -1).
        """
        if not segments:
            raise ValueError("segments is empty: give at least one (prompts, num_frames).")
        batch = len(segments[0][0])
        for i, (prompts, n) in enumerate(segments):
            if len(prompts) != batch:
                raise ValueError(
                    f"segment {i} has {len(prompts)} prompts; every segment needs one per example ({batch})."
                )
            if int(n) < 1:
                raise ValueError(f"segment {i} asks for {n} frames; each segment must add >= 1 frame.")
        K, P, W, ct = self.context, self.tokens_per_frame, self.window, self.ct
        dec = StreamDecoder(self.ae, self.quantizer, overlap=self.decode_overlap, max_new=W)
        hist = np.zeros((batch, 0, self.h, self.w), np.int32)  # last K latent frames
        frames_out = 0
        if init_video is not None:
            init_video = np.asarray(init_video)
            if init_video.ndim != 5 or init_video.shape[0] != batch:
                raise ValueError(f"init_video must be uint8 [B={batch}, T, H, W, 3], got {init_video.shape}.")
            codes, _ = self.encode(init_video)
            hist = codes[:, -K:]
            dec.prime(codes)
            yield Chunk(-1, -1, 0, codes, init_video, 0)
            frames_out = init_video.shape[1]
        latents = given_latents = dec.count
        given_frames = frames_out
        total = given_frames + sum(int(n) for _, n in segments)
        key = jax.random.key(int(seed))
        window, target = 0, given_frames
        for s, (prompts, n_frames) in enumerate(segments):
            text2 = self._text2(prompts)
            target += int(
                n_frames
            )  # frames wanted by the end of this segment (prompts switch at latent frames)
            if given_frames:  # after a given video of F_u latents: c_t frames per new latent
                need = given_latents + -(-(target - given_frames) // ct) - latents
            else:
                need = latents_for_frames(target, ct) - latents
            for c, _made, kept in plan_windows(
                max(need, 0), window=W, context=K, objective=self.objective, have=latents
            ):
                ctx = np.zeros((batch, K * P), np.int32)
                if c:
                    ctx[:, : c * P] = hist[:, -c:].reshape(batch, c * P)
                out = np.asarray(
                    self._step(
                        self._state,
                        text2,
                        jnp.asarray(ctx),
                        jnp.int32(c),
                        jax.random.fold_in(key, window),
                        jnp.float32(self.guidance),
                    )
                )
                out = out.reshape(batch, -1, self.h, self.w)
                new = out[:, c : c + kept] if self.objective != "next_token" else out[:, :kept]
                pixels = dec.push(new)[:, : max(0, total - frames_out)]
                yield Chunk(window, s, c, new, pixels, frames_out)
                frames_out += pixels.shape[1]
                hist = np.concatenate([hist, new], axis=1)[:, -K:]
                latents += kept
                window += 1

    @staticmethod
    def _collect(chunks: Iterator[Chunk]) -> np.ndarray:
        return np.concatenate([ch.frames for ch in chunks], axis=1)

    # -- public API -----------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[str | None], num_frames: int, *, seed: int = 0) -> np.ndarray:
        """``num_frames`` frames per prompt (``None`` = unconditional) -> uint8 ``[B, N, H, W, 3]``."""
        return self._collect(self.stream([(list(prompts), int(num_frames))], seed=seed))

    def continue_video(
        self, video: np.ndarray, prompts: Sequence[str | None], num_frames: int, *, seed: int = 0
    ) -> np.ndarray:
        """The given video(s) ``[B, T, H, W, 3]`` (or one ``[T, H, W, 3]``) unchanged, then ``num_frames``
        more, conditioned on the tokens of their last ``K`` latent frames and on the prompts."""
        video = np.asarray(video)
        single = video.ndim == 4
        video = video[None] if single else video
        if isinstance(prompts, str) or prompts is None:
            prompts = [prompts] * video.shape[0]
        out = self._collect(self.stream([(list(prompts), int(num_frames))], seed=seed, init_video=video))
        return out[0] if single else out

    def story(
        self,
        segments: Sequence[tuple[str | None, int]],
        *,
        seed: int = 0,
        init_video: np.ndarray | None = None,
    ) -> np.ndarray:
        """Phenaki-style story: ``[(prompt, num_frames), ...]`` continued one after another -> uint8
        ``[T, H, W, 3]`` (one video; ``init_video [T0, H, W, 3]`` optionally first)."""
        init = None if init_video is None else np.asarray(init_video)[None]
        out = self._collect(self.stream([([p], int(n)) for p, n in segments], seed=seed, init_video=init))
        return out[0]

    @property
    def compiled_count(self) -> int:
        """Compiled variants of the window step held by jit (1 per batch size / option set)."""
        return int(self._step._cache_size())


def from_workdir(workdir, *, objective: str | None = None, step: int | None = None, **kwargs) -> Continuation:
    """A :class:`Continuation` from an LM workdir (EMA weights of ``step``, default the latest), or from the
    pretrained model shipped in the package when ``workdir`` is None; ``objective`` defaults to the trained
    one."""
    model, bundle, text_tok, config = (
        lm.load_lm(workdir, step=step) if workdir is not None else pretrained.load()
    )
    return Continuation(model, bundle, text_tok, objective=objective or config.objective, **kwargs)


def window_frames(num_frames: int, window: int = 17, stride: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` pixel-frame windows of a video for per-window scoring (non-overlapping
    by default: stride ``window - 1`` so consecutive windows share one frame, like 17-frame clips)."""
    stride = window - 1 if stride is None else int(stride)
    if num_frames < window:
        return [(0, num_frames)]
    return [(s, s + window) for s in range(0, num_frames - window + 1, stride)]


__all__ += ["Chunk", "from_workdir", "window_frames"]


# ----------------------------------------------------------------------------------------------- CLI


def add_continue_args(p) -> None:
    p.add_argument(
        "--workdir",
        help="the LM workdir (python -m videogen.train --workdir ...); default: the "
        "pretrained tiny model shipped in the package (videogen/pretrained_data/tiny)",
    )
    p.add_argument("--prompt", action="append", help="one video per prompt (repeat); '' = unconditional")
    p.add_argument(
        "--frames",
        type=checks.positive_int,
        help="frames to generate (default: --length-factor x the training length)",
    )
    p.add_argument(
        "--length-factor",
        type=checks.positive_int,
        default=16,
        help="N = 1 + F (T - 1) frames for training clips of T frames (16: 17 -> 257 frames)",
    )
    p.add_argument(
        "--video", help="continue this video file (mp4/gif/webm/npy); its frames are kept unchanged"
    )
    p.add_argument(
        "--story",
        action="append",
        metavar="PROMPT=FRAMES",
        help="story mode: segments continued one after another, e.g. --story 'a red circle moves to "
        "the left=64' --story 'a blue square bounces up and down=64'",
    )
    p.add_argument(
        "--context-frames",
        type=checks.positive_int,
        help="latent frames of context per window (default window - 2)",
    )
    p.add_argument("--objective", choices=OBJECTIVES, help="default: the one the LM was trained with")
    p.add_argument("--steps", type=checks.positive_int, default=12, help="MaskGIT steps per window")
    p.add_argument(
        "--guidance",
        type=checks.nonnegative_float,
        default=3.0,
        help="0 = unconditional, 1 = conditional, >1 = CFG",
    )
    p.add_argument("--temperature", type=checks.nonnegative_float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=checks.positive_int, default=None)
    p.add_argument("--seed", type=checks.nonnegative_int, default=0)
    p.add_argument("--fps", type=checks.positive_float, default=8)
    p.add_argument(
        "--out",
        help="output folder (default WORKDIR/continue or WORKDIR/drift; runs/shipped/... without "
        "--workdir; runs/long/truth for --drift --truth)",
    )
    p.add_argument(
        "--drift",
        action="store_true",
        help="measure drift on world test prompts: drift.json + drift.png (videogen/longvideo/drift.py)",
    )
    p.add_argument(
        "--truth", action="store_true", help="with --drift: measure the ground-truth renders (no model)"
    )
    p.add_argument("--num", type=checks.positive_int, default=16, help="--drift: clips")
    p.add_argument("--batch", type=checks.positive_int, default=8, help="--drift: clips generated together")
    p.add_argument(
        "--resolution", type=checks.positive_int, help="--drift --truth: world resolution (default 64)"
    )
    p.add_argument("--fvd", action="store_true", help="--drift: FVD per window too (I3D; slow on CPU)")
    p.add_argument(
        "--bench",
        action="store_true",
        help="time and peak memory per generated frame at 1x, 4x, 16x with a tiny random model (CPU)",
    )


def _read_video(path: str, resolution: int) -> np.ndarray:
    if path.endswith(".npy"):
        v = checks.npy_video(path, "--video")
        if v.dtype != np.uint8 or v.ndim != 4 or v.shape[1:] != (resolution, resolution, 3):
            raise UsageError(
                f"--video {path}: .npy videos must be uint8 [T, {resolution}, {resolution}, 3], got "
                f"{v.dtype} {list(v.shape)}; give a video file instead (it is resized) or resize it."
            )
        return v

    return video_io.read_video(path, size=resolution)


def _engine_from_args(args) -> Continuation:
    """The continuation engine of ``videogen continue``'s decoding options (``--workdir`` or the shipped model)."""
    return from_workdir(
        args.workdir,
        objective=args.objective,
        context_frames=args.context_frames,
        num_steps=args.steps,
        guidance=args.guidance,
        temperature=args.temperature,
        top_k=args.top_k,
    )


def continue_command(args) -> None:
    if args.bench:
        rows = bench(out_json=None if not args.out else Path(args.out) / "bench.json")
        print(bench_table(rows))
        return
    if args.drift:
        # The drift measurement draws its own world prompts: say so rather than silently drop the user's
        # (`make continue` always passes --prompt, so this is a note, not an error).
        ignored = [
            flag
            for flag, value in (
                ("--prompt", any(args.prompt or [])),
                ("--video", args.video),
                ("--story", args.story),
            )
            if value
        ]
        if ignored:
            print(
                f"videogen continue --drift: {', '.join(ignored)} ignored: the drift measurement samples "
                f"--num world test prompts (drop --drift to continue your own).",
                file=sys.stderr,
            )
        run_drift(args)
        return
    # Everything typed is checked before the model loads: the workdir (none: the shipped model, its hashes),
    # the context against its window, the story, the video file, where the videos go.
    config, home = _model_config(args.workdir)
    _check_context_frames(args.context_frames, config)
    segments = _parse_story(args.story) if args.story else None
    if args.video:
        checks.input_file(args.video, "--video")
    out = checks.output_folder(args.out or home / "continue", "--out" if args.out else "the default --out")
    eng = _engine_from_args(args)
    train_frames = 1 + eng.ct * (eng.window - 1)
    n = args.frames or 1 + args.length_factor * (train_frames - 1)
    resolution = eng.h * eng.ae.config.spatial_compression
    t0 = time.perf_counter()
    if segments:
        init = _read_video(args.video, resolution) if args.video else None
        videos = eng.story(segments, seed=args.seed, init_video=init)[None]
        prompts = [" / ".join(p for p, _ in segments)]
    else:
        prompts = [p or None for p in (args.prompt or [""])]
        if args.video:
            video = _read_video(args.video, resolution)
            videos = eng.continue_video(np.stack([video] * len(prompts)), prompts, n, seed=args.seed)
        else:
            videos = eng.generate(prompts, n, seed=args.seed)
    seconds = time.perf_counter() - t0
    write_samples(videos, [p or "" for p in prompts], out, fps=args.fps)
    print(
        f"Wrote {len(videos)} video(s) of {videos.shape[1]} frames ({seconds:.1f} s incl. compile; window step "
        f"compiled {eng.trace_count}x) to {out}"
    )
    if not args.video and not args.story:
        result = judge_samples(videos[:, :train_frames], [p or "" for p in prompts], out)
        if result is not None:
            print(f"judge (first {train_frames} frames): {result['all_correct']:.1%} fully correct")
    (out / "continue.json").write_text(
        json.dumps(
            {
                "frames": int(videos.shape[1]),
                "seconds": seconds,
                "prompts": prompts,
                "context_frames": eng.context,
            },
            indent=1,
        )
    )


def _model_config(workdir) -> tuple[dict, Path]:
    """``(the LM's config.json, the folder its outputs go under by default)`` of ``--workdir``, or of the
    pretrained model shipped in the package when none is given (said in one line, its files' hashes checked)."""
    if workdir:
        return checks.lm_workdir(workdir), Path(workdir)
    pretrained.announce("videogen continue")
    return pretrained.lm_config_dict(), pretrained.DEFAULT_OUT


def _parse_story(story: Sequence[str]) -> list[tuple[str, int]]:
    """``--story 'PROMPT=FRAMES'`` flags -> ``[(prompt, frames), ...]``."""
    segments = []
    for s in story:
        prompt, _, frames = s.rpartition("=")
        if not prompt or not frames.isdigit() or int(frames) < 1:
            raise UsageError(
                f"--story {s!r}: write PROMPT=FRAMES with FRAMES >= 1, e.g. 'a red circle moves to "
                "the left=64'."
            )
        segments.append((prompt, int(frames)))
    return segments


def _check_context_frames(context_frames: int | None, config: dict) -> None:
    """``--context-frames`` against the window of the LM whose config.json is ``config``."""
    grid = (config.get("model") or {}).get("video_grid")
    if context_frames is None or not grid:
        return
    window = int(grid[0])
    if not 1 <= context_frames < window:
        raise UsageError(
            f"--context-frames {context_frames}: this LM's window has {window} latent frames, so "
            f"the context must be in [1, {window - 1}]."
        )


def run_drift(args) -> dict:
    """``videogen continue --drift``: generate world test prompts at length-factor x the training length and
    write drift.json + drift.png (``--truth``: the ground-truth renders, no model)."""
    t0 = time.perf_counter()
    if args.truth:
        res, train_frames = args.resolution or 64, 17

        try:
            world.WorldConfig(resolution=res)
        except ValueError as e:
            raise UsageError(f"--resolution {res}: {e}") from e
        out = checks.output_folder(
            args.out or "runs/long/truth", "--out" if args.out else "the default --out"
        )
        n = args.frames or 1 + args.length_factor * (train_frames - 1)
        specs = drift.world_prompts(res, args.num)
        videos = list(drift.truth_videos(specs, n))
        title = f"ground truth, {n} frames, {len(specs)} clips"
    else:
        config, home = _model_config(args.workdir)
        _check_context_frames(args.context_frames, config)
        out = checks.output_folder(args.out or home / "drift", "--out" if args.out else "the default --out")
        eng = _engine_from_args(args)
        res = eng.h * eng.ae.config.spatial_compression
        train_frames = 1 + eng.ct * (eng.window - 1)
        n = args.frames or 1 + args.length_factor * (train_frames - 1)
        specs = drift.world_prompts(res, args.num, num_frames=train_frames)
        videos = []
        for i in range(0, len(specs), args.batch):  # a fixed batch (padded): one compile
            part = [s.caption for s in specs[i : i + args.batch]]
            pad = part + [part[-1]] * (args.batch - len(part))
            videos += list(eng.generate(pad, n, seed=args.seed + i)[: len(part)])
        title = (
            f"{args.workdir or 'pretrained tiny'}: {n} frames ({args.length_factor}x), {len(specs)} clips, "
            f"K={eng.context}"
        )
    gen_s = time.perf_counter() - t0
    result = drift.measure_videos(videos, specs, window=train_frames, fvd=args.fvd)
    result["generation_seconds"] = gen_s
    js, png = drift.write_report(result, out, title=title)
    s = result["summary"]
    print(
        f"drift over {n} frames, {len(specs)} clips: judge first window {s['first_window_judge']:.1f} -> last "
        f"{s['last_windows_judge']:.1f}; persistence {result['overall']['persistence']:.1f} %; bounces "
        f"{result['overall']['bounces'] if result['overall']['bounces'] is not None else float('nan'):.1f} % of "
        f"{result['overall']['bounce_cases']}; checks {s['checks']}\nWrote {js} and {png}"
    )
    return result


# ----------------------------------------------------------------------------------------------- bench


def _tiny_setup(workdir, *, objective: str, resolution: int = 32):
    """A random-init tiny tokenizer (experiments/tokenizer_world.py:tiny) + tiny LM + text tokenizer: the
    benchmark's stand-in for trained models (time and memory do not depend on the weights)."""

    repo = Path(__file__).resolve().parents[2]
    c = load_config(str(repo / "experiments/tokenizer_world.py") + ":tiny")
    apply_overrides(c, [f"data.resolution={resolution}"])
    tok = Tokenizer(autoencoder_config(c), quantizer_kwargs(c), rngs=nnx.Rngs(0))
    ae, q = tok.autoencoder, tok.quantizer
    grid = ae.latent_shape(17, resolution, resolution)[:3]
    path = Path(workdir) / "text.model"
    if not path.is_file():
        caps = [
            world.sample_clip(world.WorldConfig(resolution=resolution), "train", i).caption
            for i in range(500)
        ]
        text_lib.train_text_tokenizer(caps, path, vocab_size=320)
    tt = text_lib.TextTokenizer(path, 32)
    bits = max(1, (int(q.codebook_size) - 1).bit_length())
    cfg = TransformerConfig(
        text_vocab_size=320,
        codebook_size=int(q.codebook_size),
        num_layers=2,
        d_model=64,
        num_heads=4,
        num_kv_heads=4,
        mlp_dim=128,
        max_text_len=32,
        video_grid=grid,
        dtype="float32",
        head="bitgroups",
        group_bits=bits // 2 if bits % 2 == 0 else bits,
    )
    return Transformer(cfg, rngs=nnx.Rngs(0)), (ae, q), tt


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        return 0


def bench(
    *,
    factors=(1, 4, 16),
    objectives=("maskgit", "next_token"),
    context_frames: int = 3,
    num_steps: int = 4,
    rounds: int = 3,
    out_json=None,
) -> list[dict]:
    """Time and peak memory per generated frame at ``factors`` x the training length (17 frames), tiny
    random models on the default device. Memory: the peak of the live JAX arrays (sampled after every
    window) and the peak process RSS (sampled every 2 ms by a thread) while generating."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for objective in objectives:
            model, bundle, tt = _tiny_setup(tmp, objective=objective)
            eng = Continuation(
                model, bundle, tt, objective=objective, context_frames=context_frames, num_steps=num_steps
            )
            prompt = ["a small red circle moves to the left"]
            eng.generate(prompt, 1 + 16 * 2, seed=0)  # compile (step + decoder), excluded from timing
            stats = {
                f: {"per_frame": [], "rss": _rss_bytes(), "live": 0, "frames": 0, "windows": 0}
                for f in factors
            }
            # A shared machine: every length is timed in each of `rounds` rounds, each on ~16x the training
            # length of frames (1x repeated 16 times, 4x 4 times, 16x once), interleaved; the median is kept.
            for rnd in range(rounds):
                for f in factors:
                    n, st = 1 + 16 * f, stats[f]
                    stop = threading.Event()

                    def sample_rss(st=st, stop=stop):
                        while not stop.is_set():
                            st["rss"] = max(st["rss"], _rss_bytes())
                            time.sleep(0.002)

                    th = threading.Thread(target=sample_rss, daemon=True)
                    th.start()
                    t0 = time.perf_counter()
                    frames = windows = 0
                    for rep in range(max(1, max(factors) // f)):
                        for ch in eng.stream([(prompt, n)], seed=rnd * 100 + rep):
                            frames += ch.frames.shape[1]
                            windows += 1
                            st["live"] = max(st["live"], sum(x.nbytes for x in jax.live_arrays()))
                    dt = time.perf_counter() - t0
                    stop.set()
                    th.join()
                    st["per_frame"].append(1000 * dt / frames)
                    st["frames"], st["windows"] = n, windows // max(1, max(factors) // f)
            for f in factors:
                st = stats[f]
                rows.append(
                    {
                        "objective": objective,
                        "factor": f,
                        "frames": st["frames"],
                        "windows": st["windows"],
                        "ms_per_frame": float(np.median(st["per_frame"])),
                        "ms_per_frame_rounds": st["per_frame"],
                        "peak_live_mib": st["live"] / 2**20,
                        "peak_rss_mib": st["rss"] / 2**20,
                        "compiles": eng.trace_count,
                    }
                )
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(rows, indent=1))
    return rows


def bench_table(rows: list[dict]) -> str:
    lines = [
        "| objective | length | frames | windows | ms / frame (median of rounds) | rounds | peak live JAX arrays "
        "(MiB) | peak RSS (MiB) | window-step compiles |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        per = ", ".join(f"{x:.1f}" for x in r.get("ms_per_frame_rounds", []))
        lines.append(
            f"| {r['objective']} | {r['factor']}x | {r['frames']} | {r['windows']} | {r['ms_per_frame']:.1f} | {per} | "
            f"{r['peak_live_mib']:.2f} | {r['peak_rss_mib']:.0f} | {r['compiles']} |"
        )
    return "\n".join(lines)
