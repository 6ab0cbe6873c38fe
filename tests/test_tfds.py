"""TFDS: `videogen_world` prepares and reads back without TensorFlow; `TfdsSource` reads any video dataset.

Everything here must pass with NO TensorFlow installed (the project's supported setup), which the
`no_tensorflow` fixture checks first.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle
import shutil

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from videogen.data import tfds_source, tfds_world, world  # noqa: E402
from videogen.data.tfds_source import (  # noqa: E402
    DatasetNotPreparedError,
    TensorFlowRequiredError,
    TfdsSource,
    label_to_words,
)

R, T = 32, 9
SPLIT_SIZES = {"train": 16, "test": 8, "heldout": 8}
UCF_LABELS = ["ApplyEyeMakeup", "YoYo", "HandstandPushups"]


@pytest.fixture(scope="module", autouse=True)
def no_tensorflow():
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed: these tests check that TFDS works without it.")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    """data_dir with videogen_world prepared at R=32, T=9, splits 16/8/8."""
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = tfds_world.make_builder(str(data_dir), resolution=R, num_frames=T, split_sizes=SPLIT_SIZES)
    tfds_world.prepare(builder)
    return data_dir, builder.builder_config.name


def test_config_names():
    assert [c.name for c in tfds_world.VideogenWorld.BUILDER_CONFIGS] == ["r32_t17", "r64_t17", "r128_t17"]
    cfg = world.WorldConfig(resolution=R, num_frames=T)
    assert tfds_world.config_name(cfg) == "r32_t9"
    assert tfds_world.config_name(cfg, SPLIT_SIZES) == "r32_t9_n16-8-8"
    cfg3 = world.WorldConfig(resolution=48, num_frames=9, max_objects=3, seed=7)
    assert tfds_world.config_name(cfg3, SPLIT_SIZES) == "r48_t9_o3_s7_n16-8-8"
    # Worlds differing in fields make_builder does not expose still get distinct names.
    no_held_out = world.WorldConfig(resolution=R, num_frames=T, held_out=())
    assert tfds_world.config_name(no_held_out).startswith("r32_t9_w")
    with pytest.raises(ValueError, match="unknown splits"):
        tfds_world.config_name(cfg, {"validation": 3})


def test_prepared_without_tensorflow_and_random_access_matches_world(world_dir):
    data_dir, config = world_dir
    ds = tfds.data_source(
        f"videogen_world/{config}", split="train", data_dir=str(data_dir), download=False, try_gcs=False
    )
    assert len(ds) == SPLIT_SIZES["train"]
    ref = world.WorldSource(world.WorldConfig(resolution=R, num_frames=T), split="train", num_clips=16)
    for i in (5, 2):  # out of order: random access, not a stream
        ex, want = ds[i], ref[i]
        assert ex["video"].dtype == np.uint8 and ex["video"].shape == (T, R, R, 3)
        np.testing.assert_array_equal(ex["video"], want["video"])
        # Text features come back as bytes through tfds.data_source.
        assert ex["caption"] == want["caption"].encode("utf-8")
        assert int(ex["index"]) == i
        np.testing.assert_array_equal(ex["positions"], want["positions"])  # NaN == NaN here
        np.testing.assert_array_equal(ex["attributes"], want["attributes"])
        assert int(ex["num_objects"]) == int(want["num_objects"])
    assert tfds_world.world_config_from_info(ds.dataset_info) == world.WorldConfig(resolution=R, num_frames=T)

    heldout = tfds.data_source(
        f"videogen_world/{config}", split="heldout", data_dir=str(data_dir), download=False, try_gcs=False
    )
    want = world.WorldSource(world.WorldConfig(resolution=R, num_frames=T), split="heldout", num_clips=8)[7]
    np.testing.assert_array_equal(heldout[7]["video"], want["video"])


def test_world_config_from_description_alone(tmp_path, world_dir):
    """dataset_info.json alone (no metadata.json) is enough to rebuild the WorldConfig."""
    data_dir, config = world_dir
    copy = tmp_path / "videogen_world" / config / "1.0.0"
    shutil.copytree(data_dir / "videogen_world" / config / "1.0.0", copy)
    (copy / "metadata.json").unlink()
    ds = tfds.data_source(
        f"videogen_world/{config}:1.0.0", split="test", data_dir=str(tmp_path), download=False, try_gcs=False
    )
    assert "world_config" not in (ds.dataset_info.metadata or {})
    assert tfds_world.world_config_from_info(ds.dataset_info) == world.WorldConfig(resolution=R, num_frames=T)


def test_tfds_source_over_world(world_dir):
    data_dir, config = world_dir
    ref = world.WorldSource(world.WorldConfig(resolution=R, num_frames=T), split="test", num_clips=8)
    src = TfdsSource(f"videogen_world/{config}", split="test", data_dir=data_dir)
    assert len(src) == 8 and src.caption_key == "caption"
    ex = src[3]
    assert set(ex) == {"video", "caption"}
    assert isinstance(ex["caption"], str) and ex["caption"] == ref[3]["caption"]
    np.testing.assert_array_equal(ex["video"], ref[3]["video"])
    np.testing.assert_array_equal(src[-1]["video"], ref[7]["video"])
    with pytest.raises(IndexError):
        src[8]

    # The only prepared config is found without naming it; resize and cut to the first frames.
    small = TfdsSource("videogen_world", split="test", data_dir=data_dir, num_frames=5, resolution=16)
    ex = small[3]
    assert ex["video"].shape == (5, 16, 16, 3) and ex["video"].dtype == np.uint8
    np.testing.assert_array_equal(ex["video"], tfds_source.resize_centre_crop(ref[3]["video"][:5], 16))

    # Random windows: deterministic per (seed, index), and a real window of the clip.
    win = TfdsSource(
        f"videogen_world/{config}", split="test", data_dir=data_dir, num_frames=4, random_window=True, seed=1
    )
    clip = win[3]["video"]
    np.testing.assert_array_equal(clip, win[3]["video"])
    starts = [s for s in range(T - 4 + 1) if np.array_equal(ref[3]["video"][s : s + 4], clip)]
    assert starts

    # Picklable (grain workers): the reader reopens in the new process/object.
    assert pickle.dumps(small)  # serialisable for grain worker processes
    clone = copy.deepcopy(small)  # rebuilt through the same __getstate__/__reduce__ protocol
    np.testing.assert_array_equal(clone[3]["video"], small[3]["video"])


def test_not_prepared_error_names_data_dir_and_command(tmp_path, world_dir):
    with pytest.raises(DatasetNotPreparedError) as e:
        TfdsSource("ucf101/ucf101_1_256", split="train", data_dir=tmp_path)
    msg = str(e.value)
    assert "'ucf101/ucf101_1_256' is not prepared" in msg and str(tmp_path) in msg
    assert f"tfds build ucf101/ucf101_1_256 --data_dir {tmp_path} --file_format array_record" in msg
    assert not list(tmp_path.iterdir())  # nothing was downloaded or created

    with pytest.raises(
        DatasetNotPreparedError,
        match=r"python -m videogen\.data\.tfds_world --data_dir .* "
        r"--resolution 48 --num_frames 9",
    ):
        TfdsSource("videogen_world/r48_t9", data_dir=tmp_path)
    data_dir, config = world_dir
    # A config that is not prepared: the message lists what is.
    with pytest.raises(DatasetNotPreparedError, match=f"prepared there: videogen_world/{config}:1.0.0"):
        TfdsSource("videogen_world/r64_t17", data_dir=data_dir)


def test_several_prepared_configs_must_be_named(tmp_path, world_dir):
    data_dir, config = world_dir
    for name in (config, "r32_t9_s1"):
        shutil.copytree(data_dir / "videogen_world" / config, tmp_path / "videogen_world" / name)
    with pytest.raises(ValueError, match="several prepared configs"):
        TfdsSource("videogen_world", data_dir=tmp_path)
    # Naming one works, and TFDS split slices pass through.
    assert len(TfdsSource(f"videogen_world/{config}", split="train[:4]", data_dir=tmp_path)) == 4


def test_tfrecord_only_dataset_is_rejected(tmp_path, world_dir):
    data_dir, config = world_dir
    copy = tmp_path / "videogen_world" / config / "1.0.0"
    shutil.copytree(data_dir / "videogen_world" / config / "1.0.0", copy)
    info_path = copy / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetNotPreparedError, match="no random access"):
        TfdsSource(f"videogen_world/{config}", data_dir=tmp_path)


class TinyActionClips(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """ucf101-shaped (variable-length video + ClassLabel), but Tensor-encoded so it needs no TensorFlow."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    # [L, H, W, 3] with L varying per clip, like ucf101; non-square to exercise the crop.
                    "video": tfds.features.Tensor(
                        shape=(None, 24, 40, 3), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
                    ),
                    "label": tfds.features.ClassLabel(names=UCF_LABELS),
                }
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6)}

    def _generate_examples(self, n):
        for i in range(n):
            video = np.zeros((4 + i, 24, 40, 3), np.uint8)
            video[:, :, 8:32] = (0, 200, 0)  # green centre square; red/blue margins the crop must drop
            video[:, :, :8] = (200, 0, 0)
            video[:, :, 32:] = (0, 0, 200)
            video[:, 0, 0, 0] = np.arange(4 + i)  # frame number, to check the temporal window
            yield i, {"video": video, "label": UCF_LABELS[i % 3]}


@pytest.fixture(scope="module")
def labelled_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("labelled")
    builder = TinyActionClips(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return data_dir


def test_class_labels_become_captions(labelled_dir):
    src = TfdsSource("tiny_action_clips", split="train", data_dir=labelled_dir)
    assert src.label_names == UCF_LABELS and src.caption_key is None
    assert [src[i]["caption"] for i in range(3)] == [
        "a video of apply eye makeup",
        "a video of yo yo",
        "a video of handstand pushups",
    ]
    assert src[4]["video"].shape == (8, 24, 40, 3)  # native size and length when not asked otherwise

    custom = TfdsSource(
        "tiny_action_clips",
        split="train",
        data_dir=labelled_dir,
        caption_template="someone doing {label}",
        num_frames=6,
        resolution=16,
    )
    ex = custom[0]  # 4 frames: padded to 6 by repeating the last one
    assert ex["caption"] == "someone doing apply eye makeup"
    assert ex["video"].shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(ex["video"][4], ex["video"][3])
    # Short side 24 -> 16, centre crop: only the green square survives (margins are 8 px of 40).
    centre = ex["video"][:, 2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.all(np.abs(centre - (0, 200, 0)) <= 3)

    late = TfdsSource(
        "tiny_action_clips", split="train", data_dir=labelled_dir, num_frames=3, random_window=True, seed=0
    )
    frame_ids = [int(late[5]["video"][k, 0, 0, 0]) for k in range(3)]  # no resize: ids intact
    assert frame_ids == list(range(frame_ids[0], frame_ids[0] + 3))


class TinyMovingDigits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """moving_mnist-shaped (grayscale "image_sequence", no labels), Tensor-encoded."""

    name = "moving_mnist"  # so the default caption for moving_mnist applies
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    # [20, 64, 64, 1] in the real dataset; smaller here.
                    "image_sequence": tfds.features.Tensor(
                        shape=(6, 16, 16, 1), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
                    ),
                }
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {"test": self._generate_examples()}

    def _generate_examples(self):
        for i in range(2):
            yield i, {"image_sequence": np.full((6, 16, 16, 1), 50 * (i + 1), np.uint8)}


def test_default_caption_without_labels(tmp_path):
    TinyMovingDigits(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    src = TfdsSource("moving_mnist", split="test", data_dir=tmp_path)
    assert src.video_key == "image_sequence" and src.label_names is None
    ex = src[1]
    assert ex["caption"] == "a video of moving digits"
    # Grayscale frames are repeated to RGB.
    assert ex["video"].shape == (6, 16, 16, 3) and np.all(ex["video"] == 100)
    assert (
        TfdsSource("moving_mnist", split="test", data_dir=tmp_path, default_caption="digits drifting")[0][
            "caption"
        ]
        == "digits drifting"
    )
    bair = tfds_source.DEFAULT_CAPTIONS["bair_robot_pushing_small"]
    assert bair == "a video of a robot arm pushing objects"


def test_video_features_need_tensorflow(tmp_path, labelled_dir):
    """A dataset stored as tfds.features.Video (like ucf101) fails clearly at construction without TF."""
    copy = tmp_path / "ucf101" / "ucf101_1_256" / "2.0.0"
    shutil.copytree(next((labelled_dir / "tiny_action_clips").glob("1.0.0")), copy)
    # ucf101's own features.json entry for its frames (from a real `tfds build ucf101`).
    features = json.loads((copy / "features.json").read_text())
    features["featuresDict"]["features"]["video"] = {
        "pythonClassName": "tensorflow_datasets.core.features.video_feature.Video",
        "video": {
            "dtype": "uint8",
            "encodingFormat": "jpeg",
            "ffmpegExtraArgs": ["-vf", "scale=256x256"],
            "shape": {"dimensions": ["-1", "256", "256", "3"]},
        },
    }
    (copy / "features.json").write_text(json.dumps(features))
    with pytest.raises(TensorFlowRequiredError) as e:
        TfdsSource("ucf101/ucf101_1_256", data_dir=tmp_path)
    assert "'ucf101/ucf101_1_256:2.0.0'" in str(e.value) and "pip install tensorflow" in str(e.value)
    # And TFDS itself indeed cannot build that feature here.
    with pytest.raises(ModuleNotFoundError):
        tfds.features.Video(shape=(None, 64, 64, 3))


@pytest.mark.parametrize(
    "label,words",
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("YoYo", "yo yo"),
        ("HandstandPushups", "handstand pushups"),
        ("TVShow", "tv show"),
        ("apply_eye_makeup", "apply eye makeup"),
        ("PlayingDaf", "playing daf"),
    ],
)
def test_label_to_words(label, words):
    assert label_to_words(label) == words
