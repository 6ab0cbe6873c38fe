"""The pretrained model shipped inside the package: a tiny tokenizer + tiny LM on the built-in world.

    python -m videogen.pretrained pack --tokenizer-workdir runs/tok_a --lm-workdir runs/lm_b0 \\
        --out videogen/pretrained_data/tiny           # what `experiments/pretrained.py --pack-into` runs
    python -m videogen.pretrained verify              # the sha256 of every shipped file
    python -m videogen.pretrained show                # the manifest's commands and figures

(Packing -- :func:`videogen.pretrained_pack.pack`, which measures the figures with videogen.eval.evaluate -- and the
command line live in videogen/pretrained_pack.py; this module loads and checks the folder.)

The folder (``videogen/pretrained_data/tiny``, installed as package data) holds only plain data:

* ``tokenizer.npz``, ``lm.npz`` -- the EMA weights of the two models, one array per parameter, keyed by its
  path in the module (``autoencoder/decoder/conv_in/conv/kernel``, ``blocks/0/attn/wq``); they load with
  ``np.load(..., allow_pickle=False)`` and nothing in this module unpickles anything;
* ``text_tokenizer.model`` -- the LM's sentencepiece model;
* ``tokenizer_config.json``, ``lm_config.json`` -- the trainers' configs (their workdirs' ``config.json``);
* ``manifest.json`` -- the commands that trained the two models, the commit, the date, the training time,
  the sha256 and size of every other file, and the figures measured on this very copy (see ``pretrained_pack.pack``).

:func:`load` checks every file against the manifest's sha256 before reading anything and returns what
``videogen.lm.load_lm`` returns for a workdir: ``(model, (autoencoder, quantizer, tokenizer_config),
text_tokenizer, config)``. ``videogen sample``, ``videogen continue``, ``make demo`` and
experiments/sample.ipynb use it when no workdir is given; ``make pretrained`` (experiments/pretrained.py)
retrains it from scratch with the manifest's commands and compares the figures.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import runpy
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from tokenizer.api import abstract_tokenizer
from tokenizer.core import INIT_KEY_IMPL
from videogen import errors
from videogen.data import world
from videogen.data.text import TextTokenizer
from videogen.errors import UsageError
from videogen.eval import judge
from videogen.lm import abstract_model, sample, transformer_config
from videogen.training.config import apply_overrides, load_config, to_plain

REPO = Path(__file__).resolve().parents[1]
SHIPPED = Path(__file__).resolve().parent / "pretrained_data" / "tiny"

TOKENIZER_NPZ = "tokenizer.npz"
LM_NPZ = "lm.npz"
TEXT_MODEL = "text_tokenizer.model"
TOKENIZER_CONFIG = "tokenizer_config.json"
LM_CONFIG = "lm_config.json"
MANIFEST = "manifest.json"
FILES = (TOKENIZER_NPZ, LM_NPZ, TEXT_MODEL, TOKENIZER_CONFIG, LM_CONFIG)
FORMAT = 1
MAX_BYTES = 10 * 2**20  # the budget for the shipped folder (and for each refresh of it)

FIX = (
    "reinstall the package (pip install --force-reinstall videogen, or `git checkout videogen/pretrained_data` "
    "in a clone) or rebuild it with `make pretrained`"
)

# The regression figures: the judge's fully-correct count on these prompts, sampled in one batch with this seed
# and guidance, and the count of their objects whose colour it finds (which still moves when a weak model's
# fully-correct count sits near 0); tests/test_pretrained.py computes both again with regression_figures and
# compares them with the manifest's within these tolerances (clips, objects).
REGRESSION = {
    "split": "test",
    "num_prompts": 32,
    "seed": 0,
    "guidance": 3.0,
    "tolerance": 4,
    "colour_tolerance": 8,
}


# ============================================================================================
# Flattening: module state <-> {name: plain array}
# ============================================================================================


def _key_name(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flat_name(path) -> str:
    return "/".join(_key_name(k) for k in path)


def _is_prng_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def flatten_state(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """A pure state tree (``nnx.as_pure(nnx.state(m))``) -> ``{path: numpy array}``; PRNG keys as their raw
    uint32 key data. Only numeric dtypes numpy saves without pickling are accepted."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = prefix + _flat_name(path)
        arr = np.asarray(jax.random.key_data(leaf) if _is_prng_key(leaf) else leaf)
        if arr.dtype.kind not in "biuf" or arr.dtype.name not in (
            "bool",
            "float16",
            "float32",
            "float64",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
        ):
            raise ValueError(
                f"{name}: dtype {arr.dtype} cannot be stored as a plain .npz array; cast the model to "
                "float32 before packing it."
            )
        out[name] = arr
    return out


def _unflatten(abstract, arrays: dict[str, np.ndarray], *, file: str, prefix: str = ""):
    """The abstract pure tree filled from ``arrays`` (keys, shapes and dtypes must match exactly)."""
    used = set()

    def fill(path, leaf):
        name = prefix + _flat_name(path)
        if name not in arrays:
            raise UsageError(
                f"{file} has no array {name!r}: it does not match its config (a mismatched file); {FIX}."
            )
        arr = arrays[name]
        used.add(name)
        if _is_prng_key(leaf):
            want = jax.eval_shape(jax.random.key_data, leaf)
            if arr.shape != want.shape or arr.dtype != want.dtype:
                raise UsageError(
                    f"{file}: {name} is {arr.dtype}{list(arr.shape)}, its config needs "
                    f"{want.dtype}{list(want.shape)} (a mismatched file); {FIX}."
                )
            return jax.random.wrap_key_data(jnp.asarray(arr), impl=INIT_KEY_IMPL)
        if arr.shape != tuple(leaf.shape) or arr.dtype != leaf.dtype:
            raise UsageError(
                f"{file}: {name} is {arr.dtype}{list(arr.shape)}, its config needs "
                f"{leaf.dtype}{list(leaf.shape)} (a mismatched file); {FIX}."
            )
        return jnp.asarray(arr)

    tree = jax.tree_util.tree_map_with_path(fill, abstract)
    return tree, used


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:  # a damaged zip, or an object array (refused)
        raise UsageError(f"{path} cannot be read as plain arrays ({errors.one_line(e)}); {FIX}.") from None


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(f, **dict(sorted(arrays.items())))


def compare_weights(folder_a: str | Path, folder_b: str | Path) -> dict[str, dict]:
    """Array-by-array comparison of two packed models' weight files (the npz bytes carry zip timestamps, so
    their hashes differ even for equal weights): ``{file: {'arrays', 'differing', 'missing', 'max_abs_diff',
    'identical'}}``. A bit-identical reproduction is what makes the manifest's figures reproduce exactly."""
    out = {}
    for name in (TOKENIZER_NPZ, LM_NPZ):
        a, b = _read_npz(Path(folder_a) / name), _read_npz(Path(folder_b) / name)
        missing = sorted(set(a) ^ set(b))
        differing, max_abs = 0, 0.0
        for k in sorted(set(a) & set(b)):
            x, y = a[k], b[k]
            if x.shape != y.shape or x.dtype != y.dtype:
                differing += 1
                max_abs = float("inf")
            elif not np.array_equal(x, y):
                differing += 1
                if np.issubdtype(x.dtype, np.number):
                    diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
                    max_abs = max(max_abs, float(diff.max()))
        out[name] = {
            "arrays": len(set(a) | set(b)),
            "differing": differing,
            "missing": missing,
            "max_abs_diff": max_abs,
            "identical": not differing and not missing,
        }
    return out


# ============================================================================================
# Hashes and the manifest
# ============================================================================================


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | Path | None = None) -> dict:
    folder = Path(folder) if folder is not None else SHIPPED
    path = folder / MANIFEST
    if not path.is_file():
        raise UsageError(
            f"the pretrained model in {folder} has no {MANIFEST} (missing or not installed); {FIX}."
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is damaged ({errors.one_line(e)}); {FIX}.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise UsageError(f"{path} is damaged (no 'files' table); {FIX}.")
    if manifest.get("format") != FORMAT:
        raise UsageError(
            f"{path} is format {manifest.get('format')!r}, this videogen reads format {FORMAT}; {FIX}."
        )
    return manifest


def verify(folder: str | Path | None = None) -> dict:
    """The manifest, after every file it lists (and every file :func:`load` needs) matched its sha256 and size;
    else one UsageError naming the file and the fix."""
    folder = Path(folder) if folder is not None else SHIPPED
    manifest = read_manifest(folder)
    files = manifest["files"]
    if set(files) != set(FILES):
        wrong = sorted(set(files) ^ set(FILES))
        raise UsageError(
            f"{folder / MANIFEST} lists other files than a pretrained model has ({', '.join(wrong)}: a "
            f"mismatched manifest); {FIX}."
        )
    for name in FILES:
        entry, path = files[name], folder / name
        if not path.is_file():
            raise UsageError(f"{path} is missing from the pretrained model; {FIX}.")
        if path.stat().st_size != entry.get("bytes") or sha256(path) != entry.get("sha256"):
            raise UsageError(
                f"{path} is damaged or does not belong to this model (its sha256 differs from "
                f"{MANIFEST}'s); {FIX}."
            )
    return manifest


# ============================================================================================
# Loading
# ============================================================================================


def _module_from_npz(graphdef, abs_params, abs_rest, path: Path):
    """The module of an abstract ``(graphdef, params, rest)`` split, every variable read from ``path``."""
    arrays = _read_npz(path)
    params, used = _unflatten(nnx.as_pure(abs_params), arrays, file=str(path))
    rest, used_rest = _unflatten(nnx.as_pure(abs_rest), arrays, file=str(path))
    _no_extra(arrays, used | used_rest, path)
    return nnx.merge(graphdef, params, rest)


def load(folder: str | Path | None = None):
    """``(model, (autoencoder, quantizer, tokenizer_config), text_tokenizer, config)`` -- what
    ``videogen.lm.load_lm`` returns -- from the shipped folder (default) or a packed copy, on the default
    device. Every file's sha256 is checked first (:func:`verify`); a damaged or mismatched file is one
    UsageError naming it and the fix."""
    folder = Path(folder) if folder is not None else SHIPPED
    verify(folder)

    def config_of(name):
        try:
            return ml_collections.ConfigDict(json.loads((folder / name).read_text()))
        except (ValueError, UnicodeDecodeError, OSError) as e:
            raise UsageError(f"{folder / name} is damaged ({errors.one_line(e)}); {FIX}.") from None

    tok_config, config = config_of(TOKENIZER_CONFIG), config_of(LM_CONFIG)
    # The tokenizer: the trainer's module (autoencoder + quantizer), every variable from the npz (arrays on
    # the default device).
    tok = _module_from_npz(*abstract_tokenizer(tok_config), folder / TOKENIZER_NPZ)
    ae, quantizer = tok.autoencoder, tok.quantizer

    tcfg = transformer_config(config, config.model.codebook_size, config.model.video_grid)
    if int(quantizer.codebook_size) != tcfg.codebook_size:
        raise UsageError(
            f"{folder / LM_CONFIG}: the LM reads {tcfg.codebook_size} codes, the tokenizer has "
            f"{quantizer.codebook_size} (mismatched files); {FIX}."
        )
    model = _module_from_npz(*abstract_model(tcfg), folder / LM_NPZ)
    text_tok = TextTokenizer(folder / TEXT_MODEL, int(config.text.max_length))
    return model, (ae, quantizer, tok_config), text_tok, config


def _no_extra(arrays: dict, used: set, path: Path) -> None:
    extra = sorted(set(arrays) - used)
    if extra:
        raise UsageError(
            f"{path} holds arrays its config has no place for ({extra[:3]}...: a mismatched file); {FIX}."
        )


def describe(folder: str | Path | None = None) -> str:
    """One line: which model this is and its headline figure (for the commands that use it)."""
    folder = Path(folder) if folder is not None else SHIPPED
    try:
        shown = folder.relative_to(REPO)
    except ValueError:
        shown = folder
    manifest = read_manifest(folder)
    figs = manifest.get("figures") or {}
    test = (figs.get("judge") or {}).get("test") or {}
    score = (
        f", judge {test['all_correct']:.0%} fully correct on {test['num_clips']} test prompts"
        if "all_correct" in test
        else ""
    )
    return f"the pretrained {manifest.get('name', 'tiny')} model shipped in {shown}{score}"


def lm_config_dict(folder: str | Path | None = None) -> dict:
    """The shipped LM's config.json as a dict (what the commands check flags against before loading), after
    every file's hash was checked."""
    folder = Path(folder) if folder is not None else SHIPPED
    verify(folder)
    return json.loads((folder / LM_CONFIG).read_text())


# Where the commands write when they use the shipped model (no workdir to write into): relative to the
# current folder, like the Makefile's runs/.
DEFAULT_OUT = Path("runs") / "shipped"


def announce(prog: str, folder: str | Path | None = None) -> None:
    """The one line a command prints when it falls back to the shipped model."""
    print(f"{prog}: no --workdir given: using {describe(folder)}.", flush=True)


# ============================================================================================
# Figures
# ============================================================================================


def regression_prompts(config, num: int | None = None) -> list[str]:
    """The regression test's prompts: captions of the first ``num`` clips of the world's test split."""
    d = config.data
    wcfg = world.WorldConfig(
        resolution=int(d.resolution),
        num_frames=int(d.num_frames),
        max_objects=int(d.get("max_objects", 2)),
        seed=int(d.get("seed", 0)),
    )
    n = int(num or REGRESSION["num_prompts"])
    return [world.sample_clip(wcfg, REGRESSION["split"], i).caption for i in range(n)]


def regression_figures(lm) -> dict:
    """The manifest's ``regression`` figures: :func:`regression_prompts` sampled in one batch with
    ``REGRESSION``'s seed and guidance and the model's own objective, judged: ``fully_correct`` (clips),
    ``colour_found`` (objects whose colour the judge finds) of ``objects``."""
    model, bundle, text_tok, config = lm
    prompts = regression_prompts(config)
    videos = np.asarray(
        sample(
            model,
            bundle,
            text_tok,
            prompts,
            objective=config.objective,
            guidance=REGRESSION["guidance"],
            seed=REGRESSION["seed"],
        )
    )
    verdicts = [judge.judge_video(v, p) for v, p in zip(videos, prompts)]
    objects = [o for v in verdicts for o in v.objects]
    return {
        "fully_correct": int(sum(v.all_correct for v in verdicts)),
        "colour_found": int(sum(o.colour_found for o in objects)),
        "objects": len(objects),
    }


def figures_table(columns: Sequence[tuple[str, dict]]) -> str:
    """A markdown table of the headline figures of one or more manifests' ``figures``, side by side."""

    def get(f, *keys):
        for k in keys:
            f = (f or {}).get(k) if isinstance(f, dict) else None
        return f

    rows = [
        ("judge test, fully correct", ("judge", "test", "all_correct"), "{:.1%}"),
        ("judge held-out, fully correct", ("judge", "heldout", "all_correct"), "{:.1%}"),
        ("judge test: colour / shape", None, None),
        ("FVD vs test clips", ("fvd", "test"), "{:.1f}"),
        ("tokenizer PSNR (dB)", ("tokenizer", "psnr"), "{:.2f}"),
        ("tokenizer code usage", ("tokenizer", "usage"), "{:.1%}"),
        (f"regression: fully correct of {REGRESSION['num_prompts']}", ("regression", "fully_correct"), "{}"),
        ("regression: objects with their colour", ("regression", "colour_found"), "{}"),
    ]
    head = "| figure | " + " | ".join(name for name, _ in columns) + " |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for label, keys, fmt in rows:
        cells = []
        for _, figs in columns:
            if keys is None:
                c, sh = get(figs, "judge", "test", "colour"), get(figs, "judge", "test", "shape")
                cells.append("n/a" if c is None else f"{c:.0%} / {sh:.0%}")
                continue
            v = get(figs, *keys)
            cells.append("n/a" if v is None else fmt.format(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ============================================================================================
# Provenance: commands, training time, commit
# ============================================================================================


_CONFIG_FILES = {
    "tokenizer": ("experiments/tokenizer_world.py", ("tiny", "default")),
    "lm": ("experiments/lm_world.py", ("tiny", "default", "1b")),
}
_MODULES = {"tokenizer": "tokenizer.train", "lm": "videogen.train"}
# Filled in by the trainer when the config leaves them None (from the tokenizer): not part of the command.
_DERIVED = {"tokenizer": (), "lm": ("model.codebook_size", "model.video_grid", "model.group_bits")}


def _plain(x):
    return json.loads(json.dumps(to_plain(x)))


def _leaves(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _literal(v, top: bool = True) -> str:
    """A config value as an override's VALUE (what tokenizer.train's override parser reads back): strings
    bare at the top (``--config.objective=next_token``), quoted inside tuples."""
    if isinstance(v, list):
        inner = ",".join(_literal(x, top=False) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, str) and top:
        return v
    return repr(v)


def _display_path(path: str | Path) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def reconstruct_command(
    workdir: str | Path,
    kind: str,
    *,
    tokenizer_workdir: str | Path | None = None,
    config: dict | None = None,
    variants: Sequence[str] | None = None,
) -> dict:
    """The trainer command that wrote ``workdir`` (or that writes ``config``, a config.json's dict, into
    ``workdir``): the config against each variant of the experiment's config file; the variant that needs
    the fewest ``--config.KEY=VALUE`` overrides wins. Checked: the command's config equals the saved one
    on every key it has (``tokenizer_workdir`` and what the trainer fills in itself aside); keys the config file
    gained since keep their defaults and are listed as ``new_keys``. ``{'command', 'argv', 'config',
    'overrides', 'new_keys'}``; paths are written relative to the repo when inside it."""
    saved = config if config is not None else json.loads((Path(workdir) / "config.json").read_text())
    have = _leaves(saved)
    file, names = _CONFIG_FILES[kind]
    best = None
    for variant in variants or names:
        spec = f"{file}:{variant}"
        base = _leaves(_plain(load_config(str(REPO / spec))))
        overrides = [
            f"--config.{k}={_literal(v)}"
            for k, v in sorted(have.items())
            if k != "tokenizer_workdir"
            and (k not in base or base[k] != v)
            and not (k in _DERIVED[kind] and base.get(k) is None)
        ]
        if best is None or len(overrides) < len(best[1]):
            best = (spec, overrides)
    spec, overrides = best
    # Keys the config file has gained since (new options, off by default) cannot be left out of a command:
    # they take today's defaults, listed here.
    new_keys = sorted(set(_leaves(_plain(load_config(str(REPO / spec))))) - set(have))
    if kind == "lm":
        tw = tokenizer_workdir if tokenizer_workdir is not None else saved["tokenizer_workdir"]
        overrides.insert(0, f"--config.tokenizer_workdir={_display_path(tw)}")
    rebuilt = _leaves(_plain(apply_overrides(load_config(str(REPO / spec)), overrides)))
    mismatch = sorted(
        k
        for k, v in have.items()
        if k != "tokenizer_workdir"
        and rebuilt.get(k) != v
        and not (k in _DERIVED[kind] and rebuilt.get(k) is None)
    )
    if mismatch:
        raise ValueError(f"cannot rebuild the command of {workdir}: {mismatch} differ after the overrides.")
    argv = ["python", "-m", _MODULES[kind], "--config", spec, "--workdir", _display_path(workdir), *overrides]
    return {
        "command": shlex.join(argv),
        "argv": argv,
        "config": spec,
        "overrides": overrides,
        "new_keys": new_keys,
    }


def training_time(workdir: str | Path, log: str | Path | None = None) -> dict:
    """How long a workdir's training took on the machine that ran it, in seconds.

    ``steps_s``: the train steps, summed from metrics.jsonl (each record's steps over its steps/s);
    ``eval_s``: its evaluations; ``wall_s``: from its first file (config.json / the text tokenizer) to the
    last line of metrics.jsonl, start-up and evaluations included (the figure the manifest reports as
    ``seconds``); ``first_step_s`` / ``s_per_step``: from the trainer's final JSON line when its log is found
    (``log``, else ``WORKDIR.log`` next to the workdir)."""
    workdir = Path(workdir)
    out: dict[str, Any] = {}
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return out
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a restart
    prev, steps_s = 0, 0.0
    for r in records:
        if r.get("kind") == "train" and r.get("steps_per_sec"):
            step = int(r["step"])
            steps_s += max(step - prev, 0) / float(r["steps_per_sec"])
            prev = step
    out["steps"] = prev
    out["steps_s"] = steps_s
    out["eval_s"] = sum(float(r.get("eval_seconds") or 0) for r in records if r.get("kind") == "eval")
    first = min(
        (p.stat().st_mtime for p in (workdir / "config.json", workdir / TEXT_MODEL) if p.is_file()),
        default=None,
    )
    if first is not None:
        out["wall_s"] = path.stat().st_mtime - first
    log = Path(log) if log else workdir.with_name(workdir.name + ".log")
    if log.is_file():
        for line in reversed(log.read_text(errors="replace").splitlines()):
            if line.startswith("{") and "s_per_step" in line:
                try:
                    final = json.loads(line)
                except ValueError:
                    break
                out.update(
                    first_step_s=final.get("first_step_s"), s_per_step=final.get("s_per_step"), log=str(log)
                )
                break
    out["seconds"] = out.get("wall_s", steps_s + out["eval_s"])
    return out


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    """The commit (and whether tracked files differ from it), the date, this machine."""
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit:  # read-only: diff-index writes nothing, unlike `git status`
        try:
            dirty = (
                subprocess.run(
                    ["git", "diff-index", "--quiet", "HEAD", "--"], cwd=REPO, capture_output=True, timeout=20
                ).returncode
                != 0
            )
        except (OSError, subprocess.SubprocessError):
            dirty = None
    return {
        "commit": commit,
        "tracked_files_modified": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        # XLA:CPU's float results depend on the library versions and the CPU's vector units: a reproduction is
        # bit-identical only where both match (then the figures match exactly, not within a tolerance).
        "versions": {name: _version(name) for name in ("jax", "jaxlib", "flax", "optax", "numpy")},
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


if (
    __name__ == "__main__"
):  # the folder's command line lives with pack(), which measures with videogen.eval.evaluate
    runpy.run_module("videogen.pretrained_pack", run_name="__main__", alter_sys=True)
