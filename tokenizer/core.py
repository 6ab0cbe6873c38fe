"""The video tokenizer as a library: a config's model (:class:`Tokenizer`: causal 3D CNN autoencoder +
LFQ/FSQ/VQ quantizer), a trained workdir loaded back, clips encoded to token ids and ids decoded to clips.

    model, quantizer, config = load_tokenizer(workdir)      # EMA weights
    ids = encode_video(model, quantizer, video_uint8)       # [B, T, H, W, 3] -> [B, t, h, w] int32
    video = decode_indices(model, quantizer, ids)           # -> [B, T, H, W, 3] uint8

The trainer (tokenizer/train.py) builds on this module and writes the workdirs it reads; everything that uses
a trained tokenizer imports it (or tokenizer/api.py, its public part), never the trainer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from tokenizer.model import Autoencoder, AutoencoderConfig
from tokenizer.quantizers import make_quantizer
from videogen.data.sources import eval_spec
from videogen.training import checkpointing
from videogen.training.config import to_plain
from videogen.training.optim import make_optimizer

__all__ = [
    "COMPUTE_ONLY_MODEL_KEYS",
    "INIT_KEY_IMPL",
    "Tokenizer",
    "abstract_tokenizer",
    "autoencoder_config",
    "checkpoint_manager",
    "decode_indices",
    "encode_video",
    "eval_data_spec",
    "latest_step",
    "load_tokenizer",
    "quantizer_kwargs",
    "to_float",
    "to_uint8",
    "train_data_spec",
]


# Parameter init draws with XLA's RngBitGenerator ("rbg") inside one jit: threefry samplers take
# XLA:CPU seconds to compile per kernel shape (17 s vs 2.7 s for the tiny model on 2 cores).
INIT_KEY_IMPL = "rbg"


# model.* entries that change how the function is computed, not the function or its arrays: free to change on
# a resume, and left out of a tokenizer's identity in codes files (tokenizer/codes.py).
COMPUTE_ONLY_MODEL_KEYS = ("dtype", "remat", "conv_impl")


# ============================================================================================
# Config -> data specs, the model
# ============================================================================================


def train_data_spec(config) -> dict:
    """``config.data`` as a source spec. A tokenizer reads no captions, so a folder of uncaptioned videos is
    fine (an empty ``default_caption`` unless one is set)."""
    spec = to_plain(config.data)
    if spec.get("kind", "world") == "folder":
        spec.setdefault("default_caption", "")
    return spec


def eval_data_spec(config) -> dict:
    """The eval source spec: ``config.data`` with ``config.eval.data`` entries on top
    (:func:`videogen.data.sources.eval_spec`)."""
    return eval_spec(train_data_spec(config), to_plain(config.eval.get("data", {})))


def quantizer_kwargs(config) -> dict:
    """``{'kind': k, **config.quantizer[k]}`` for ``k = config.quantizer.kind`` (the make_quantizer call)."""
    q = to_plain(config.quantizer)
    kind = q["kind"]
    if kind not in q:
        raise ValueError(
            f"quantizer.kind={kind!r} but the config has no quantizer.{kind} section; sections: "
            f"{sorted(k for k in q if k != 'kind')}."
        )
    return {"kind": kind, **q[kind]}


def autoencoder_config(config) -> AutoencoderConfig:
    """``config.model`` as an AutoencoderConfig; ``code_dim`` comes from the quantizer."""
    q_kw = quantizer_kwargs(config)
    kind = q_kw.pop("kind")
    code_dim = nnx.eval_shape(lambda: make_quantizer(kind, **q_kw, rngs=nnx.Rngs(0))).code_dim
    model_kw = to_plain(config.model)
    if model_kw.get("code_dim", code_dim) != code_dim:
        raise ValueError(
            f"model.code_dim={model_kw['code_dim']} but the {kind} quantizer needs {code_dim} "
            "channels; leave model.code_dim out (it is set from the quantizer)."
        )
    model_kw["code_dim"] = code_dim
    return AutoencoderConfig(**model_kw)


class Tokenizer(nnx.Module):
    """What is trained: the autoencoder and its quantizer (VQ keeps codebook state in the quantizer)."""

    def __init__(self, ae_config: AutoencoderConfig, quantizer: dict, *, rngs: nnx.Rngs):
        q_kw = dict(quantizer)
        self.autoencoder = Autoencoder(ae_config, rngs=rngs)
        self.quantizer = make_quantizer(q_kw.pop("kind"), **q_kw, rngs=rngs)


def abstract_tokenizer(config):
    """``(graphdef, abstract params, abstract rest)`` without allocating anything (nnx.eval_shape)."""
    ae_config = autoencoder_config(config)
    rngs = lambda: nnx.Rngs(jax.random.key(0, impl=INIT_KEY_IMPL))  # noqa: E731  (the key type the trainer inits with)
    abstract = nnx.eval_shape(lambda: Tokenizer(ae_config, quantizer_kwargs(config), rngs=rngs()))
    return nnx.split(abstract, nnx.Param, ...)


# ============================================================================================
# Pixels <-> the autoencoder's range
# ============================================================================================


def to_float(video: jax.Array) -> jax.Array:
    """uint8 ``[0, 255]`` -> float32 ``[-1, 1]`` (the autoencoder's input range)."""
    return video.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(video: jax.Array) -> jax.Array:
    """float ``[-1, 1]`` -> uint8 ``[0, 255]`` (rounded, clipped)."""
    return jnp.clip(jnp.round((video.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


# ============================================================================================
# Checkpoints: the workdir's orbax manager; typed PRNG keys stored as raw key data
# ============================================================================================


def checkpoint_manager(workdir: Path, config=None, *, read_only: bool = False) -> ocp.CheckpointManager:
    """The workdir's orbax manager (shared with the LM trainer: videogen.training.checkpointing.make_manager)."""
    if config is None:
        return checkpointing.make_manager(workdir, read_only=read_only)
    return checkpointing.make_manager(
        workdir, save_every=int(config.ckpt_every), max_to_keep=int(config.max_to_keep), read_only=read_only
    )


def latest_step(workdir) -> int | None:
    path = Path(workdir) / "checkpoints"
    if not path.is_dir():
        return None
    with checkpoint_manager(workdir, read_only=True) as mngr:
        return mngr.latest_step()


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def storable(tree):
    """Typed PRNG keys (VQ restart stream) are stored as their raw uint32 key data."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def abstract_storable(abstract):
    def f(x):
        if _is_key(x):
            data = jax.eval_shape(jax.random.key_data, x)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(f, abstract)


def unstore(tree, abstract):
    return jax.tree.map(
        lambda x, a: jax.random.wrap_key_data(x, impl=INIT_KEY_IMPL) if _is_key(a) else x, tree, abstract
    )


# ============================================================================================
# A trained tokenizer: load, encode, decode
# ============================================================================================


def load_tokenizer(workdir: str | os.PathLike, *, step: int | None = None, mesh=None, ema: bool = True):
    """``(autoencoder, quantizer, config)`` from a training workdir, with EMA (default) or raw params.

    Arrays are placed replicated on ``mesh`` if given, else on the default device.
    """
    workdir = Path(workdir)
    cfg_path = workdir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{cfg_path} not found: is {workdir} a tokenizer workdir (python -m tokenizer.train)?"
        )
    config = ml_collections.ConfigDict(json.loads(cfg_path.read_text()))
    graphdef, abs_params, abs_rest = abstract_tokenizer(config)
    sharding = (
        NamedSharding(mesh, PartitionSpec())
        if mesh is not None
        else jax.sharding.SingleDeviceSharding(jax.devices()[0])
    )
    to_abstract = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)  # noqa: E731
    abs_params = jax.tree.map(to_abstract, nnx.as_pure(abs_params))
    abs_rest = jax.tree.map(to_abstract, nnx.as_pure(abs_rest))

    def load(step: int):
        model_item = {"ema": abs_params, "rest": abs_rest}
        r = mngr.restore(
            step, args=ocp.args.Composite(model=ocp.args.StandardRestore(abstract_storable(model_item)))
        )
        checkpointing.verify_restored(mngr, step, "model", r.model)  # damaged files fail here, not in results
        params = r.model["ema"]
        if not ema:  # the raw params live in the train item, next to the optimizer state
            tx, _ = make_optimizer(config)
            abs_opt = jax.tree.map(to_abstract, jax.eval_shape(tx.init, abs_params))
            train_item = {
                "step": to_abstract(jax.ShapeDtypeStruct((), jnp.int32)),
                "params": abs_params,
                "opt_state": abs_opt,
            }
            saved = mngr.item_metadata(step)["train"]
            if "disc" in saved:  # a GAN run's discriminator: read (the tree must match), not used
                train_item["disc"] = jax.tree.map(
                    lambda m: to_abstract(jax.ShapeDtypeStruct(tuple(m.shape), m.dtype)), saved["disc"]
                )
            train = mngr.restore(
                step, args=ocp.args.Composite(train=ocp.args.StandardRestore(train_item))
            ).train
            checkpointing.verify_restored(mngr, step, "train", train)
            params = train["params"]
        return params, unstore(r.model["rest"], abs_rest)

    with checkpoint_manager(workdir, read_only=True) as mngr:
        _, (params, rest) = checkpointing.load_step(mngr, step, load, what="tokenizer")
    tok = nnx.merge(graphdef, params, rest)
    return tok.autoencoder, tok.quantizer, config


@nnx.jit
def _encode(model, quantizer, video):
    _, indices, _ = quantizer(model.encode(to_float(video)), train=False)
    return indices


@nnx.jit
def _decode(model, quantizer, indices):
    return to_uint8(model.decode(quantizer.indices_to_codes(indices)))


def encode_video(model, quantizer, video) -> jax.Array:
    """uint8 video ``[B, T, H, W, 3]`` (or one clip ``[T, H, W, 3]``) -> int32 token ids ``[B, t, h, w]``."""
    video = jnp.asarray(video)
    if video.dtype != jnp.uint8:
        raise TypeError(f"encode_video expects uint8 pixels, got {video.dtype}.")
    single = video.ndim == 4
    ids = _encode(model, quantizer, video[None] if single else video)
    return ids[0] if single else ids


def decode_indices(model, quantizer, indices) -> jax.Array:
    """int token ids ``[B, t, h, w]`` (or ``[t, h, w]``) -> uint8 video ``[B, T, H, W, 3]``."""
    indices = jnp.asarray(indices, jnp.int32)
    single = indices.ndim == 3
    video = _decode(model, quantizer, indices[None] if single else indices)
    return video[0] if single else video
