"""Device meshes with named axes (data, fsdp, tensor), `-1` filling whatever devices are left; the table of a train
state's shardings both trainers print."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DEFAULT_AXES: dict[str, int] = {"data": -1, "fsdp": 1, "tensor": 1}
# Axes a batch is split over: every axis that holds a different slice of the data.
BATCH_AXES: tuple[str, ...] = ("data", "fsdp")


def resolve_mesh_shape(axes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Replaces the one `-1` with what fills `num_devices`; clear errors for shapes that cannot fit."""
    axes = dict(axes)
    unknown = [name for name, size in axes.items() if size == -1]
    if len(unknown) > 1:
        raise ValueError(f"mesh {axes}: at most one axis may be -1 (it fills the remaining devices).")
    bad = {name: size for name, size in axes.items() if size != -1 and size < 1}
    if bad:
        raise ValueError(f"mesh {axes}: axis sizes must be positive or -1, got {bad}.")
    fixed = math.prod(size for size in axes.values() if size != -1)
    if unknown:
        if num_devices % fixed:
            raise ValueError(
                f"mesh {axes}: the fixed axes use {fixed} devices, which does not divide the "
                f"{num_devices} devices present; change the fixed sizes so they divide {num_devices}."
            )
        axes[unknown[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(
            f"mesh {axes} needs {fixed} devices but {num_devices} are present; set one axis to -1 "
            "to fill the rest, or change the sizes."
        )
    return axes


def make_mesh(axes: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over all (or the given) devices with automatic sharding on every axis.

    jax 0.10's `jax.make_mesh` defaults to explicit axis types; this codebase places shardings with
    logical rules and `with_sharding_constraint`, which is the automatic mode, so say so.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(axes or DEFAULT_AXES, len(devices))
    names = tuple(shape)
    if len(devices) == len(jax.devices()):
        return jax.make_mesh(tuple(shape.values()), names, axis_types=(AxisType.Auto,) * len(names))
    return Mesh(
        np.asarray(devices).reshape(tuple(shape.values())), names, axis_types=(AxisType.Auto,) * len(names)
    )


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes a batch dimension is split over (those of BATCH_AXES the mesh has)."""
    return tuple(a for a in BATCH_AXES if a in mesh.axis_names)


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def _spec_str(sharding) -> str:
    spec = tuple(sharding.spec) if isinstance(sharding, NamedSharding) else ()
    if not any(spec):
        return "replicated"
    return (
        "(" + ",".join("·" if s is None else (s if isinstance(s, str) else "+".join(s)) for s in spec) + ")"
    )


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def replicate_indivisible(sharding: NamedSharding, shape: tuple[int, ...], mesh: Mesh) -> NamedSharding:
    """``sharding`` with every dim that its mesh axes do not divide left unsharded: FSDP over conv output
    widths then works for any mesh (the tokenizer decoder's last conv has 3 outputs, code_dim may be odd); such
    a weight is replicated on that dim, which the sharding table printed at start shows."""
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    for i, axes in enumerate(spec):
        names = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
        if names and shape[i] % math.prod(mesh.shape[n] for n in names):
            spec[i] = None
    return NamedSharding(mesh, PartitionSpec(*spec))


def describe_shardings(state, shardings) -> str:
    """One line per param: path, shape, sharding, and the shardings of its optimizer slots."""
    params_flat = jax.tree_util.tree_flatten_with_path(state["params"])[0]
    psh = jax.tree.leaves(shardings["params"])
    opt_flat = jax.tree_util.tree_flatten_with_path(state["opt_state"])[0]
    osh = jax.tree.leaves(shardings["opt_state"])
    slots: dict[tuple, list[str]] = {}
    others = []
    param_paths = {tuple(p): _path_str(p) for p, _ in params_flat}
    for (path, leaf), sh in zip(opt_flat, osh):
        for n in range(len(path)):
            if tuple(path[n:]) in param_paths:
                slot = next(
                    (str(getattr(k, "name", "")) for k in reversed(path[:n]) if getattr(k, "name", "")), "?"
                )
                slots.setdefault(tuple(path[n:]), []).append(f"{slot} {_spec_str(sh)}")
                break
        else:
            others.append(f"{_path_str(path)} {tuple(leaf.shape)} {_spec_str(sh)}")
    width = max(len(s) for s in param_paths.values())
    lines = [f"{'param':<{width}}  {'shape':<18} {'sharding':<16} optimizer slots"]
    for (path, leaf), sh in zip(params_flat, psh):
        lines.append(
            f"{param_paths[tuple(path)]:<{width}}  {str(tuple(leaf.shape)):<18} {_spec_str(sh):<16} "
            + ", ".join(slots.get(tuple(path), ["-"]))
        )
    lines.append("optimizer scalars: " + ("; ".join(others) if others else "-"))
    rest = jax.tree_util.tree_flatten_with_path(state["rest"])[0]
    if rest:
        lines.append(
            "quantizer state: "
            + "; ".join(f"{_path_str(p)} {tuple(x.shape)} {_spec_str(x.sharding)}" for p, x in rest)
        )
    return "\n".join(lines)
