"""Long videos: sliding-window continuation over latent frames, from tokens.

The LM (videogen/model.py) sees a window of ``W`` latent frames (its ``video_grid[0]``; 5 for 17-frame
clips) of ``P = h * w`` tokens each. A video of any length is generated window after window: each new
window is conditioned on the text and on the **tokens** of the last ``K`` latent frames already made
(``context_frames``, ``1 <= K < W``) -- never a decode / re-encode round trip through pixels -- and its
positions are window-relative (frames ``0 .. W-1``), so nothing depends on the absolute frame index.

Per window (:class:`Continuation`; both objectives, with classifier-free guidance):

* ``maskgit`` -- the window's first ``c`` frames are the context, given and frozen (MaskGIT never
  re-masks given tokens), the other ``W - c`` frames start as ``[MASK]`` and are decoded in
  ``num_steps`` parallel steps. The first window of a prompt has ``c = 0`` (a normal sample).
* ``next_token`` -- ``[text | K context frames]`` is prefilled into the KV cache in one call, then the
  ``(W - K) P`` new tokens are sampled one by one (``ar_decode``). With fewer than ``K`` context frames
  (the first window, a short user video) the missing frames' slots are empty (token ``-1``), which the
  model masks out as keys: the same program serves every window.

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
  continued one after another, each window conditioned on its segment's prompt;
* :meth:`Continuation.predict_frames` -- frame prediction (the K600 protocol: given the first frames of
  clips, generate the rest).

Frame counts: the causal tokenizer maps ``1 + 4m`` frames to ``1 + m`` latent frames (frame 0 alone), so a
video of ``N`` frames needs ``1 + ceil((N - 1) / 4)`` latents (extra decoded frames are cut); a user's video
of ``T`` frames loses its first ``(T - 1) % 4`` frames for encoding (the kept frames are the last ones,
which the continuation follows) -- they are still returned unchanged.

CLI: ``videogen continue --workdir runs/lm --prompt "..." --frames 272`` (``make continue``); long-video
training and the drift measurement: experiments/long_video.py and videogen/drift.py.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from videogen import sampling
from videogen.data.text import PAD_ID
from videogen.model import make_positions, video_token_ids

__all__ = ["Continuation", "StreamDecoder", "decoder_reach", "latents_for_frames", "plan_windows"]

OBJECTIVES = ("next_token", "maskgit")


def latents_for_frames(num_frames: int, temporal_compression: int = 4) -> int:
    """Latent frames needed for ``num_frames`` pixel frames: ``1 + ceil((N - 1) / c_t)``."""
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be >= 1.")
    return 1 + -(-(int(num_frames) - 1) // int(temporal_compression))


def plan_windows(num_new: int, *, window: int, context: int, objective: str, have: int = 0) -> list[tuple[int, int, int]]:
    """The windows that make ``num_new`` latent frames after ``have`` existing ones.

    Returns ``[(c, made, kept), ...]``: context frames given to the window (``min(context, frames so
    far)``), new frames it makes (``window - c`` for maskgit, ``window - context`` for next_token) and how
    many of them are kept (the last window's surplus is dropped: causal, so dropping it changes nothing
    before it).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}: must be one of {OBJECTIVES}.")
    if not 1 <= context < window:
        raise ValueError(f"context_frames={context} must be in [1, {window - 1}] for a model window of {window} "
                         "latent frames.")
    plan, so_far, left = [], int(have), int(num_new)
    while left > 0:
        c = min(context, so_far)
        made = window - c if objective == "maskgit" else window - context
        kept = min(made, left)
        plan.append((c, made, kept))
        so_far += kept
        left -= kept
    return plan


# ----------------------------------------------------------------------------------------------- decoding


def _decode_fn(ae, quantizer):
    from tokenizer import train as tok_train

    return lambda codes: tok_train.decode_indices(ae, quantizer, codes)


def decoder_reach(ae, quantizer, grid_hw: tuple[int, int], *, max_reach: int = 8, seed: int = 0,
                  tolerance: int = 2) -> int:
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
        if all(ok[o - 1:]):
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
        self.history: np.ndarray | None = None  # last `overlap` latents [B, <=o, h, w]
        self.count = 0  # latents seen

    def prime(self, codes: np.ndarray) -> None:
        codes = np.asarray(codes, np.int32)
        self.history = codes[:, max(0, codes.shape[1] - self.overlap):]
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
        out = frames[:, lo: ct * (o + n - 1) + 1]
        both = np.concatenate([hist, codes], axis=1)
        self.history = both[:, max(0, both.shape[1] - self.overlap):]
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
        model: the :class:`videogen.model.Transformer` (e.g. from ``videogen.train.load_lm``).
        tokenizer_bundle: ``(autoencoder, quantizer, ...)``.
        text_tokenizer: the LM's :class:`videogen.data.text.TextTokenizer`.
        objective: ``'maskgit'`` or ``'next_token'`` (how the model was trained).
        context_frames: ``K`` latent frames of context per window (default ``W - 2``, at least 1).
        num_steps, schedule: MaskGIT decoding. guidance, temperature, top_k: sampling (CFG scale 1 =
            conditional, 0 = unconditional).
        decode_overlap: decoder history in latents (default: :func:`decoder_reach`, measured once).
    """

    def __init__(self, model, tokenizer_bundle, text_tokenizer, *, objective: str, context_frames: int | None = None,
                 num_steps: int = 12, guidance: float = 3.0, temperature: float = 1.0, top_k: int | None = None,
                 schedule: str = "cosine", decode_overlap: int | None = None):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}: must be one of {OBJECTIVES}.")
        tcfg = model.config
        if tcfg.remat != "none":  # no backward pass; nnx.remat cannot run inside the decode loops
            from videogen.train import abstract_model

            model = nnx.merge(abstract_model(dataclasses.replace(tcfg, remat="none"))[0],
                              *nnx.split(model, nnx.Param, ...)[1:])
            tcfg = model.config
        if text_tokenizer.max_length != tcfg.max_text_len:
            raise ValueError(f"text tokenizer max_length={text_tokenizer.max_length} != model max_text_len="
                             f"{tcfg.max_text_len}: use the text tokenizer saved with this LM.")
        self.model, self.tcfg, self.objective = model, tcfg, objective
        self.ae, self.quantizer = tokenizer_bundle[0], tokenizer_bundle[1]
        self.text_tokenizer = text_tokenizer
        self.window, self.h, self.w = tcfg.video_grid
        if self.window < 2:
            raise ValueError(f"the model's window has {self.window} latent frame(s); continuation needs >= 2 "
                             "(train on clips of >= 5 frames with a 4x temporal tokenizer).")
        self.context = max(1, self.window - 2) if context_frames is None else int(context_frames)
        plan_windows(1, window=self.window, context=self.context, objective=objective)  # validates K
        if int(self.quantizer.codebook_size) != tcfg.codebook_size:
            raise ValueError(f"tokenizer codebook {self.quantizer.codebook_size} != LM codebook {tcfg.codebook_size}: "
                             "use the tokenizer the LM was trained on.")
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
        maskgit: window codes [B, W P]; next_token: new codes [B, (W - K) P]."""
        self.trace_count += 1  # Python side effect: runs once per trace (compile), never per call
        tcfg, K, W, P = self.tcfg, self.context, self.window, self.tokens_per_frame
        model = nnx.merge(self._graphdef, state)
        L, C = tcfg.max_text_len, tcfg.codebook_size
        b2 = text2.shape[0]
        b = b2 // 2
        from videogen.train import _code_logits

        if self.objective == "maskgit":
            positions = make_positions(tcfg, b2)
            frame = jnp.arange(W * P) // P
            init = jnp.concatenate([ctx, jnp.full((b, (W - K) * P), C, jnp.int32)], axis=1)
            init = jnp.where(frame[None] < c, init, C)

            def logits_fn_2b(codes2):
                video = jnp.where(codes2 == C, tcfg.mask_token_id, video_token_ids(tcfg, codes2))
                logits, _ = model(jnp.concatenate([text2, video], axis=1), positions, mode="prefix_bidirectional_video")
                return _code_logits(tcfg, logits[:, L:])

            out = sampling.maskgit_decode(sampling.guided(logits_fn_2b, guidance), init, rng=rng, mask_id=C,
                                          num_steps=self.num_steps, schedule=self.schedule,
                                          temperature=self.temperature, top_k=self.top_k)
            return out.tokens

        # next_token: prefill [text | K context frames] (frames >= c empty: token -1, masked as keys)
        n_new = (W - K) * P
        slot_frame = jnp.arange(K * P) // P
        ctx2 = jnp.concatenate([ctx, ctx], axis=0)
        ctx_tok = jnp.where(slot_frame[None] < c, video_token_ids(tcfg, ctx2), -1)
        pos = make_positions(tcfg, b2, num_frames=K)  # window-relative frames 0..K-1
        cache = model.init_cache(b2, L + W * P)
        logits, cache = model(jnp.concatenate([text2, ctx_tok], axis=1), pos, mode="causal", cache=cache,
                              cache_index=0)
        last = jax.lax.dynamic_index_in_dim(logits, L + c * P - 1, axis=1, keepdims=False)
        lp = _code_logits(tcfg, last)
        k0, rng = jax.random.split(rng)
        first = sampling.sample_logits(k0, sampling.cfg_logits(lp[:b], lp[b:], guidance), self.temperature,
                                       self.top_k)
        start = L + K * P

        def step_fn_2b(cache, codes_b, index):
            j = index - start  # new token j of the window: frame c + j // P
            f, hw = c + j // P, j % P
            p = jnp.stack([L + f, L + hw // self.w, L + hw % self.w]).astype(jnp.int32)
            tok = video_token_ids(tcfg, codes_b)[:, None]
            logits, cache = model(tok, jnp.broadcast_to(p, (b2, 1, 3)), mode="causal", cache=cache,
                                  cache_index=index)
            return _code_logits(tcfg, logits[:, 0]), cache

        rest, _ = sampling.ar_decode(sampling.guided_step(step_fn_2b, guidance), cache, first_token=first, rng=rng,
                                     num_tokens=n_new - 1, temperature=self.temperature, top_k=self.top_k,
                                     start_index=start)
        return jnp.concatenate([first[:, None], rest], axis=1)

    # -- helpers -------------------------------------------------------------------------------------

    def _text2(self, prompts: Sequence[str | None]) -> jax.Array:
        L = self.tcfg.max_text_len
        cond = np.stack([self.text_tokenizer.encode(p)[0] if p is not None else np.full(L, PAD_ID, np.int32)
                         for p in prompts]).astype(np.int32)
        return jnp.asarray(np.concatenate([cond, np.full_like(cond, PAD_ID)], axis=0))

    def encode(self, video: np.ndarray) -> tuple[np.ndarray, int]:
        """uint8 ``[B, T, H, W, 3]`` -> (codes ``[B, 1 + (T' - 1) / c_t, h, w]``, frames dropped at the
        start ``T - T'`` so that ``T' = 1 + c_t m``)."""
        from tokenizer import train as tok_train

        video = np.asarray(video)
        if video.ndim != 5 or video.shape[-1] != 3 or video.dtype != np.uint8:
            raise ValueError(f"video must be uint8 [B, T, H, W, 3], got {video.dtype} {video.shape}; read a file "
                             "with videogen.video_io.read_video(path, size=R).")
        ct, cs = self.ct, self.ae.config.spatial_compression
        want = (self.h * cs, self.w * cs)
        if video.shape[2:4] != want:
            raise ValueError(f"video frames are {video.shape[2]}x{video.shape[3]}; this LM's tokenizer grid "
                             f"{self.h}x{self.w} needs {want[0]}x{want[1]}: resize it (videogen continue --video "
                             f"does, or read_video(path, size={want[0]})).")
        drop = (video.shape[1] - 1) % ct
        codes = np.asarray(tok_train.encode_video(self.ae, self.quantizer, video[:, drop:]), np.int32)
        return codes, drop

    # -- the generator ---------------------------------------------------------------------------------

    def stream(self, segments: Sequence[tuple[Sequence[str | None], int]], *, seed: int = 0,
               init_video: np.ndarray | None = None) -> Iterator[Chunk]:
        """Yields :class:`Chunk` s window by window; constant memory whatever the length.

        ``segments``: ``[(prompts (one per example), num_frames), ...]`` -- the frames each segment adds.
        ``init_video``: uint8 ``[B, T, H, W, 3]`` to continue (yielded first, unchanged, as window -1).
        """
        if not segments:
            raise ValueError("segments is empty: give at least one (prompts, num_frames).")
        batch = len(segments[0][0])
        for i, (prompts, n) in enumerate(segments):
            if len(prompts) != batch:
                raise ValueError(f"segment {i} has {len(prompts)} prompts; every segment needs one per example "
                                 f"({batch}).")
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
            target += int(n_frames)  # frames wanted by the end of this segment (prompts switch at latent frames)
            if given_frames:  # after a given video of F_u latents: c_t frames per new latent
                need = given_latents + -(-(target - given_frames) // ct) - latents
            else:
                need = latents_for_frames(target, ct) - latents
            for c, made, kept in plan_windows(max(need, 0), window=W, context=K, objective=self.objective,
                                              have=latents):
                ctx = np.zeros((batch, K * P), np.int32)
                if c:
                    ctx[:, : c * P] = hist[:, -c:].reshape(batch, c * P)
                out = np.asarray(self._step(self._state, text2, jnp.asarray(ctx), jnp.int32(c),
                                            jax.random.fold_in(key, window), jnp.float32(self.guidance)))
                out = out.reshape(batch, -1, self.h, self.w)
                new = out[:, c: c + kept] if self.objective == "maskgit" else out[:, :kept]
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

    def continue_video(self, video: np.ndarray, prompts: Sequence[str | None], num_frames: int, *,
                       seed: int = 0) -> np.ndarray:
        """The given video(s) ``[B, T, H, W, 3]`` (or one ``[T, H, W, 3]``) unchanged, then ``num_frames``
        more, conditioned on the tokens of their last ``K`` latent frames and on the prompts."""
        video = np.asarray(video)
        single = video.ndim == 4
        video = video[None] if single else video
        if isinstance(prompts, str) or prompts is None:
            prompts = [prompts] * video.shape[0]
        out = self._collect(self.stream([(list(prompts), int(num_frames))], seed=seed, init_video=video))
        return out[0] if single else out

    def story(self, segments: Sequence[tuple[str | None, int]], *, seed: int = 0,
              init_video: np.ndarray | None = None) -> np.ndarray:
        """Phenaki-style story: ``[(prompt, num_frames), ...]`` continued one after another -> uint8
        ``[T, H, W, 3]`` (one video; ``init_video [T0, H, W, 3]`` optionally first)."""
        init = None if init_video is None else np.asarray(init_video)[None]
        out = self._collect(self.stream([([p], int(n)) for p, n in segments], seed=seed, init_video=init))
        return out[0]

    def predict_frames(self, context_video: np.ndarray, total_frames: int, prompts: Sequence[str | None] | None = None,
                       *, seed: int = 0) -> np.ndarray:
        """Frame prediction (K600 protocol): clips' first frames ``[B, T0, H, W, 3]`` -> the clips completed
        to ``total_frames`` (the given frames unchanged)."""
        context_video = np.asarray(context_video)
        t0 = context_video.shape[1]
        if total_frames <= t0:
            raise ValueError(f"total_frames={total_frames} must exceed the {t0} given frames.")
        prompts = [None] * context_video.shape[0] if prompts is None else list(prompts)
        return self.continue_video(context_video, prompts, total_frames - t0, seed=seed)

    @property
    def compiled_count(self) -> int:
        """Compiled variants of the window step held by jit (1 per batch size / option set)."""
        return int(self._step._cache_size())


def from_workdir(workdir, *, objective: str | None = None, **kwargs) -> Continuation:
    """A :class:`Continuation` from an LM workdir (EMA weights); ``objective`` defaults to the trained one."""
    from videogen.train import load_lm

    model, bundle, text_tok, config = load_lm(workdir)
    return Continuation(model, bundle, text_tok, objective=objective or config.objective, **kwargs)


def window_frames(num_frames: int, window: int = 17, stride: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` pixel-frame windows of a video for per-window scoring (non-overlapping
    by default: stride ``window - 1`` so consecutive windows share one frame, like 17-frame clips)."""
    stride = window - 1 if stride is None else int(stride)
    if num_frames < window:
        return [(0, num_frames)]
    return [(s, s + window) for s in range(0, num_frames - window + 1, stride)]


__all__ += ["Chunk", "from_workdir", "window_frames"]
