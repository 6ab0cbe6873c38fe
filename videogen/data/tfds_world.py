"""`videogen_world`: the built-in moving-shapes world as a real TFDS dataset, prepared without TensorFlow.

The world (`videogen.data.world`) renders any clip on the fly, so this dataset is not needed for
training; it exists so the world can be shipped, inspected and read exactly like any other TFDS video
dataset (`tfds.data_source`, `TfdsSource`, grain), and so a fixed set of clips can be frozen on disk.

Everything here works with NO TensorFlow installed:
  * clips are stored as `tfds.features.Tensor(uint8, encoding=ZLIB)` rather than `tfds.features.Video`
    (constructing a `Video` feature imports TensorFlow, and encoding frames to PNG/JPEG needs it too);
    ZLIB rather than the default bytes encoding because it wrote ~20x faster here and compresses the
    mostly-black canvases well;
  * the caption is `tfds.features.Text()`, which encodes a python `str` and decodes to `bytes` through
    `tfds.data_source` (readers decode it: `TfdsSource` does);
  * the dataset is written as ArrayRecord (`file_format="array_record"`), the random-access format
    `tfds.data_source` reads;
  * `DatasetInfo` is built directly, not with `dataset_info_from_configs`, which looks for README /
    CITATIONS files next to the defining module and crashed when a builder was defined in a script.

Configs are named `r{R}_t{T}` (e.g. `r32_t17`, `r64_t17`, `r128_t17`); any other resolution, length,
object count, seed or split sizes gets its own config from `make_builder`, whose name carries the
non-default parts (`r48_t9_o3_s7_n16-8-8`) so two different worlds never share a directory. The full
`WorldConfig` is stored in the dataset's metadata (`metadata.json`) and in the config description
(`dataset_info.json`), so `world_config_from_info` rebuilds it from a prepared dataset alone.

Prepare from the command line:

    python -m videogen.data.tfds_world --data_dir /data/tfds --resolution 64 --num_frames 17

or in python:

    builder = make_builder("/data/tfds", resolution=64, num_frames=17)
    prepare(builder)
    ds = tfds.data_source(f"videogen_world/{builder.builder_config.name}", split="train",
                          data_dir="/data/tfds", download=False)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from videogen.data import world

DATASET_NAME = "videogen_world"
DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 20_000, "test": 1_000, "heldout": 1_000}
# Resolutions that get a ready-made config; any other multiple of 8 works through `make_builder`.
DEFAULT_RESOLUTIONS: tuple[int, ...] = (32, 64, 128)
DEFAULT_NUM_FRAMES = 17
DEFAULT_CONFIG_NAME = "r64_t17"
# Marks the world config inside the config description, so it can be parsed back from dataset_info.json
# even by readers that do not load metadata.json.
_WORLD_CONFIG_MARKER = "WorldConfig="


@dataclasses.dataclass(eq=False)
class VideogenWorldConfig(tfds.core.BuilderConfig):
    """A `BuilderConfig` carrying one world and its split sizes.

    Attributes:
        world_config_json: `WorldConfig.to_json()` of the rendered world (a JSON string rather than
            the dataclass, so the config stays a plain immutable value TFDS can print and copy).
        split_sizes: ((split, num_clips), ...) in `world.SPLITS` order; splits with 0 clips are skipped.
    """

    world_config_json: str = world.WorldConfig().to_json()
    split_sizes: tuple[tuple[str, int], ...] = tuple(DEFAULT_SPLIT_SIZES.items())

    @property
    def world_config(self) -> world.WorldConfig:
        return world.WorldConfig.from_dict(json.loads(self.world_config_json))


def config_name(cfg: world.WorldConfig, split_sizes: Mapping[str, int] | None = None) -> str:
    """Name of the config for a world: `r{R}_t{T}` plus a suffix for every non-default part.

    Args:
        cfg: The world.
        split_sizes: Clips per split; None means `DEFAULT_SPLIT_SIZES`.

    Returns:
        E.g. "r64_t17" for the defaults, "r48_t9_o3_s7_n16-8-8" for a 3-object, seed-7 world with tiny
        splits. Fields `make_builder` does not expose (min_objects, held_out) that differ from the
        defaults add a short hash, `_w1a2b3c4d`.
    """
    sizes = _normalise_split_sizes(split_sizes)
    default = world.WorldConfig(resolution=cfg.resolution, num_frames=cfg.num_frames)
    name = f"r{cfg.resolution}_t{cfg.num_frames}"
    if cfg.max_objects != default.max_objects:
        name += f"_o{cfg.max_objects}"
    if cfg.seed != default.seed:
        name += f"_s{cfg.seed}"
    rest = dataclasses.replace(cfg, max_objects=default.max_objects, seed=default.seed)
    if rest != default:
        name += "_w" + hashlib.sha1(cfg.to_json().encode()).hexdigest()[:8]
    if sizes != DEFAULT_SPLIT_SIZES:
        name += "_n" + "-".join(str(sizes.get(s, 0)) for s in world.SPLITS)
    return name


def _normalise_split_sizes(split_sizes: Mapping[str, int] | None) -> dict[str, int]:
    """Validates split sizes; missing splits get 0 clips (i.e. are not written)."""
    if split_sizes is None:
        return dict(DEFAULT_SPLIT_SIZES)
    unknown = set(split_sizes) - set(world.SPLITS)
    if unknown:
        raise ValueError(
            f"split_sizes has unknown splits {sorted(unknown)}; the world's splits are {world.SPLITS}."
        )
    sizes = {s: int(split_sizes.get(s, 0)) for s in world.SPLITS}
    if any(n < 0 for n in sizes.values()) or not any(sizes.values()):
        raise ValueError(f"split_sizes={dict(split_sizes)}: sizes must be >= 0 and at least one > 0.")
    return sizes


def world_builder_config(
    cfg: world.WorldConfig, split_sizes: Mapping[str, int] | None = None
) -> VideogenWorldConfig:
    """The `VideogenWorldConfig` for a world (name from `config_name`, world config in the description)."""
    sizes = _normalise_split_sizes(split_sizes)
    if sizes["heldout"] and not cfg.held_out:
        # The world cannot draw heldout clips without held-out combinations; fail before preparing.
        raise ValueError(
            "split_sizes asks for 'heldout' clips but WorldConfig.held_out is empty; "
            "set split_sizes['heldout'] = 0."
        )
    sizes_text = ", ".join(f"{s}={n}" for s, n in sizes.items())
    return VideogenWorldConfig(
        name=config_name(cfg, sizes),
        description=(
            f"{cfg.resolution}x{cfg.resolution} pixels, {cfg.num_frames} frames, up to "
            f"{cfg.max_objects} objects; clips per split: {sizes_text}. "
            f"{_WORLD_CONFIG_MARKER}{cfg.to_json()}"
        ),
        world_config_json=cfg.to_json(),
        split_sizes=tuple(sizes.items()),
    )


# Registered only from the package module: under `python -m videogen.data.tfds_world` this file also runs
# as `__main__`, and registering the name twice is an error in TFDS.
class VideogenWorld(tfds.core.GeneratorBasedBuilder, skip_registration=__name__ == "__main__"):
    """The built-in procedural moving-shapes world with captions and exact ground truth.

    Example i of split s is `world.WorldSource(cfg, s)[i]`, stored in generation order (shuffling is
    disabled), so random access by index returns exactly the clip the world renders for that index.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: video, caption, index, positions, attributes, num_objects."}
    BUILDER_CONFIGS = [
        world_builder_config(world.WorldConfig(resolution=r, num_frames=DEFAULT_NUM_FRAMES))
        for r in DEFAULT_RESOLUTIONS
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG_NAME
    # TFDS derives the builder's source path (to look for a checksums.tsv) through a check that imports
    # the `importlib_resources` backport whenever the builder lives in an installed package; TFDS only
    # declares that package for Python < 3.9, so preparing failed with ModuleNotFoundError. Giving the
    # path directly skips that check; there is nothing to checksum here anyway.
    code_path = epath.Path(__file__)

    @property
    def world_config(self) -> world.WorldConfig:
        return self.builder_config.world_config

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.world_config
        T, R, K = cfg.num_frames, cfg.resolution, world.MAX_OBJECTS
        features = tfds.features.FeaturesDict(
            {
                # [T, R, R, 3]
                "video": tfds.features.Tensor(
                    shape=(T, R, R, 3), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
                ),
                "caption": tfds.features.Text(),
                "index": tfds.features.Tensor(shape=(), dtype=np.int64),
                # [T, MAX_OBJECTS, 2] (x, y) pixel centres, NaN for absent objects
                "positions": tfds.features.Tensor(shape=(T, K, 2), dtype=np.float32),
                # [MAX_OBJECTS, 4] colour, shape, size, motion ids; -1 for absent objects
                "attributes": tfds.features.Tensor(shape=(K, 4), dtype=np.int32),
                "num_objects": tfds.features.Tensor(shape=(), dtype=np.int32),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Procedural captioned videos of coloured shapes (circles, squares, triangles) moving in "
                "straight lines, bouncing or standing still on a black canvas, rendered by "
                "videogen.data.world. Each clip comes with its caption and exact ground truth (object "
                "positions per frame and attribute ids). The 'heldout' split contains attribute "
                "combinations that 'train' never shows. " + (self.builder_config.description or "")
            ),
            features=features,
            # Generation order == world index order, so ds[i] is WorldSource(cfg, split)[i].
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(
                world_config=cfg.to_dict(),
                split_sizes=dict(self.builder_config.split_sizes),
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: every clip is rendered.
        return {
            split: self._generate_examples(split, n) for split, n in self.builder_config.split_sizes if n > 0
        }

    def _generate_examples(self, split: str, num_clips: int) -> Iterator[tuple[int, dict]]:
        source = world.WorldSource(self.world_config, split=split, num_clips=num_clips)
        for i in range(num_clips):
            ex = source[i]
            yield (
                i,
                {
                    "video": ex["video"],
                    "caption": ex["caption"],
                    "index": np.int64(ex["index"]),
                    "positions": ex["positions"],
                    "attributes": ex["attributes"],
                    "num_objects": np.int32(ex["num_objects"]),
                },
            )


def make_builder(
    data_dir: str,
    resolution: int,
    num_frames: int,
    max_objects: int = 2,
    seed: int = 0,
    split_sizes: Mapping[str, int] | None = None,
) -> VideogenWorld:
    """A `videogen_world` builder for any world size, writing ArrayRecord into `data_dir`.

    Configs outside `BUILDER_CONFIGS` are fine: TFDS reads them back from the prepared files
    (`tfds.data_source("videogen_world/<name>", data_dir=...)` loads unknown configs from disk).

    Args:
        data_dir: TFDS data directory (the dataset goes to `data_dir/videogen_world/<config>/1.0.0`).
        resolution: R, the canvas side in pixels (a multiple of 8, >= 16).
        num_frames: T, frames per clip.
        max_objects: Up to this many objects per clip (<= `world.MAX_OBJECTS`).
        seed: World seed; clip i of a split is a pure function of (seed, split, i).
        split_sizes: Clips per split, e.g. {"train": 16, "test": 8, "heldout": 8}; default
            `DEFAULT_SPLIT_SIZES`. Splits left out are not written.

    Returns:
        The builder; call `prepare(builder)` (or `builder.download_and_prepare()`) to write it.
    """
    cfg = world.WorldConfig(resolution=resolution, num_frames=num_frames, max_objects=max_objects, seed=seed)
    return builder_for_world(data_dir, cfg, split_sizes)


def builder_for_world(
    data_dir: str, cfg: world.WorldConfig, split_sizes: Mapping[str, int] | None = None
) -> VideogenWorld:
    """Like `make_builder`, for an arbitrary `WorldConfig` (e.g. custom held-out combinations)."""
    return VideogenWorld(
        config=world_builder_config(cfg, split_sizes), data_dir=str(data_dir), file_format="array_record"
    )


def prepare(builder: VideogenWorld) -> VideogenWorld:
    """Writes the dataset (a no-op if already prepared) without touching the network.

    `try_download_gcs=False` because TFDS otherwise first asks the public GCS bucket whether the dataset
    is already prepared there, which hangs or fails offline and can never succeed for this dataset.
    """
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


def world_config_from_info(info: tfds.core.DatasetInfo) -> world.WorldConfig:
    """Rebuilds the `WorldConfig` of a prepared `videogen_world` dataset from its `DatasetInfo`.

    Reads `metadata.json` when the info carries it, else the config description in `dataset_info.json`.
    """
    metadata = info.metadata or {}
    if "world_config" in metadata:
        return world.WorldConfig.from_dict(metadata["world_config"])
    for text in (info.config_description, info.description):
        if text and _WORLD_CONFIG_MARKER in text:
            payload = text.split(_WORLD_CONFIG_MARKER, 1)[1]
            # The JSON object is the first balanced {...}; raw_decode stops right after it.
            cfg_dict, _ = json.JSONDecoder().raw_decode(payload)
            return world.WorldConfig.from_dict(cfg_dict)
    raise ValueError(f"Dataset {info.full_name!r} carries no WorldConfig: is it a videogen_world dataset?")


def _parse_split_sizes(text: str) -> dict[str, int]:
    """Parses "train=16,test=8,heldout=8" (command-line form of split_sizes)."""
    sizes = {}
    for item in filter(None, re.split(r"[,\s]+", text)):
        key, _, value = item.partition("=")
        sizes[key] = int(value)
    return sizes


def main(argv: list[str] | None = None) -> None:
    """Command line: prepare `videogen_world` for one world size and report clips/s."""
    parser = argparse.ArgumentParser(description="Prepare the videogen_world TFDS dataset (no TensorFlow).")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num_frames", type=int, default=DEFAULT_NUM_FRAMES)
    parser.add_argument("--max_objects", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split_sizes",
        type=_parse_split_sizes,
        default=None,
        help="e.g. train=20000,test=1000,heldout=1000 (the default)",
    )
    args = parser.parse_args(argv)
    builder = make_builder(
        args.data_dir, args.resolution, args.num_frames, args.max_objects, args.seed, args.split_sizes
    )
    start = time.perf_counter()
    prepare(builder)
    seconds = time.perf_counter() - start
    total = sum(n for _, n in builder.builder_config.split_sizes)
    print(
        f"videogen_world/{builder.builder_config.name} in {builder.data_dir}: {total} clips, "
        f"{seconds:.1f} s ({total / max(seconds, 1e-9):.0f} clips/s if freshly written)"
    )


if __name__ == "__main__":
    # Use the package module's builder (registered, recorded as `videogen.data.tfds_world` in
    # dataset_info.json) rather than this `__main__` copy.
    from videogen.data import tfds_world as _package_module

    _package_module.main()
