"""Input pipeline on an emulated 8-device mesh: sharded global batches, exact resume, multi-host slicing."""

import itertools

import jax
import numpy as np
import pytest

from videogen.data import pipeline, sources, text, video_io, world
from videogen.training import mesh as mesh_lib

SMALL = world.WorldConfig(resolution=32, num_frames=5)


def _indices(batches):
    return [np.asarray(b["index"]).tolist() for b in batches]


def _take(pipe, n):
    return list(itertools.islice(iter(pipe), n))


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, "conftest sets an 8-device CPU platform"
    return mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})


def test_global_batches_are_sharded_over_data_axes(mesh):
    src = world.WorldSource(SMALL, num_clips=64)
    pipe = pipeline.Pipeline(src, pipeline.PipelineConfig(global_batch_size=8, seed=1), mesh=mesh)
    batch = next(iter(pipe))
    video = batch["video"]
    assert isinstance(video, jax.Array) and video.shape == (8, 5, 32, 32, 3) and video.dtype == np.uint8
    assert video.sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"))
    # 4-way data parallel, replicated over tensor: each device holds 2 clips.
    assert {s.data.shape[0] for s in video.addressable_shards} == {2}
    host = pipe.host_batch(0)
    np.testing.assert_array_equal(np.asarray(video), host["video"])
    for i, idx in enumerate(np.asarray(batch["index"])):
        np.testing.assert_array_equal(host["video"][i], src[int(idx)]["video"])
    assert batch["caption"] == [src[int(i)]["caption"] for i in np.asarray(batch["index"])]


def test_resume_yields_exactly_the_next_batches(mesh):
    src = world.WorldSource(SMALL, num_clips=40)
    cfg = pipeline.PipelineConfig(global_batch_size=8, seed=7)
    first = pipeline.Pipeline(src, cfg, mesh=mesh)
    straight = _take(first, 9)  # crosses the epoch boundary at 40 clips
    assert first.state()["step"] == 9
    resumed = pipeline.Pipeline(src, cfg, mesh=mesh, start_step=4)
    again = _take(resumed, 5)
    assert _indices(again) == _indices(straight[4:])
    for a, b in zip(again, straight[4:]):
        np.testing.assert_array_equal(np.asarray(a["video"]), np.asarray(b["video"]))
    # Threaded reading gives the same stream.
    threaded = pipeline.Pipeline(
        src, pipeline.PipelineConfig(global_batch_size=8, seed=7, num_threads=2), mesh=mesh, start_step=4
    )
    assert _indices(_take(threaded, 5)) == _indices(straight[4:])


def test_resume_with_another_batch_size_continues_after_the_same_examples():
    """3 batches of 4 = examples 0..11 of the stream; a resume at batch size 8 or 2 (the checkpoint's data
    state says 3 steps of 4) continues at example 12 (batch 2) or the next batch boundary, 16 (batch 8)."""
    src = world.WorldSource(SMALL, num_clips=40)
    stream = sum(_indices(_take(pipeline.Pipeline(src, pipeline.PipelineConfig(4, seed=3)), 8)), [])
    saved = pipeline.Pipeline(src, pipeline.PipelineConfig(4, seed=3), start_step=3).state()
    step, note = pipeline.resume_step(saved, 2, 3)
    assert step == 6 and "the same 12 examples seen)" in note
    resumed = _take(pipeline.Pipeline(src, pipeline.PipelineConfig(2, seed=3), start_step=step), 2)
    assert sum(_indices(resumed), []) == stream[12:16]
    step, note = pipeline.resume_step(saved, 8, 3)  # 12 is not a whole number of batches of 8: on to 16
    assert step == 2 and "4 skipped to the next batch boundary" in note
    resumed = _take(pipeline.Pipeline(src, pipeline.PipelineConfig(8, seed=3), start_step=step), 1)
    assert sum(_indices(resumed), []) == stream[16:24]
    assert pipeline.resume_step(saved, 4, 3) == (3, None)
    step, note = pipeline.resume_step(saved, 4, 5)
    assert step == 3 and "another shuffle" in note


def test_shuffling_is_seeded_and_epochs_are_permutations():
    src = world.WorldSource(SMALL, num_clips=32)
    order = lambda seed: sum(
        _indices(_take(pipeline.Pipeline(src, pipeline.PipelineConfig(8, seed=seed)), 8)), []
    )
    a, b = order(0), order(1)
    assert a == order(0) and a != b
    assert sorted(a[:32]) == list(range(32)) and sorted(a[32:]) == list(range(32))
    assert a[:32] != a[32:]  # each epoch reshuffled
    plain = sum(_indices(_take(pipeline.Pipeline(src, pipeline.PipelineConfig(8, shuffle=False)), 2)), [])
    assert plain == list(range(16))


def test_process_slices_partition_each_global_batch():
    src = world.WorldSource(SMALL, num_clips=50)
    cfg = pipeline.PipelineConfig(global_batch_size=8, seed=3)
    single = pipeline.Pipeline(src, cfg, process_index=0, process_count=1)
    parts = [pipeline.Pipeline(src, cfg, process_index=p, process_count=2) for p in range(2)]
    for step in range(7):
        whole = single.host_batch(step)["index"].tolist()
        halves = [part.host_batch(step)["index"].tolist() for part in parts]
        assert all(len(h) == 4 for h in halves)
        assert sorted(halves[0] + halves[1]) == sorted(whole)


class _Flaky:
    """A source with permanently unreadable items, like corrupt files."""

    def __init__(self, n, bad):
        self.n, self.bad = n, set(bad)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i in self.bad:
            raise video_io.VideoReadError(f"item {i} is corrupt")
        return {"video": np.full((2, 8, 8, 3), i, np.uint8), "caption": f"clip {i}", "index": i}


def test_unreadable_items_are_skipped_and_counted(caplog):
    pipe = pipeline.Pipeline(_Flaky(20, bad={3, 4, 11}), pipeline.PipelineConfig(4, shuffle=False))
    batches = _take(pipe, 5)
    assert _indices(batches)[:3] == [[0, 1, 2, 5], [5, 5, 6, 7], [8, 9, 10, 12]]
    assert pipe.num_skipped == 3 and "Skipping unreadable item 3" in caplog.text
    with pytest.raises(RuntimeError, match="consecutive items"):
        pipeline.Pipeline(_Flaky(60, bad=range(60)), pipeline.PipelineConfig(4)).host_batch(0)


def test_configuration_errors_name_the_fix(mesh):
    src = world.WorldSource(SMALL, num_clips=10)
    with pytest.raises(ValueError, match="data-parallel size 4"):
        pipeline.Pipeline(src, pipeline.PipelineConfig(global_batch_size=6), mesh=mesh)
    with pytest.raises(ValueError, match="3 processes"):
        pipeline.Pipeline(src, pipeline.PipelineConfig(global_batch_size=8), process_index=0, process_count=3)
    with pytest.raises(ValueError, match="empty"):
        pipeline.Pipeline(_Flaky(0, []), pipeline.PipelineConfig(4))


def test_text_tokens_in_batches(mesh, tmp_path):
    caps = [world.sample_clip(SMALL, "train", i).caption for i in range(300)]
    tok = text.TextTokenizer(text.train_text_tokenizer(caps, tmp_path / "t.model"), max_length=20)
    pipe = pipeline.Pipeline(
        world.WorldSource(SMALL, num_clips=16), pipeline.PipelineConfig(8), mesh=mesh, text_tokenizer=tok
    )
    batch = next(iter(pipe))
    assert batch["text_ids"].shape == (8, 20) and batch["text_mask"].dtype == np.bool_
    assert tok.decode(np.asarray(batch["text_ids"])[0]) == batch["caption"][0].lower()


def test_every_source_kind_through_one_pipeline(mesh, tmp_path):
    from videogen.data import tfds_world

    # A folder of the user's videos, one of them corrupt.
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        clip = world.WorldSource(world.WorldConfig(resolution=48, num_frames=24), num_clips=3)[i]
        video_io.write_mp4(folder / f"clip{i}.mp4", clip["video"], fps=8)
        (folder / f"clip{i}.txt").write_text(clip["caption"])
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    (folder / "broken.txt").write_text("a broken clip")
    data_dir = tmp_path / "tfds"
    tfds_world.prepare(
        tfds_world.builder_for_world(
            str(data_dir),
            world.WorldConfig(resolution=32, num_frames=5),
            {"train": 16, "test": 0, "heldout": 0},
        )
    )
    specs = [
        {"kind": "world", "resolution": 32, "num_frames": 5, "num_clips": 16},
        {
            "kind": "tfds",
            "resolution": 32,
            "num_frames": 5,
            "data_dir": str(data_dir),
            "name": f"videogen_world/{tfds_world.config_name(world.WorldConfig(resolution=32, num_frames=5), {'train': 16, 'test': 0, 'heldout': 0})}",
        },
        {"kind": "folder", "resolution": 32, "num_frames": 5, "root": str(folder)},
    ]
    for spec in specs:
        src = sources.build_source(spec, "train")
        batch = next(iter(pipeline.Pipeline(src, pipeline.PipelineConfig(4), mesh=mesh)))
        assert batch["video"].shape == (4, 5, 32, 32, 3), spec["kind"]
        assert all(isinstance(c, str) and c for c in batch["caption"])
    assert "broken.mp4" in " ".join(str(p) for p in src.skipped)
    with pytest.raises(ValueError, match="kind"):
        sources.build_source({"kind": "youtube"})
    with pytest.raises(ValueError, match="only apply to kind='world'"):
        sources.build_source({"kind": "tfds", "name": "x", "max_objects": 2})


def test_eval_spec_keeps_world_entries_for_the_world_only(caplog):
    """The configs size a world eval set in eval.data; with real data those entries are dropped (they would
    crash a folder source), a TFDS spec's own (training) split gives way to the eval split, and a folder
    evaluated on its training videos says so."""
    import logging

    world_eval = {"num_clips": 256}
    assert sources.eval_spec({"kind": "world", "resolution": 32}, world_eval) == {
        "kind": "world",
        "resolution": 32,
        "num_clips": 256,
    }
    # A training mix (more two-object clips) is not the eval set's: judged figures stay comparable.
    mixed = {"kind": "world", "resolution": 32, "object_count_weights": [1, 2]}
    assert sources.eval_spec(mixed, world_eval) == {"kind": "world", "resolution": 32, "num_clips": 256}
    assert sources.eval_spec(mixed, {"object_count_weights": [0, 1]})["object_count_weights"] == [0, 1]
    assert sources.judged_spec(mixed) == {"kind": "world", "resolution": 32}
    tfds = {"kind": "tfds", "name": "ucf101", "split": "train[:90%]"}
    assert sources.eval_spec(tfds, world_eval) == {"kind": "tfds", "name": "ucf101"}
    assert sources.eval_spec(tfds, {"split": "train[90%:]"})["split"] == "train[90%:]"
    with caplog.at_level(logging.WARNING, logger="videogen.data"):
        assert sources.eval_spec({"kind": "folder", "root": "a/"}, world_eval) == {
            "kind": "folder",
            "root": "a/",
        }
        assert "eval reads the training folder a/" in caplog.text
        caplog.clear()
        assert sources.eval_spec({"kind": "folder", "root": "a/"}, {"root": "b/"})["root"] == "b/"
        assert not caplog.text
