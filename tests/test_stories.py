"""Story mode, judged (experiments/long_video.py ``stories``): the stories and the scoring of each segment."""

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np

from videogen.data import world
from videogen.data.captions import parse_caption
from videogen.eval import judge

_spec = importlib.util.spec_from_file_location(
    "long_video", Path(__file__).resolve().parents[1] / "experiments" / "long_video.py"
)
long_video = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(long_video)


def test_stories_change_only_the_motion_and_the_change_is_feasible():
    stories = long_video.story_specs(16, resolution=32)
    assert len(stories) == 16
    for caption1, caption2, spec in stories:
        (first,), (second,) = parse_caption(caption1), parse_caption(caption2)
        assert (first.colour, first.shape, first.size) == (second.colour, second.shape, second.size)
        assert second.motion != first.motion and not second.motion.startswith("bounce")
        # Segment 2 as the world would draw it from where the object is at frame 16 is judged correct.
        obj = spec.objects[0]
        end = world.trajectory(obj, 32, 17)[-1]
        if second.motion == "still":
            velocity = (0.0, 0.0)
        else:
            direction = np.asarray(long_video.DIRECTIONS[second.motion], float)
            velocity = tuple(
                float(v) for v in max(world.DIRECTION_SPEED) * 32 * direction / np.hypot(*direction)
            )
        moved_obj = dataclasses.replace(obj, start=tuple(end), velocity=velocity)
        moved = world.ClipSpec(32, 17, (moved_obj,), caption2)
        assert judge.judge_video(world.render(moved), caption2).all_correct, (caption2, end)


def test_stories_are_deterministic():
    assert [s[:2] for s in long_video.story_specs(4)] == [s[:2] for s in long_video.story_specs(4)]
