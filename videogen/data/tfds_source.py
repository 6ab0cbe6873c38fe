"""Random access to any prepared TFDS video dataset as captioned clips: `{"video", "caption"}`.

`TfdsSource` wraps `tfds.data_source` (ArrayRecord random access, grain's `RandomAccessDataSource`
protocol) and turns each example into `{"video": uint8 [T, R, R, 3], "caption": str}`:

* video: the first feature among `VIDEO_KEYS` ("video": ucf101 and `videogen_world`;
  "image_sequence": moving_mnist; "image_main": bair_robot_pushing_small), or `video_key`. Grayscale is
  repeated to RGB, alpha dropped. Optional `num_frames` (first T frames, or a deterministic random window
  per index) and `resolution` (short side resized to R, centre crop, per frame with Pillow).
* caption: the dataset's own "caption" text feature when it has one (`videogen_world`); else its class
  label through the ClassLabel names and `caption_template` (ucf101 "ApplyEyeMakeup" -> "a video of apply
  eye makeup"); else `default_caption` (built in for moving_mnist and bair_robot_pushing_small).

TensorFlow: this module never needs it, but TFDS may, depending on how a dataset stores its frames.
`tfds.features.Video` (ucf101, moving_mnist, and most TFDS video datasets) cannot even be constructed
without TensorFlow (its constructor calls `tf.dtypes.as_dtype`), so `tfds.data_source` fails for those
datasets before reading anything, although the frames themselves (PNG/JPEG bytes) are then decoded with
Pillow/OpenCV. `TfdsSource` checks this up front and raises `TensorFlowRequiredError` naming the dataset
and the fix. Datasets of `tfds.features.Image` sequences (bair_robot_pushing_small) or `Tensor` features
(`videogen_world`) read without TensorFlow. Preparing ucf101 / moving_mnist / bair (`tfds build`) needs
TensorFlow in any case, since their builders read the raw downloads with `tf.io`.

Nothing is ever downloaded or prepared here: a dataset missing from `data_dir` raises
`DatasetNotPreparedError` with the command that prepares it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

# Feature names that hold the frames, in priority order.
VIDEO_KEYS: tuple[str, ...] = ("video", "image_sequence", "image_main", "frames", "images")
# Captions for datasets that have neither a caption nor a label.
DEFAULT_CAPTIONS: dict[str, str] = {
    "moving_mnist": "a video of moving digits",
    "bair_robot_pushing_small": "a video of a robot arm pushing objects",
}
FALLBACK_CAPTION = "a video"
WORLD_DATASET = "videogen_world"

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
_NAME_RE = re.compile(r"^(?P<dataset>[\w-]+)(?:/(?P<config>[^:]+))?(?::(?P<version>[\d.]+))?$")
_WORLD_CONFIG_RE = re.compile(r"^r(?P<resolution>\d+)_t(?P<num_frames>\d+)")
_VIDEO_FEATURE_CLASS = "tensorflow_datasets.core.features.video_feature.Video"


class DatasetNotPreparedError(FileNotFoundError):
    """The dataset is not prepared (in a random-access format) in the given data_dir."""


class TensorFlowRequiredError(ImportError):
    """The dataset's features can only be read with TensorFlow installed."""


def label_to_words(label: str) -> str:
    """Turns a class name into lowercase words: "ApplyEyeMakeup" -> "apply eye makeup".

    Splits CamelCase (keeping acronyms together: "TVShow" -> "tv show"), underscores and hyphens.
    """
    text = re.sub(r"[_\-]+", " ", label)
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", text)
    return " ".join(text.lower().split())


def _tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _feature_paths(node: Any, cls_name: str, path: str = "") -> list[str]:
    """Paths ("video", "steps/image") of features of python class `cls_name` in a features.json tree."""
    found = []
    if isinstance(node, dict):
        if node.get("pythonClassName") == cls_name:
            found.append(path or "<root>")
        for key, value in node.items():
            if key in ("features", "feature") and isinstance(value, dict) and "pythonClassName" not in value:
                # FeaturesDict: {"features": {name: feature, ...}}
                for name, sub in value.items():
                    found += _feature_paths(sub, cls_name, f"{path}/{name}" if path else name)
            elif isinstance(value, (dict, list)):
                found += _feature_paths(value, cls_name, path)
    elif isinstance(node, list):
        for value in node:
            found += _feature_paths(value, cls_name, path)
    return found


def _prepare_hint(dataset: str, config: str | None, data_dir: str) -> str:
    """The command that prepares `dataset` into `data_dir` in a random-access format."""
    if dataset == WORLD_DATASET:
        m = _WORLD_CONFIG_RE.match(config or "")
        resolution, num_frames = (m["resolution"], m["num_frames"]) if m else ("64", "17")
        return (
            f"python -m videogen.data.tfds_world --data_dir {data_dir} --resolution {resolution} "
            f"--num_frames {num_frames}"
        )
    name = f"{dataset}/{config}" if config else dataset
    return (
        f"tfds build {name} --data_dir {data_dir} --file_format array_record  "
        "(needs TensorFlow and the dataset's downloads; for manual datasets also --manual_dir)"
    )


def _find_prepared(
    data_dir: str, dataset: str, config: str | None, version: str | None
) -> list[tuple[str | None, str, str]]:
    """(config, version, directory) of every complete prepared copy of `dataset` in `data_dir`."""
    root = os.path.join(data_dir, dataset)
    found = []
    if not os.path.isdir(root):
        return found

    def versions(parent: str) -> Iterable[str]:
        for v in sorted(os.listdir(parent)):
            # TFDS writes into "incomplete.XXXX_1.0.0" and renames when done; skip unfinished copies.
            if _VERSION_RE.match(v) and os.path.isfile(os.path.join(parent, v, "dataset_info.json")):
                yield v

    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry.startswith((".", "incomplete.")) or not os.path.isdir(path):
            continue
        if _VERSION_RE.match(entry):  # data_dir/dataset/version: a dataset without configs
            if entry in versions(root):
                found.append((None, entry, path))
        else:  # data_dir/dataset/config/version
            found += [(entry, v, os.path.join(path, v)) for v in versions(path)]
    found = [f for f in found if (config is None or f[0] == config) and (version is None or f[1] == version)]
    # Newest version last, compared numerically.
    return sorted(found, key=lambda f: (f[0] or "", tuple(int(x) for x in f[1].split("."))))


class TfdsSource:
    """Random-access captioned clips from a prepared TFDS video dataset.

    Items are `{"video": uint8 [T, R, R, 3], "caption": str}`; T and R are the dataset's own unless
    `num_frames` / `resolution` are given. Works for `videogen_world` and for any TFDS dataset whose
    video features TFDS can read in this environment (see the module docstring: datasets stored as
    `tfds.features.Video`, e.g. ucf101 and moving_mnist, need TensorFlow installed, and this raises
    `TensorFlowRequiredError` at construction if it is not).

    Example:
        src = TfdsSource("ucf101/ucf101_1_256", split="train", data_dir="/data/tfds",
                         num_frames=17, resolution=64, random_window=True)
        ex = src[3]  # {"video": uint8 [17, 64, 64, 3], "caption": "a video of apply eye makeup"}

    Picklable (the underlying reader is reopened lazily), so grain worker processes can use it.
    """

    def __init__(
        self,
        name: str,
        split: str = "train",
        data_dir: str | os.PathLike | None = None,
        *,
        num_frames: int | None = None,
        resolution: int | None = None,
        random_window: bool = False,
        seed: int = 0,
        caption_template: str = "a video of {label}",
        default_caption: str | None = None,
        video_key: str | None = None,
        label_key: str | None = None,
    ):
        """Opens `split` of the prepared dataset `name` in `data_dir`.

        Args:
            name: TFDS name, optionally with config and version: "ucf101/ucf101_1_256:2.0.0",
                "videogen_world/r64_t17", "moving_mnist". Without a config, the only prepared config is
                used (several prepared configs must be chosen between); without a version, the newest
                prepared one.
            split: Split or TFDS split slice ("train", "test[:100]").
            data_dir: TFDS data directory; default `$TFDS_DATA_DIR` or ~/tensorflow_datasets.
            num_frames: T; None keeps every frame. Clips longer than T are cut to the first T frames (or
                a random window); shorter clips repeat their last frame up to T.
            resolution: R; None keeps the frames' size (then they must be all the same size to batch).
                Otherwise each frame's short side is resized to R (Pillow bicubic, antialiased when
                downscaling) and the centre R×R kept.
            random_window: Take a random window of T frames instead of the first T. The window is
                drawn from a generator seeded with (seed, index): the same item always gives the same
                clip, so pass a different `seed` per epoch for fresh windows.
            seed: Seed of the random windows.
            caption_template: Caption for labelled datasets; `{label}` is replaced by the class name as
                lowercase words.
            default_caption: Caption for datasets with neither caption nor label; default from
                `DEFAULT_CAPTIONS`, else "a video".
            video_key: Feature holding the frames; default the first of `VIDEO_KEYS` present.
            label_key: ClassLabel feature to caption from; default "label" or the only ClassLabel.

        Raises:
            DatasetNotPreparedError: `name` is not prepared in `data_dir`, or only in a format without
                random access (tfrecord). The message gives the command that prepares it.
            TensorFlowRequiredError: The dataset stores frames as `tfds.features.Video` and TensorFlow
                is not installed.
            ValueError: Ambiguous config, unknown split, or no video feature.
        """
        self.data_dir = os.path.abspath(
            os.path.expanduser(
                os.fspath(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")
            )
        )
        self.split = split
        self.num_frames = num_frames
        self.resolution = resolution
        self.random_window = random_window
        self.seed = seed
        self.caption_template = caption_template
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames={num_frames}: must be >= 1.")
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution={resolution}: must be >= 1.")

        m = _NAME_RE.match(name)
        if m is None:
            raise ValueError(f"name={name!r}: expected 'dataset[/config][:version]'.")
        self.dataset, config, version = m["dataset"], m["config"], m["version"]
        prepared = _find_prepared(self.data_dir, self.dataset, config, version)
        if not prepared:
            others = _find_prepared(self.data_dir, self.dataset, None, None)
            listed = ", ".join(self._full_name(*p[:2]) for p in others)
            also = f" (prepared there: {listed})" if others else ""
            raise DatasetNotPreparedError(
                f"TFDS dataset {name!r} is not prepared in data_dir={self.data_dir!r}{also}. videogen never "
                f"downloads datasets; prepare it first with:\n  "
                f"{_prepare_hint(self.dataset, config, self.data_dir)}"
            )
        configs = sorted({p[0] for p in prepared}, key=str)
        if len(configs) > 1:
            raise ValueError(
                f"TFDS dataset {self.dataset!r} has several prepared configs in "
                f"{self.data_dir!r}: {configs}; name one, e.g. "
                f"{self.dataset + '/' + str(configs[0])!r}."
            )
        self.config, self.version, self.dataset_dir = prepared[-1]
        self.name = self._full_name(self.config, self.version)

        with open(os.path.join(self.dataset_dir, "dataset_info.json")) as f:
            info_json = json.load(f)
        formats = {info_json.get("fileFormat") or "tfrecord", *info_json.get("alternativeFileFormats", [])}
        if "array_record" not in formats:
            raise DatasetNotPreparedError(
                f"TFDS dataset {self.name!r} in {self.dataset_dir!r} is prepared as {sorted(formats)}, which "
                "has no random access. Re-prepare it as ArrayRecord into another data_dir:\n  "
                f"{_prepare_hint(self.dataset, self.config, '<new_data_dir>')}\nor convert it in place: "
                f"tfds convert_format --dataset_version_dir {self.dataset_dir} "
                "--out_file_format array_record"
            )
        features_path = os.path.join(self.dataset_dir, "features.json")
        video_features = []
        if os.path.isfile(features_path):  # absent only in very old TFDS versions: let TFDS decide then
            with open(features_path) as f:
                video_features = _feature_paths(json.load(f), _VIDEO_FEATURE_CLASS)
        if video_features and not _tensorflow_available():
            raise TensorFlowRequiredError(
                f"TFDS dataset {self.name!r} stores {', '.join(video_features)} as tfds.features.Video "
                "(PNG/JPEG-encoded frames), and TFDS cannot construct that feature without TensorFlow, so "
                "it cannot be read here. Fix: `pip install tensorflow` (the CPU build is enough; TFDS "
                "then decodes the frames with Pillow/OpenCV), or re-encode the dataset once, in an "
                "environment with TensorFlow, into a dataset of uint8 tfds.features.Tensor clips "
                "(ZLIB-encoded, as videogen_world stores them), which reads without TensorFlow."
            )

        self._source = None
        source = self._open()
        self.info = source.dataset_info
        self._resolve_features(self.info.features, video_key, label_key)
        self.default_caption = default_caption or DEFAULT_CAPTIONS.get(self.dataset, FALLBACK_CAPTION)

    def _full_name(self, config: str | None, version: str) -> str:
        return f"{self.dataset}/{config}:{version}" if config else f"{self.dataset}:{version}"

    def _open(self):
        """The `tfds.data_source` of this split (opened once per process)."""
        if self._source is None:
            import tensorflow_datasets as tfds  # deferred: slow to import; only a TFDS source opens it

            try:
                # An explicit version makes TFDS read features and splits from the prepared files rather
                # than from builder code, so configs unknown to the code (`make_builder` worlds) and
                # datasets whose code moved on to a newer version both open.
                self._source = tfds.data_source(
                    self.name, split=self.split, data_dir=self.data_dir, download=False, try_gcs=False
                )
            except ModuleNotFoundError as e:
                if e.name and e.name.split(".")[0] == "tensorflow":
                    raise TensorFlowRequiredError(
                        f"TFDS needs TensorFlow to read dataset {self.name!r}: `pip install tensorflow`."
                    ) from e
                raise
        return self._source

    def _resolve_features(self, features, video_key: str | None, label_key: str | None) -> None:
        """Finds the video, caption and label features of the top-level features."""
        import tensorflow_datasets as tfds  # deferred: slow to import; only a TFDS source opens it

        # bair_robot_pushing_small's top level is a Sequence of per-frame dicts; its keys are one level down.
        top = features.feature if isinstance(features, tfds.features.Sequence) else features
        keys = list(top.keys()) if hasattr(top, "keys") else []
        if video_key is None:
            video_key = next((k for k in VIDEO_KEYS if k in keys), None)
        if video_key not in keys:
            raise ValueError(
                f"TFDS dataset {self.name!r} has no video feature "
                f"{video_key or 'among ' + str(list(VIDEO_KEYS))}; its features are {keys}. "
                "Pass video_key=..."
            )
        self.video_key = video_key
        self.caption_key = (
            "caption" if "caption" in keys and isinstance(top["caption"], tfds.features.Text) else None
        )
        labels = [k for k in keys if isinstance(top[k], tfds.features.ClassLabel)]
        if label_key is None:
            label_key = "label" if "label" in labels else (labels[0] if len(labels) == 1 else None)
        elif label_key not in labels:
            raise ValueError(
                f"label_key={label_key!r} is not a ClassLabel feature of {self.name!r} ({labels})."
            )
        self.label_key = label_key
        self.label_names = list(top[label_key].names) if label_key else None

    def __len__(self) -> int:
        return len(self._open())

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Clip `index`: {"video": uint8 [T, R, R, 3], "caption": str}."""
        index = int(index)
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"{self!r}: index {index} out of range [0, {n}).")
        ex = self._open()[index]
        video = self._select_frames(_as_video(ex[self.video_key]), index)  # [T, H, W, 3]
        if self.resolution is not None:
            video = resize_centre_crop(video, self.resolution)  # [T, R, R, 3]
        return {"video": video, "caption": self.caption(ex)}

    def caption(self, ex: dict[str, Any]) -> str:
        """The caption of a raw TFDS example: its caption text, else its label, else the default."""
        if self.caption_key is not None:
            text = ex[self.caption_key]
            # tfds.data_source decodes Text features to bytes (TF-free decoding keeps them raw).
            return text.decode("utf-8") if isinstance(text, bytes) else str(text)
        if self.label_names is not None:
            label = self.label_names[int(ex[self.label_key])]
            return self.caption_template.format(label=label_to_words(label))
        return self.default_caption

    def _select_frames(self, video: np.ndarray, index: int) -> np.ndarray:
        """[L, H, W, 3] -> [T, H, W, 3]: first T frames or a seeded window; short clips repeat the last."""
        T = self.num_frames
        if T is None:
            return video
        L = video.shape[0]
        if L < T:
            return np.concatenate([video, np.repeat(video[-1:], T - L, axis=0)])
        start = 0
        if self.random_window and L > T:
            start = int(np.random.default_rng([self.seed, index]).integers(0, L - T + 1))
        return video[start : start + T]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_source"] = None  # Reopened lazily in the receiving process.
        return state

    def __repr__(self) -> str:
        return (
            f"TfdsSource({self.name!r}, split={self.split!r}, data_dir={self.data_dir!r}, "
            f"num_frames={self.num_frames}, resolution={self.resolution})"
        )


def _as_video(frames: Any) -> np.ndarray:
    """A decoded video feature (array, or list of frames from Video/Sequence(Image)) -> uint8 [L, H, W, 3]."""
    video = np.stack(frames) if isinstance(frames, (list, tuple)) else np.asarray(frames)
    if video.ndim == 3:  # [L, H, W]: grayscale without a channel axis
        video = video[..., None]
    if video.ndim != 4:
        raise ValueError(f"Expected a video [T, H, W, C], got shape {video.shape}.")
    if video.dtype != np.uint8:
        raise ValueError(f"Expected uint8 frames, got {video.dtype}.")
    channels = video.shape[-1]
    if channels == 1:  # moving_mnist
        video = np.repeat(video, 3, axis=-1)
    elif channels == 4:  # RGBA: drop alpha
        video = video[..., :3]
    elif channels != 3:
        raise ValueError(f"Expected 1, 3 or 4 channels, got {channels}.")
    return video


def resize_centre_crop(video: np.ndarray, resolution: int) -> np.ndarray:
    """Resizes each frame's short side to `resolution` and keeps the centre square.

    Args:
        video: uint8 [T, H, W, 3].
        resolution: R.

    Returns:
        uint8 [T, R, R, 3]. Unchanged (no copy) if already R×R.
    """
    T, H, W, _ = video.shape
    if H == W == resolution:
        return video
    side = min(H, W)
    # Pillow resizes a sub-box of the source directly: the centre side×side square to R×R is exactly
    # "short side to R, then centre crop", without resampling the pixels the crop would discard.
    box = ((W - side) / 2, (H - side) / 2, (W + side) / 2, (H + side) / 2)
    out = np.empty((T, resolution, resolution, 3), np.uint8)
    for t in range(T):
        out[t] = np.asarray(
            Image.fromarray(video[t]).resize((resolution, resolution), Image.Resampling.BICUBIC, box=box)
        )
    return out
