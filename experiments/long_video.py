"""Long videos (issue #5): an LM trained for sliding-window continuation, and the runs that measure it.

A config for ``python -m videogen.train`` (``get_config(arg)``, variants ``default`` and ``tiny``) that is
experiments/lm_world.py plus the two long-video training options of videogen/train.py:

* ``data.render_frames = 65``: the world renders 65 frames of every clip (16 latent frames; the caption
  still describes the first 17) and each example is a window of the model's 5 latent frames at a random
  offset, so most training windows start mid-clip, after bounces, as continuation windows do;
* ``continuation``: half the examples are continuation examples (their first ``context_frames = 3`` latent
  frames given, not masked and not scored -- the window layout of videogen/longvideo/continuation.py with its
  default ``K = W - 2 = 3``), and 10 % of those context tokens are replaced by random codes
  (``corruption``; exposure bias: generated context is never perfect).

Commands (trained tokenizer first: experiments/tokenizer_world.py)::

    python -m videogen.train --config experiments/long_video.py --workdir runs/lm_long \\
        --config.tokenizer_workdir=runs/tok_world --config.peak_flops=989e12
    videogen continue --workdir runs/lm_long --prompt "a small red circle moves to the left" --length-factor 16
    videogen continue --workdir runs/lm_long --drift --num 64 --length-factor 16 --fvd    # drift.json + drift.png
    videogen continue --drift --truth --num 64                                          # the scorer on ground truth
    videogen continue --bench                                                           # time / memory per frame
    python experiments/long_video.py bench | drift-truth                                # the same two, as a script

Runtime and expected result:

* ``--bench`` (tiny random models, CPU): ~3 min on a 2-core VM; time per generated frame and peak memory
  equal within ~10 % at 1x, 4x and 16x the training length, one compile of the window step (BENCHMARKS.md,
  "Long videos").
* ``--drift --truth`` (64 clips, 257 frames, 64x64): ~1 min on CPU; 100 / 100 / 100 (judge per window,
  persistence, bounces) -- the measurement's own sanity check (tests/test_continuation.py checks it too).
* Training ``default`` on one H100: runtime not yet measured; result not yet measured. The issue's targets at
  16x on the world at 64x64 -- last windows' judge score within 5 points of the first's, objects persisting
  in >= 95 % of frames, bounces obeying the physics in >= 90 % of cases -- are what ``--drift`` prints as
  ``checks``; they need a well-trained tokenizer and LM and have not been reached or measured here.
* ``tiny`` on CPU: 1,500 steps take ~35-50 min on the 2-core VM; expect objects to persist in ~30 % of the
  257 frames of ``--drift`` (not the >= 95 % target). Context corruption on vs off at that budget:
  BENCHMARKS.md "Context corruption on vs off" (it did not reduce drift there).
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from videogen.data import captions, video_io, world
from videogen.data.captions import DIRECTIONS
from videogen.eval import judge
from videogen.longvideo import continuation


def _lm_world():
    path = Path(__file__).resolve().parent / "lm_world.py"
    spec = importlib.util.spec_from_file_location("_lm_world", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(arg=None):
    c = _lm_world().get_config(arg)
    c.data.render_frames = 65  # 1 + 4 * 16: windows of 5 latent frames at offsets 0..11
    c.continuation = {"context_frames": 3, "prob": 0.5, "corruption": 0.1, "corruption_kind": "replace"}
    return c


# ------------------------------------------------------------------------------------------- stories
def story_specs(num: int, *, resolution: int = 32, seed: int = 0) -> list[tuple[str, str, world.ClipSpec]]:
    """``num`` two-segment stories ``(caption 1, caption 2, clip 1)``: one object of a world test clip,
    whose motion changes at frame 16 (segment 2 keeps colour, shape and size). Segment 2's motion is
    "still" or a direction that has room from where the object really is at frame 16 (bounces are left
    out: whether a wall is met within 16 frames depends on a position the model chose)."""
    cfg = world.WorldConfig(resolution=resolution, num_frames=17, max_objects=1, seed=seed)
    rng = np.random.default_rng(seed)
    stories, index = [], 0
    while len(stories) < num:
        spec = world.sample_clip(cfg, "test", index)
        index += 1
        obj = spec.objects[0]
        end = world.trajectory(obj, resolution, 17)[-1]
        (x_lo, x_hi), (y_lo, y_hi) = world.position_range(obj, resolution)
        room = max(world.DIRECTION_SPEED) * resolution * 16  # the fastest legal travel in 16 frames
        options = ["still"] if obj.motion != "still" else []
        for name, (dx, dy) in DIRECTIONS.items():
            target = end + room * np.asarray([dx, dy]) / np.hypot(dx, dy)
            if name != obj.motion and x_lo <= target[0] <= x_hi and y_lo <= target[1] <= y_hi:
                options.append(name)
        if not options:
            continue
        motion = str(rng.choice(options))
        size = obj.size if obj.mentioned_size else None
        caption2 = captions.write_caption([captions.ObjectPhrase(obj.colour, obj.shape, size, motion)], rng)
        stories.append((spec.caption, caption2, spec))
    return stories


def measure_stories(workdir: str | None, *, num: int = 8, seed: int = 0, out: str | None = None) -> dict:
    """Story mode, judged: each story is generated as two segments (17 frames for caption 1, then 16 more
    for caption 2, one batch), and each segment's 17 frames (they share frame 16) are judged against its own
    caption -- and, as a control, segment 2 against caption 1 (a model that ignores the new prompt passes
    that instead)."""
    eng = continuation.from_workdir(workdir)
    resolution = eng.h * eng.ae.config.spatial_compression
    stories = story_specs(num, resolution=resolution, seed=seed)
    first, second = [s[0] for s in stories], [s[1] for s in stories]
    chunks = eng.stream([(first, 17), (second, 16)], seed=seed)
    videos = np.concatenate([chunk.frames for chunk in chunks], axis=1)  # [B, 33, H, W, 3]
    seg1, seg2 = videos[:, :17], videos[:, 16:33]

    def rate(verdicts):
        return float(np.mean([v.all_correct for v in verdicts]))

    v1 = [judge.judge_video(v, c) for v, c in zip(seg1, first)]
    v2 = [judge.judge_video(v, c) for v, c in zip(seg2, second)]
    control = [judge.judge_video(v, c) for v, c in zip(seg2, first)]
    result = {
        "num_stories": num,
        "segment1_correct": rate(v1),
        "segment2_correct": rate(v2),
        "both_correct": float(np.mean([a.all_correct and b.all_correct for a, b in zip(v1, v2)])),
        "segment2_matches_caption1": rate(control),
        "stories": [
            {"caption1": a, "caption2": b, "segment1": x.all_correct, "segment2": y.all_correct}
            for (a, b, _), x, y in zip(stories, v1, v2)
        ],
    }
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "stories.json").write_text(json.dumps(result, indent=1))
        video_io.gif_grid(videos, Path(out, "stories.gif"))
    return result


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "bench"
    from videogen import cli

    if what == "bench":
        cli.main(["continue", "--bench"] + sys.argv[2:])
    elif what == "drift-truth":
        cli.main(["continue", "--drift", "--truth", "--num", "64"] + sys.argv[2:])
    elif what == "stories":
        parser = argparse.ArgumentParser(prog="long_video.py stories", description=measure_stories.__doc__)
        parser.add_argument("--workdir", help="LM workdir (default: the shipped pretrained model)")
        parser.add_argument("--num", type=int, default=8)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", default="runs/stories")
        args = parser.parse_args(sys.argv[2:])
        print(json.dumps(measure_stories(args.workdir, num=args.num, seed=args.seed, out=args.out), indent=1))
    else:
        sys.exit(f"usage: python experiments/long_video.py bench|drift-truth|stories [flags]; got {what!r}")
