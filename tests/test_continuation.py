"""Long videos (issue #5): sliding-window continuation (videogen/longvideo/continuation.py), the training options it
needs (videogen/train.py build_sequences, world long renders) and the drift measurement (videogen/longvideo/drift.py).

Models are random-init and tiny: a causal tokenizer 16x16, 4x temporal / 8x spatial compression (17 frames ->
5x2x2 latents, 64 codes) and a 2-layer LM of width 32. Quality is not tested here, mechanics are.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tokenizer import train as T
from videogen import lm
from videogen import train as LM
from videogen.data import text as text_lib
from videogen.data import world
from videogen.data.sources import build_source
from videogen.lm import objectives, sampling
from videogen.lm.model import Transformer, TransformerConfig, make_positions, video_token_ids
from videogen.longvideo import continuation as C
from videogen.longvideo import drift

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a small red circle moves to the left", None]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    c = T.load_config(str(ROOT / "experiments/tokenizer_world.py") + ":tiny")
    T.apply_overrides(
        c,
        [
            "data.resolution=16",
            "data.num_frames=17",
            "model.channels=8",
            "model.num_groups=4",
            "model.channel_multipliers=(1,2,2)",
            "model.num_res_blocks=0",
            "model.use_adaptive_group_norm=False",
            "model.temporal_downsample=(True,True)",
            "model.spatial_downsample=(True,False)",
            "quantizer.lfq.num_bits=6",
        ],
    )
    tok = T.Tokenizer(T.autoencoder_config(c), T.quantizer_kwargs(c), rngs=nnx.Rngs(0))
    caps = [world.sample_clip(world.WorldConfig(resolution=32), "train", i).caption for i in range(200)]
    path = text_lib.train_text_tokenizer(caps, tmp_path_factory.mktemp("txt") / "t.model", vocab_size=320)
    tt = text_lib.TextTokenizer(path, 32)
    cfg = TransformerConfig.tiny(text_vocab_size=320, codebook_size=64, max_text_len=32, video_grid=(5, 2, 2))
    return Transformer(cfg, rngs=nnx.Rngs(0)), (tok.autoencoder, tok.quantizer), tt


@pytest.fixture(scope="module")
def engines(parts):
    model, bundle, tt = parts
    overlap = C.decoder_reach(*bundle, (2, 2))
    return {
        obj: C.Continuation(
            model, bundle, tt, objective=obj, context_frames=3, num_steps=3, decode_overlap=overlap
        )
        for obj in C.OBJECTIVES
    }


def test_plan_windows():
    # W=5, K=3: the first window makes 3 latents, every later one 2; the last keeps what is still needed.
    assert C.plan_windows(5, window=5, context=3, objective="maskgit") == [(0, 3, 3), (3, 2, 2)]
    assert C.plan_windows(4, window=5, context=3, objective="next_token", have=1) == [(1, 2, 2), (3, 2, 2)]
    assert C.plan_windows(3, window=5, context=3, objective="maskgit", have=7) == [(3, 2, 2), (3, 2, 1)]
    assert C.latents_for_frames(17) == 5 and C.latents_for_frames(18) == 6 and C.latents_for_frames(1) == 1
    with pytest.raises(ValueError, match="context_frames=5 must be in"):
        C.plan_windows(3, window=5, context=5, objective="maskgit")


@pytest.mark.parametrize("objective", C.OBJECTIVES)
def test_compiles_once_across_windows_and_lengths(engines, objective):
    eng = engines[objective]
    for factor in (1, 2, 4):  # 17, 33, 65 frames: 2, 4, 8 windows
        n = 1 + 16 * factor
        chunks = list(eng.stream([(PROMPTS, n)], seed=factor))
        video = np.concatenate([ch.frames for ch in chunks], axis=1)
        assert video.shape == (2, n, 16, 16, 3) and video.dtype == np.uint8
        assert len(chunks) == len(
            C.plan_windows(C.latents_for_frames(n), window=5, context=3, objective=objective)
        )
        assert [ch.context for ch in chunks][:2] == [0, 3]
    assert eng.trace_count == 1, "the window step was traced more than once"
    assert eng.compiled_count == 1
    # a story (prompts change between windows) and another seed reuse the same program
    eng.stream  # noqa: B018
    list(eng.stream([(PROMPTS, 9), (["a blue square bounces up and down", None], 12)], seed=7))
    assert eng.trace_count == 1 and eng.compiled_count == 1


def test_streamed_decode_equals_whole_decode(engines, parts):
    eng = engines["maskgit"]
    chunks = list(eng.stream([(PROMPTS, 49)], seed=3))
    codes = np.concatenate([ch.codes for ch in chunks], axis=1)
    assert codes.shape == (2, 13, 2, 2)
    streamed = np.concatenate([ch.frames for ch in chunks], axis=1).astype(np.int16)
    whole = np.asarray(T.decode_indices(*parts[1], codes)).astype(np.int16)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() <= 2  # float rounding of different conv lengths only


@pytest.mark.parametrize("objective", C.OBJECTIVES)
def test_continued_video_keeps_given_frames(engines, parts, objective):
    eng = engines[objective]
    spec = world.sample_clip(world.WorldConfig(resolution=16, num_frames=17), "test", 0)
    video = world.render(spec, 11)  # 11 frames: the first 2 are not encoded (1 + 4m = 9), but are kept
    out = eng.continue_video(video, spec.caption, 20, seed=0)
    assert out.shape == (31, 16, 16, 3)
    np.testing.assert_array_equal(out[:11], video)
    chunks = list(eng.stream([([spec.caption], 8)], init_video=video[None]))
    np.testing.assert_array_equal(chunks[0].codes, np.asarray(T.encode_video(*parts[1], video[None, 2:])))
    assert chunks[1].context == 3  # the last 3 of its 3 latent frames are the first window's context


def test_maskgit_context_is_frozen_and_used(engines):
    eng = engines["maskgit"]
    text2 = eng._text2(PROMPTS)
    rng = np.random.default_rng(0)
    ctx = jnp.asarray(rng.integers(0, 64, (2, 12)), jnp.int32)
    out = np.asarray(eng._step(eng._state, text2, ctx, jnp.int32(2), jax.random.key(0), jnp.float32(3.0)))
    np.testing.assert_array_equal(out[:, :8], np.asarray(ctx)[:, :8])  # 2 frames given, frozen
    other = np.asarray(
        eng._step(eng._state, text2, (ctx + 1) % 64, jnp.int32(2), jax.random.key(0), jnp.float32(3.0))
    )
    assert (other[:, 8:] != out[:, 8:]).any()  # the new frames depend on the context


@pytest.fixture(scope="module")
def greedy_next_token(parts):
    model, bundle, tt = parts
    return C.Continuation(
        model,
        bundle,
        tt,
        objective="next_token",
        context_frames=3,
        temperature=0.0,
        guidance=2.0,
        decode_overlap=1,
    )


@pytest.mark.parametrize("c", [0, 2])
def test_next_token_window_matches_uncached_reference(parts, greedy_next_token, c):
    """The cached window step (prefill with empty slots, window-relative positions) == greedy decoding by
    full forward passes over [text | c context frames | new tokens] with no cache and no empty slots."""
    model = parts[0]
    eng = greedy_next_token
    text2 = eng._text2(PROMPTS)
    ctx = jnp.asarray(np.random.default_rng(1).integers(0, 64, (2, 12)), jnp.int32)
    got = np.asarray(eng._step(eng._state, text2, ctx, jnp.int32(c), jax.random.key(0), jnp.float32(2.0)))
    tcfg, P, L = model.config, 4, 32
    n = (3 if c == 0 else 2) * P
    # One fixed length (unused tail = -1, invisible to earlier positions under the causal mask): one compile.
    full = L + 5 * P
    pos = make_positions(tcfg, 4, num_frames=5)
    forward = jax.jit(lambda tokens: model(tokens, pos, mode="causal")[0])
    seq = np.full((4, 5 * P), -1, np.int32)
    seq[:, : c * P] = np.asarray(video_token_ids(tcfg, jnp.concatenate([ctx[:, : c * P]] * 2, axis=0)))
    for i in range(c * P, c * P + n):
        logits = forward(jnp.concatenate([text2, jnp.asarray(seq)], axis=1))
        lp = lm.code_logits(tcfg, logits[:, L + i - 1])
        guided = sampling.cfg_logits(
            lp[:2], lp[2:], 2.0
        )  # [2, G, 2^g]: the joint argmax is the groups' argmaxes
        nxt = np.asarray(
            sampling.sample_logits(jax.random.key(0), guided, 0.0, factorised=lm.factorised(tcfg))
        )
        seq[:, i] = np.concatenate([nxt, nxt]) + tcfg.video_offset
    assert full == L + seq.shape[1]
    np.testing.assert_array_equal(got[:, :n], seq[:2, c * P : c * P + n] - tcfg.video_offset)


def test_errors(engines, parts):
    eng = engines["maskgit"]
    with pytest.raises(ValueError, match="needs 16x16"):
        eng.continue_video(np.zeros((9, 32, 32, 3), np.uint8), "x", 4)
    with pytest.raises(ValueError, match="one per example"):
        list(eng.stream([(["a"], 5), (["a", "b"], 5)]))
    with pytest.raises(ValueError, match="objective"):
        C.Continuation(*parts, objective="diffusion")
    with pytest.raises(ValueError, match="decode overlap 0: at least 1 latent"):
        C.StreamDecoder(eng.ae, eng.quantizer, overlap=0, max_new=2)


# ------------------------------------------------------------------------------------ training options


def test_build_sequences_windows_and_context():
    tcfg = TransformerConfig.tiny(video_grid=(3, 2, 2), max_text_len=4, codebook_size=64)
    b, t_long = 64, 9
    codes = jnp.broadcast_to(jnp.arange(t_long, dtype=jnp.int32)[None, :, None, None], (b, t_long, 2, 2))
    text = jnp.ones((b, 4), jnp.int32)
    _, _, tgt, _ = LM.build_sequences(tcfg, "next_token", codes, text, jax.random.key(0), drop_prob=0.0)
    frames = np.asarray(tgt).reshape(b, 3, 4)[:, :, 0]
    assert (np.diff(frames, axis=1) == 1).all()  # contiguous windows of the long codes
    assert len(set(frames[:, 0])) > 4 and frames[:, 0].max() <= t_long - 3  # at random offsets
    kw = dict(drop_prob=0.0, context_frames=1, context_prob=0.5, context_corruption=0.5)
    tok, _, tgt, w = LM.build_sequences(tcfg, "maskgit", codes, text, jax.random.key(1), **kw)
    w, video = np.asarray(w), np.asarray(tok[:, 4:]) - tcfg.video_offset
    cont = (w[:, :4] == 0).all(1) & (np.asarray(tgt)[:, 0] >= 0)
    given = w[:, :4] == 0
    assert 0.25 < (w[:, :4].sum(1) == 0).mean() < 0.95  # continuation examples: context never scored...
    is_cont = np.array(
        [(video[i, :4] != tcfg.mask_token_id - tcfg.video_offset).all() and given[i].all() for i in range(b)]
    )
    assert is_cont.any() and cont.any()
    changed = video[is_cont, :4] != np.asarray(tgt)[is_cont, :4]
    assert 0.2 < changed.mean() < 0.7  # ~half the context tokens replaced (some by the same code)
    assert (video[:, 4:][w[:, 4:] == 0] == np.asarray(tgt)[:, 4:][w[:, 4:] == 0]).all()  # rest: clean or MASK
    with pytest.raises(ValueError, match="context_frames=3 must be in"):
        LM.build_sequences(
            tcfg, "maskgit", codes, text, jax.random.key(1), drop_prob=0.0, context_frames=3, context_prob=0.5
        )


def test_maskgit_frames_masks_per_frame_behind_a_clean_prefix():
    t, p, b = 4, 6, 512
    tcfg = TransformerConfig.tiny(video_grid=(t, 2, 3), max_text_len=4, codebook_size=64)
    codes = jax.random.randint(jax.random.key(0), (b, t, 2, 3), 0, 64)
    tok, _, tgt, w = LM.build_sequences(
        tcfg, "maskgit_frames", codes, jnp.ones((b, 4), jnp.int32), jax.random.key(3), drop_prob=0.0
    )
    video = np.asarray(tok[:, 4:]).reshape(b, t, p)
    masked = video == tcfg.mask_token_id
    np.testing.assert_array_equal(np.asarray(w).reshape(b, t, p), masked)  # scored = masked, targets clean
    np.testing.assert_array_equal(
        np.where(masked, -1, video - tcfg.video_offset),
        np.where(masked, -1, np.asarray(tgt).reshape(b, t, p)),
    )
    per_frame = masked.sum(-1)  # [B, t]
    prefix = np.argmax(per_frame > 0, axis=1)  # first frame with a mask (every later frame has >= 1)
    assert all(
        (per_frame[i, : prefix[i]] == 0).all() and (per_frame[i, prefix[i] :] >= 1).all() for i in range(b)
    )
    counts = np.bincount(prefix, minlength=t) / b
    assert np.all(np.abs(counts - 1 / t) < 0.07), counts  # clean prefix of 0..t-1 frames, uniformly
    # Frames after the prefix draw their own ratio: within an example their mask counts differ.
    late = per_frame[prefix <= 1][:, 2:]
    assert (late.max(1) != late.min(1)).mean() > 0.5
    # no_prefix_prob: that much extra probability of no clean prefix (frame 0 trained): 0.5 + 0.5 / t.
    _, _, _, w = LM.build_sequences(
        tcfg,
        "maskgit_frames",
        codes,
        jnp.ones((b, 4), jnp.int32),
        jax.random.key(4),
        drop_prob=0.0,
        no_prefix_prob=0.5,
    )
    frame0_masked = np.asarray(w).reshape(b, t, p)[:, 0].any(-1).mean()
    assert abs(frame0_masked - (0.5 + 0.5 / t)) < 0.07, frame0_masked
    # prefix_weights: the clean prefix's length follows them (and no_prefix_prob is then unused).
    _, _, _, w = LM.build_sequences(
        tcfg,
        "maskgit_frames",
        codes,
        jnp.ones((b, 4), jnp.int32),
        jax.random.key(5),
        drop_prob=0.0,
        no_prefix_prob=0.5,
        prefix_weights=(0.2, 0.6, 0.2, 0.0),
    )
    prefix = np.argmax(np.asarray(w).reshape(b, t, p).any(-1), axis=1)
    np.testing.assert_allclose(np.bincount(prefix, minlength=t) / b, [0.2, 0.6, 0.2, 0.0], atol=0.07)
    with pytest.raises(ValueError, match="give 4 non-negative weights"):
        objectives.frame_masks(jax.random.key(0), 2, (t, p), "cosine", prefix_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="not all zero"):
        objectives.check_prefix_weights((0.0,) * t, t)
    with pytest.raises(ValueError, match="objective"):
        lm.check_objective("maskgit_all")
    assert C.OBJECTIVES == LM.OBJECTIVES


def test_world_long_renders():
    cfg = world.WorldConfig(resolution=16, num_frames=9)
    long = world.WorldSource(cfg, "train", 4, render_frames=33)[1]
    short = world.WorldSource(cfg, "train", 4)[1]
    assert long["video"].shape == (33, 16, 16, 3) and long["positions"].shape[0] == 33
    np.testing.assert_array_equal(long["video"][:9], short["video"])
    assert long["caption"] == short["caption"]
    src = build_source({"kind": "world", "resolution": 16, "num_frames": 9, "render_frames": 17}, "train")
    assert src[0]["video"].shape[0] == 17
    with pytest.raises(ValueError, match="render_frames=5 must be >= num_frames=9"):
        world.WorldSource(cfg, "train", 4, render_frames=5)


# ------------------------------------------------------------------------------------------- drift


def test_drift_truth_is_perfect_and_damage_is_caught(tmp_path):
    specs = drift.world_prompts(32, 4)
    truth = drift.truth_videos(specs, 65)
    r = drift.measure_videos(list(truth), specs)
    assert len(r["windows"]) == 4 and r["overall"]["bounce_cases"] > 0
    for row in r["windows"]:
        assert row["judge"] == 100.0 and row["persistence"] == 100.0 and row["identity"] == 100.0
    assert r["overall"]["bounces"] == 100.0 and all(r["summary"]["checks"].values())
    bad = truth.copy()
    bad[:, 40:] = 0  # everything vanishes after frame 40
    frozen = truth.copy()
    frozen[:, 20:] = truth[:, 20:21]  # motion stops: no bounce after frame 20
    rb, rf = drift.measure_videos(list(bad), specs), drift.measure_videos(list(frozen), specs)
    assert rb["windows"][0]["judge"] == 100.0 and rb["windows"][-1]["judge"] == 0.0
    assert rb["overall"]["persistence"] < 70 and not rb["summary"]["checks"]["persistence_ge_95"]
    assert rf["overall"]["bounces"] < 50 and rf["overall"]["persistence"] == 100.0
    js, png = drift.write_report(rb, tmp_path)
    assert json.loads(js.read_text())["summary"]["judge_drop"] == 100.0
    from PIL import Image

    assert Image.open(png).size[0] > 500


def test_cli_continue_drift_truth(tmp_path, capsys):
    from videogen import cli

    cli.main(
        [
            "continue",
            "--drift",
            "--truth",
            "--num",
            "2",
            "--frames",
            "33",
            "--resolution",
            "32",
            "--out",
            str(tmp_path),
            "--prompt",
            "a red circle moves up",
        ]
    )
    out = capsys.readouterr()
    assert "checks" in out.out and "--prompt ignored" in out.err
    assert (tmp_path / "drift.json").is_file() and (tmp_path / "drift.png").is_file()


@pytest.mark.slow  # its own compiled train step (~30-60 s on 2 busy cores)
def test_trainer_long_renders_and_continuation(tmp_path):
    """LM.train with data.render_frames (windows at offsets of longer renders) and continuation training on."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_t_lm", ROOT / "tests" / "test_lm_train.py")
    t_lm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t_lm)
    tok_dir = (
        t_lm.tok_dir.__wrapped__(
            type("F", (), {"mktemp": lambda self, n: (tmp_path / n).mkdir() or tmp_path / n})()
        )
        if hasattr(t_lm.tok_dir, "__wrapped__")
        else None
    )
    if tok_dir is None:
        pytest.skip("test_lm_train.tok_dir fixture is not callable here")
    c = t_lm.lm_config(
        tok_dir,
        steps=3,
        **{
            "data.render_frames": 33,
            "continuation.prob": 0.5,
            "continuation.context_frames": 2,
            "continuation.corruption": 0.2,
        },
    )
    m = LM.train(c, tmp_path / "lm")
    assert m["step"] == 3 and np.isfinite(m["train/loss"])
