"""Config files for both trainers: big_vision-style Python files with ``get_config(arg)``, ``--config.KEY=VALUE``
overrides, and ConfigDicts as plain dicts.

    config = apply_overrides(load_config("experiments/lm_world.py:tiny"), ["--config.steps=200"])

Overrides are ``--config.KEY=VALUE`` (or plain ``KEY=VALUE``), dotted for nested keys; VALUE is read as a Python
literal (``3``, ``1e-3``, ``(1, 2, 2)``, ``True``, ``None``) and otherwise kept as a string. Unknown keys are
errors (naming the close ones), except under ``quantizer`` whose sections are the quantizers' constructor
arguments.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from videogen import errors
from videogen.data.sources import spec_keys

__all__ = ["apply_overrides", "load_config", "to_plain"]

# Config sections whose keys are open (constructor kwargs that differ between choices).
_OPEN_SECTIONS = ("quantizer",)
# Data specs may add any key some source kind takes (a world field such as object_count_weights, a TFDS or
# folder source's option), not in the shipped configs; other new keys there are typos.
_DATA_SECTIONS = ("data", "eval.data")


def load_config(spec: str) -> ml_collections.ConfigDict:
    """``'path/to/file.py'`` or ``'path/to/file.py:arg'`` -> ``get_config(arg)`` of that file."""
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        raise errors.UsageError(
            f"--config {spec}: config file {path!r} not found"
            + (" (it is a folder)" if Path(path).is_dir() else "")
            + "."
        )
    module_spec = importlib.util.spec_from_file_location(f"_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise errors.UsageError(f"--config {spec}: {path} has no get_config(arg=None) function.")
    try:
        return module.get_config(arg or None)
    except ValueError as e:  # the config file's own refusal, e.g. an unknown variant
        raise errors.UsageError(f"--config {spec}: {e}") from e


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Applies ``['--config.a.b=1', 'c=x', ...]`` to ``config`` in place (and returns it)."""
    for item in overrides:
        text = item[len("--config.") :] if item.startswith("--config.") else item
        if "=" not in text or text.startswith("-"):
            raise errors.UsageError(
                f"override {item!r}: write --config.KEY=VALUE (or KEY=VALUE), e.g. --config.steps=200."
            )
        key, value = text.split("=", 1)
        path = key.strip().split(".")
        node = config
        for i, name in enumerate(path[:-1]):
            if not hasattr(node, "keys"):
                raise errors.UsageError(
                    f"override {item!r}: {'.'.join(path[:i])} is a value ({node!r}), not a config section."
                )
            if name not in node:
                raise errors.UnknownKeyError(
                    f"override {item!r}: no config section {'.'.join(path[: i + 1])!r}"
                    + _close_keys(name, node, path[:i])
                )
            node = node[name]
        leaf = path[-1]
        parsed = _parse_value(value)
        if not hasattr(node, "keys"):
            raise errors.UsageError(
                f"override {item!r}: {'.'.join(path[:-1])} is a value ({node!r}), not a config section."
            )
        if leaf not in node:
            section = ".".join(path[:-1])
            if section in _DATA_SECTIONS and leaf not in spec_keys():
                raise errors.UnknownKeyError(
                    f"override {item!r}: no data spec key {leaf!r}"
                    + _close_keys(leaf, {k: None for k in (*node.keys(), *spec_keys())}, path[:-1])
                )
            if path[0] not in _OPEN_SECTIONS and section not in _DATA_SECTIONS:
                raise errors.UnknownKeyError(
                    f"override {item!r}: unknown key {key!r}" + _close_keys(leaf, node, path[:-1])
                )
            with node.unlocked():
                node[leaf] = parsed
            continue
        old = node[leaf]
        if isinstance(old, str) and not isinstance(parsed, str):
            parsed = value  # e.g. --config.model.dtype=float32 stays a string
        elif isinstance(old, tuple) and isinstance(parsed, list):
            parsed = tuple(parsed)
        elif isinstance(old, float) and isinstance(parsed, int) and not isinstance(parsed, bool):
            parsed = float(parsed)
        try:
            node[leaf] = parsed
        except TypeError as e:
            raise errors.UsageError(
                f"override {item!r}: {key} is {type(old).__name__} ({old!r}); got {parsed!r}."
            ) from e
    return config


def _close_keys(name: str, node, parents: Sequence[str]) -> str:
    """The end of an unknown-key message: the keys of ``node`` spelled like ``name`` (or all of them)."""
    keys = sorted(str(k) for k in node.keys())
    prefix = "".join(f"{p}." for p in parents)
    close = difflib.get_close_matches(name, keys, n=3, cutoff=0.6)
    if close:
        return f"; did you mean {' or '.join(f'--config.{prefix}{k}' for k in close)}?"
    return f"; keys here: {keys}."


def to_plain(x: Any) -> Any:
    """A ConfigDict (or dict) as nested plain dicts, tuples as lists: JSON's shapes."""
    if isinstance(x, (ml_collections.ConfigDict, dict)):
        return {k: to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    return x
