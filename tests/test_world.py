"""The built-in world: deterministic, physically exact, captions true for the first T frames."""

import numpy as np
import pytest

from videogen.data import world
from videogen.data.captions import COLOURS, DIRECTIONS


def _clips(cfg, split="train", n=300):
    return [world.sample_clip(cfg, split, i) for i in range(n)]


def test_deterministic_from_seed_split_index():
    cfg = world.WorldConfig(resolution=32)
    a, b = world.WorldSource(cfg, "train")[7], world.WorldSource(cfg, "train")[7]
    assert a["caption"] == b["caption"] and np.array_equal(a["video"], b["video"])
    other_seed = world.WorldSource(world.WorldConfig(resolution=32, seed=1), "train")[7]
    other_split = world.WorldSource(cfg, "test")[7]
    assert other_seed["caption"] != a["caption"] or not np.array_equal(other_seed["video"], a["video"])
    assert other_split["caption"] != a["caption"] or not np.array_equal(other_split["video"], a["video"])


@pytest.mark.parametrize("resolution,num_frames", [(32, 17), (64, 17), (128, 9), (256, 5), (64, 1), (64, 33)])
def test_shapes_for_any_resolution_and_length(resolution, num_frames):
    ex = world.WorldSource(world.WorldConfig(resolution=resolution, num_frames=num_frames))[0]
    assert ex["video"].shape == (num_frames, resolution, resolution, 3) and ex["video"].dtype == np.uint8
    assert ex["positions"].shape == (num_frames, world.MAX_OBJECTS, 2)
    assert ex["attributes"].shape == (world.MAX_OBJECTS, 4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"resolution": 30}, "multiple of 8"),
        ({"num_frames": 0}, ">= 1"),
        ({"max_objects": 4}, "max_objects"),
        ({"held_out": ((("colour", "purple"),),)}, "unknown attribute"),
        ({"object_count_weights": (1.0,)}, "2 non-negative finite weights"),
        ({"object_count_weights": (1.0, -1.0)}, "non-negative"),
        ({"object_count_weights": (0.0, 0.0)}, "not all zero"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        world.WorldConfig(**kwargs)


def test_exact_palette_and_black_background():
    cfg = world.WorldConfig(resolution=64, max_objects=1)
    for spec in _clips(cfg, n=40):
        obj = spec.objects[0]
        video = world.render(spec)
        x, y = world.trajectory(obj, 64, 1)[0]
        assert tuple(video[0, int(y), int(x)]) == COLOURS[obj.colour]  # the centre is fully covered
        assert tuple(video[0, 0, 0]) == (0, 0, 0) or obj.shape != "circle"
    # Anti-aliased: edge pixels take intermediate values.
    video = world.render(_clips(cfg, n=1)[0])
    lit = video.max(-1)
    assert ((lit > 0) & (lit < 200)).any()


def test_sizes_and_objects_per_clip():
    cfg = world.WorldConfig(resolution=128, max_objects=3)
    clips = _clips(cfg, n=300)
    counts = {len(c.objects) for c in clips}
    assert counts == {1, 2, 3}
    assert {o.size for c in clips for o in c.objects} == {"small", "large"}
    small = world.shape_area("circle", 0.10 * 128)
    large = world.shape_area("circle", 0.18 * 128)
    spec = next(c for c in clips if len(c.objects) == 1 and c.objects[0].shape == "circle")
    area = (world.render(spec)[0].max(-1) / max(COLOURS[spec.objects[0].colour])).sum()
    assert area == pytest.approx(small if spec.objects[0].size == "small" else large, rel=0.03)


def test_object_count_weights_set_the_mix_exactly_and_default_clips_stay_as_they_were():
    # The default draw is uniform per placement try, so crowded 32-px canvases end up with fewer two-object
    # clips than uniform; weights fix the mix per clip, which is what a training mix needs.
    natural = _clips(world.WorldConfig(resolution=32), n=300)
    weighted = _clips(world.WorldConfig(resolution=32, object_count_weights=(1, 2)), n=300)
    only_two = _clips(world.WorldConfig(resolution=32, object_count_weights=(0, 1)), n=60)
    share = lambda clips: np.mean([len(c.objects) == 2 for c in clips])  # noqa: E731
    assert share(natural) < 0.4 and 0.58 < share(weighted) < 0.75 and share(only_two) == 1.0
    assert share(_clips(world.WorldConfig(resolution=32, object_count_weights=(1, 0)), n=60)) == 0.0
    # An empty weight tuple is the world as it was before weights existed, draw for draw (pinned captions).
    assert [c.caption for c in _clips(world.WorldConfig(resolution=32, object_count_weights=()), n=3)] == [
        "the large blue triangle does not move, while a little orange triangle rests in place",
        "a little cyan box bounces left and right, while a large yellow box rests in place",
        "the little cyan box moves down and to the left",
    ]
    weighted_cfg = world.WorldConfig(resolution=32, object_count_weights=(1, 2))
    assert world.WorldConfig.from_dict(__import__("json").loads(weighted_cfg.to_json())) == weighted_cfg
    assert "object_count_weights" not in world.WorldConfig().to_dict()  # default JSON (TFDS names) unchanged


def test_caption_order_left_to_right_describes_objects_by_their_place():
    drawn = _clips(world.WorldConfig(resolution=32, object_count_weights=(0, 1)), n=40)
    ordered = _clips(
        world.WorldConfig(resolution=32, object_count_weights=(0, 1), caption_order="left_to_right"), n=40
    )
    for a, b in zip(drawn, ordered):
        assert sorted(a.objects, key=lambda o: o.start) == list(
            b.objects
        )  # the same clip, objects sorted by x
        assert b.objects[0].start[0] <= b.objects[1].start[0]
        first_colour = b.caption.split(b.objects[0].colour)[0]
        assert b.objects[1].colour not in first_colour  # the left object's phrase comes first
    assert any(a.objects != b.objects for a, b in zip(drawn, ordered))
    assert "caption_order" not in world.WorldConfig().to_dict()
    cfg = world.WorldConfig(caption_order="left_to_right")
    assert world.WorldConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="caption_order"):
        world.WorldConfig(caption_order="random")


def test_direction_clips_never_bounce_and_bouncing_clips_do():
    for resolution, num_frames in [(32, 17), (64, 17), (64, 9), (128, 33)]:
        cfg = world.WorldConfig(resolution=resolution, num_frames=num_frames, max_objects=3)
        motions = set()
        for spec in _clips(cfg, n=150):
            for obj in spec.objects:
                motions.add(obj.motion)
                path = world.trajectory(obj, resolution, num_frames)
                step = np.diff(path, axis=0)
                if obj.motion in DIRECTIONS:
                    dx, dy = DIRECTIONS[obj.motion]
                    # Constant velocity the whole clip: no reflection happened.
                    assert np.allclose(step, step[0]), obj
                    assert np.sign(step[0, 0]) == dx and np.sign(step[0, 1]) == dy
                elif obj.motion == "still":
                    assert np.allclose(step, 0)
                else:
                    axis = 0 if obj.motion == "bounce-horizontal" else 1
                    signs = np.sign(step[:, axis])
                    assert (signs > 0).any() and (signs < 0).any(), obj  # at least one bounce
                    assert np.allclose(step[:, 1 - axis], 0)
        assert len(motions) == 11


def test_elastic_reflection_for_long_renders():
    cfg = world.WorldConfig(resolution=64)
    for spec in _clips(cfg, n=60):
        for obj in spec.objects:
            path = world.trajectory(obj, 64, 400)
            (x_lo, x_hi), (y_lo, y_hi) = world.position_range(obj, 64)
            assert (path[:, 0] >= x_lo - 1e-6).all() and (path[:, 0] <= x_hi + 1e-6).all()
            assert (path[:, 1] >= y_lo - 1e-6).all() and (path[:, 1] <= y_hi + 1e-6).all()
            # Speed is conserved per axis except on the frame that touches a wall.
            speed = np.abs(np.diff(path, axis=0))
            for axis in (0, 1):
                v = abs(obj.velocity[axis])
                assert np.isclose(speed[:, axis], v).mean() > 0.7 or v == 0
                assert (speed[:, axis] <= v + 1e-6).all()


def test_render_any_window_of_frames():
    spec = _clips(world.WorldConfig(resolution=32), n=3)[2]
    long = world.render(spec, num_frames=80)
    assert np.array_equal(long[:17], world.render(spec))
    assert np.array_equal(long[50:60], world.render(spec, num_frames=10, start_frame=50))
    meta = world.metadata(spec, num_frames=80)
    assert np.allclose(
        meta["positions"][50:60], world.metadata(spec, 10, start_frame=50)["positions"], equal_nan=True
    )


def test_objects_never_overlap_within_the_clip():
    cfg = world.WorldConfig(resolution=32, min_objects=2, max_objects=3)
    for spec in _clips(cfg, n=150):
        R = spec.resolution
        for i, a in enumerate(spec.objects):
            for b in spec.objects[i + 1 :]:
                gap = np.linalg.norm(world.trajectory(a, R, 17) - world.trajectory(b, R, 17), axis=-1).min()
                assert gap >= world.bounding_radius(a.shape, a.radius(R)) + world.bounding_radius(
                    b.shape, b.radius(R)
                )


def test_metadata_matches_rendered_centroids():
    cfg = world.WorldConfig(resolution=64, max_objects=1)
    for i in range(20):
        ex = world.WorldSource(cfg)[i]
        weight = ex["video"].max(-1).astype(np.float64)
        ys, xs = np.mgrid[0:64, 0:64] + 0.5
        cx = (weight * xs).sum((1, 2)) / weight.sum((1, 2))
        cy = (weight * ys).sum((1, 2)) / weight.sum((1, 2))
        assert np.allclose(np.stack([cx, cy], -1), ex["positions"][:, 0], atol=0.35)
        assert ex["num_objects"] == 1 and (ex["attributes"][1:] == -1).all()
        assert np.isnan(ex["positions"][:, 1:]).all()


def test_held_out_combinations():
    cfg = world.WorldConfig(resolution=32, max_objects=3)
    for split in ("train", "test"):
        for spec in _clips(cfg, split, 500):
            assert not any(o.matches(c) for o in spec.objects for c in cfg.held_out), (split, spec.caption)
    held = _clips(cfg, "heldout", 300)
    assert all(any(o.matches(c) for o in spec.objects for c in cfg.held_out) for spec in held)
    # Every listed combination shows up.
    assert all(any(o.matches(c) for spec in held for o in spec.objects) for c in cfg.held_out)
    custom = world.WorldConfig(resolution=32, held_out=world.parse_held_out("shape=square,motion=still"))
    for spec in _clips(custom, "heldout", 50):
        assert any(o.shape == "square" and o.motion == "still" for o in spec.objects)


def test_config_round_trips_through_json():
    cfg = world.WorldConfig(resolution=128, num_frames=9, max_objects=3, seed=5)
    assert world.WorldConfig.from_dict(__import__("json").loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="key=value"):
        world.parse_held_out("orange")
    with pytest.raises(ValueError, match="split"):
        world.WorldSource(cfg, "validation")
    with pytest.raises(IndexError):
        world.WorldSource(cfg, "train", 5)[5]
