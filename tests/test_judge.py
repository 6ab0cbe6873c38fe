"""The judge: near-perfect on ground truth, robust to tokenizer-like damage, and able to say no."""

import dataclasses

import numpy as np
import pytest

from videogen.data import captions, damage, world
from videogen.eval import judge


def _accuracy(resolution, n, damage_kind=None, split="test"):
    src = world.WorldSource(world.WorldConfig(resolution=resolution), split, num_clips=n)
    rng = np.random.default_rng(123)
    hurt = damage.KINDS[damage_kind] if damage_kind else (lambda v, r: v)
    ok = [judge.judge_video(hurt(src[i]["video"], rng), src[i]["caption"]).all_correct for i in range(n)]
    return float(np.mean(ok))


@pytest.mark.slow
# 500 clips (150 at 128 px) keep make test within its budget: these cost ~20 ms per 64-px clip alone and 3-6x
# that in the suite next to another worker. Strict motion rule, measured 2026-12-07: no miss in the first 1,000 clips at 32,
# 600 at 64 px, 150 at 128 px, and none with all damage on 300 at 64 px / 150 at 128 px (the cases below are prefixes).
@pytest.mark.parametrize("resolution,n,minimum", [(32, 500, 0.995), (64, 500, 0.995), (128, 150, 0.995)])
def test_ground_truth_many_clips(resolution, n, minimum):
    assert _accuracy(resolution, n) >= minimum


@pytest.mark.slow
@pytest.mark.parametrize("resolution,n", [(64, 300), (128, 120)])
def test_tokenizer_like_damage(resolution, n):
    assert _accuracy(resolution, n, "all") >= 0.97


@pytest.mark.parametrize("kind", ["blur", "noise", "jpeg", "colour_shift"])
def test_each_kind_of_damage(kind):
    assert _accuracy(64, 150, kind) >= 0.97


def test_heldout_split_judged_too():
    assert _accuracy(64, 150, split="heldout") >= 0.99


def _changed(obj: captions.ObjectPhrase, attribute: str, used_colours) -> captions.ObjectPhrase:
    if attribute == "colour":
        new = next(c for c in captions.COLOUR_NAMES if c not in used_colours)
    elif attribute == "shape":
        new = captions.SHAPES[(captions.SHAPES.index(obj.shape) + 1) % 3]
    elif attribute == "size":
        new = "large" if obj.size == "small" else "small"
    else:
        opposite = {
            "left": "right",
            "right": "left",
            "up": "down",
            "down": "up",
            "up-left": "down-right",
            "down-right": "up-left",
            "up-right": "down-left",
            "down-left": "up-right",
            "still": "left",
            "bounce-horizontal": "bounce-vertical",
            "bounce-vertical": "still",
        }
        new = opposite[obj.motion]
    return dataclasses.replace(obj, **{attribute: new})


@pytest.mark.parametrize("attribute", ["colour", "shape", "size", "motion"])
def test_wrong_captions_are_rejected(attribute):
    src = world.WorldSource(world.WorldConfig(resolution=64), "test")
    rng = np.random.default_rng(0)
    rejected = total = 0
    for i in range(120):
        ex = src[i]
        objs = captions.parse_caption(ex["caption"])
        if attribute == "size" and objs[0].size is None:
            continue
        wrong = [_changed(objs[0], attribute, {o.colour for o in objs})] + objs[1:]
        total += 1
        rejected += not judge.judge_video(ex["video"], captions.write_caption(wrong, rng)).all_correct
    assert total > 50 and rejected / total >= 0.98


def test_tracks_follow_ground_truth_positions():
    src = world.WorldSource(world.WorldConfig(resolution=64, max_objects=3), "test")
    for i in range(30):
        ex = src[i]
        verdict = judge.judge_video(ex["video"], ex["caption"])
        for k, phrase in enumerate(captions.parse_caption(ex["caption"])):
            track = verdict.tracks[phrase.colour]
            assert track.present.all() and (track.count == 1).all()
            assert np.abs(track.centre - ex["positions"][:, k]).max() < 0.5


def test_missing_and_extra_objects():
    ex = world.WorldSource(world.WorldConfig(resolution=64, min_objects=2, max_objects=2), "test")[0]
    first, second = captions.parse_caption(ex["caption"])
    black = np.zeros_like(ex["video"])
    verdict = judge.judge_video(black, ex["caption"])
    assert not verdict.all_correct and not any(o.colour_found for o in verdict.objects)
    # Naming only one of two objects: the other is an extra object.
    only_first = captions.write_caption([first], np.random.default_rng(0))
    verdict = judge.judge_video(ex["video"], only_first)
    assert verdict.objects[0].correct and verdict.extra_colours == [second.colour]
    assert not verdict.all_correct
    # An object that vanishes halfway is not found.
    half = ex["video"].copy()
    half[: len(half) // 2 + 2] = 0
    assert not judge.judge_video(half, ex["caption"]).all_correct
    # One object drawn twice (a copy half a canvas away): the caption names one, so it is wrong.
    one = world.WorldSource(world.WorldConfig(resolution=64, min_objects=1, max_objects=1), "test")[0]
    (only,) = captions.parse_caption(one["caption"])
    assert judge.judge_video(one["video"], one["caption"]).all_correct
    twice = judge.judge_video(np.maximum(one["video"], np.roll(one["video"], 32, axis=2)), one["caption"])
    assert twice.duplicated == [only.colour] and not twice.all_correct


def test_bad_inputs_are_clear_errors():
    video = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(captions.CaptionParseError):
        judge.judge_video(video, "a teapot flies")
    with pytest.raises(TypeError, match="uint8"):
        judge.judge_video(video.astype(np.float32), "a red circle moves left")
    with pytest.raises(ValueError, match=r"\[T, R, R, 3\]"):
        judge.judge_video(np.zeros((4, 32, 48, 3), np.uint8), "a red circle moves left")


def test_score_aggregates():
    src = world.WorldSource(world.WorldConfig(resolution=32), "test")
    videos = [src[i]["video"] for i in range(10)]
    caps = [src[i]["caption"] for i in range(10)]
    videos[0] = np.zeros_like(videos[0])
    result = judge.score(videos, caps)
    assert result["num_clips"] == 10 and result["all_correct"] == pytest.approx(0.9)
    assert result["colour"] < 1.0 and result["motion"] == 1.0
    # The same figure per object count: the blanked clip counts against its own kind of prompt only.
    counts = [len(captions.parse_caption(c)) for c in caps]
    for n, suffix in ((1, "1_object"), (2, "2_objects")):
        kind = [i for i, k in enumerate(counts) if k == n]
        assert result[f"num_clips_{suffix}"] == len(kind) > 0
        expected = np.mean([i != 0 for i in kind])
        assert result[f"all_correct_{suffix}"] == pytest.approx(expected)


def _clip_along(path, motion, *, resolution=32, colour="red", shape="circle", size="large"):
    """A one-object clip whose centre follows ``path [T, 2]`` exactly, with a caption saying ``motion``."""
    frames = []
    for x, y in path:
        obj = world.ObjectSpec(colour, shape, size, motion, (float(x), float(y)), (0.0, 0.0))
        frames.append(world.render(world.ClipSpec(resolution, 1, (obj,), ""), 1)[0])
    caption = captions.write_caption(
        [captions.ObjectPhrase(colour, shape, size, motion)], np.random.default_rng(0)
    )
    return np.stack(frames), caption


def _motion(video, caption, lenient=False):
    return judge.judge_video(video, caption, lenient=lenient).objects[0].detected_motion


def test_strict_motion_moves_then_stops_fails():
    # Right at 1 px per frame for 5 frames, then still: the lenient rule called that "right".
    x = np.concatenate([10 + np.arange(6), np.full(11, 15.0)])
    video, caption = _clip_along(np.stack([x, np.full(17, 16.0)], -1), "right")
    assert _motion(video, caption, lenient=True) == "right"
    assert _motion(video, caption) is None and not judge.judge_video(video, caption).all_correct
    # The same speed over the whole clip passes.
    video, caption = _clip_along(np.stack([8 + np.arange(17), np.full(17, 16.0)], -1), "right")
    assert _motion(video, caption) == "right"


def test_strict_motion_turn_is_not_a_direction():
    # Right for half the clip, then up: a curve, not a line.
    x = np.concatenate([8 + np.arange(9), np.full(8, 16.0)])
    y = np.concatenate([np.full(9, 24.0), 24.0 - np.arange(1, 9)])
    video, caption = _clip_along(np.stack([x, y], -1), "up-right")
    assert _motion(video, caption) is None


def test_strict_bounce_must_reverse_at_the_wall():
    # A horizontal back-and-forth in mid-canvas (turning at x = 20, far from the right wall at 32).
    x = np.concatenate([10 + 1.5 * np.arange(8), 20.5 - 1.5 * np.arange(1, 10)])
    video, caption = _clip_along(np.stack([x, np.full(17, 16.0)], -1), "bounce-horizontal")
    assert _motion(video, caption, lenient=True) == "bounce-horizontal"
    assert _motion(video, caption) != "bounce-horizontal"
    # The same path moved right so that it turns with its edge at the wall (large circle: r = 5.76 px).
    wall_x = x + (32 - 5.76 - x.max())
    video, caption = _clip_along(np.stack([wall_x, np.full(17, 16.0)], -1), "bounce-horizontal")
    assert _motion(video, caption) == "bounce-horizontal"
    # ... but drifting down by 3 px on the way is not a horizontal bounce.
    video, caption = _clip_along(np.stack([wall_x, 14 + 3 * np.arange(17) / 16], -1), "bounce-horizontal")
    assert _motion(video, caption) != "bounce-horizontal"
    # ... nor is one that slows to a crawl after the wall.
    slow_x = np.concatenate([wall_x[:9], wall_x[8] - 0.3 * np.arange(1, 9)])
    video, caption = _clip_along(np.stack([slow_x, np.full(17, 16.0)], -1), "bounce-horizontal")
    assert _motion(video, caption) != "bounce-horizontal"


def test_strict_still_stays_put():
    video, caption = _clip_along(np.full((17, 2), 16.0), "still")
    assert _motion(video, caption) == "still"
    wander = np.stack([16 + 2.5 * np.sin(np.arange(17) / 3), np.full(17, 16.0)], -1)
    video, caption = _clip_along(wander, "still")
    assert _motion(video, caption) != "still"
