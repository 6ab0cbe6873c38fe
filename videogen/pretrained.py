"""The pretrained model shipped inside the package: a tiny tokenizer + tiny LM on the built-in world.

    python -m videogen.pretrained pack --tokenizer-workdir runs/tok_a --lm-workdir runs/lm_b0 \\
        --out videogen/pretrained_data/tiny           # what `experiments/pretrained.py --pack-into` runs
    python -m videogen.pretrained verify              # the sha256 of every shipped file
    python -m videogen.pretrained show                # the manifest's commands and figures

The folder (``videogen/pretrained_data/tiny``, installed as package data) holds only plain data:

* ``tokenizer.npz``, ``lm.npz`` -- the EMA weights of the two models, one array per parameter, keyed by its
  path in the module (``autoencoder/decoder/conv_in/conv/kernel``, ``blocks/0/attn/wq``); they load with
  ``np.load(..., allow_pickle=False)`` and nothing in this module unpickles anything;
* ``text_tokenizer.model`` -- the LM's sentencepiece model;
* ``tokenizer_config.json``, ``lm_config.json`` -- the trainers' configs (their workdirs' ``config.json``);
* ``manifest.json`` -- the commands that trained the two models, the commit, the date, the training time,
  the sha256 and size of every other file, and the figures measured on this very copy (see :func:`pack`).

:func:`load` checks every file against the manifest's sha256 before reading anything and returns what
``videogen.train.load_lm`` returns for a workdir: ``(model, (autoencoder, quantizer, tokenizer_config),
text_tokenizer, config)``. ``videogen sample``, ``videogen continue``, ``make demo`` and
experiments/sample.ipynb use it when no workdir is given; ``make pretrained`` (experiments/pretrained.py)
retrains it from scratch with the manifest's commands and compares the figures.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videogen import checks, errors
from videogen.errors import UsageError

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

# Evaluation sizes of the manifest's figures, chosen for ~3 minutes on an idle 2-core CPU (I3D is most of it:
# ~1 s per clip there); the manifest's figures.seconds records what each part took where it was packed.
EVAL_SIZES = {
    "judge_clips": 64,
    "fvd_clips": 32,
    "tokenizer_clips": 64,
    "batch_size": 32,
    "seed": 0,
    "guidance": 3.0,
    "fvd_frames": 16,
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
    import jax

    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def flatten_state(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """A pure state tree (``nnx.as_pure(nnx.state(m))``) -> ``{path: numpy array}``; PRNG keys as their raw
    uint32 key data. Only numeric dtypes numpy saves without pickling are accepted."""
    import jax

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
    import jax
    import jax.numpy as jnp

    from tokenizer.train import INIT_KEY_IMPL

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
    from flax import nnx

    arrays = _read_npz(path)
    params, used = _unflatten(nnx.as_pure(abs_params), arrays, file=str(path))
    rest, used_rest = _unflatten(nnx.as_pure(abs_rest), arrays, file=str(path))
    _no_extra(arrays, used | used_rest, path)
    return nnx.merge(graphdef, params, rest)


def load(folder: str | Path | None = None):
    """``(model, (autoencoder, quantizer, tokenizer_config), text_tokenizer, config)`` -- what
    ``videogen.train.load_lm`` returns -- from the shipped folder (default) or a packed copy, on the default
    device. Every file's sha256 is checked first (:func:`verify`); a damaged or mismatched file is one
    UsageError naming it and the fix."""
    import ml_collections

    from tokenizer import api as tok_train
    from videogen import train as lm_train
    from videogen.data.text import TextTokenizer

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
    tok = _module_from_npz(*tok_train.abstract_tokenizer(tok_config), folder / TOKENIZER_NPZ)
    ae, quantizer = tok.autoencoder, tok.quantizer

    tcfg = lm_train.transformer_config(config, config.model.codebook_size, config.model.video_grid)
    if int(quantizer.codebook_size) != tcfg.codebook_size:
        raise UsageError(
            f"{folder / LM_CONFIG}: the LM reads {tcfg.codebook_size} codes, the tokenizer has "
            f"{quantizer.codebook_size} (mismatched files); {FIX}."
        )
    model = _module_from_npz(*lm_train.abstract_model(tcfg), folder / LM_NPZ)
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
    from videogen.data import world

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
    from videogen import judge
    from videogen.train import sample

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


def measure(lm, sizes: dict | None = None, *, fvd: bool = True, log=print) -> dict:
    """The manifest's figures of a loaded model: judge on test and held-out prompts, FVD of the test samples
    against the world's test clips, the tokenizer's PSNR / SSIM / code usage on test clips, and the
    regression count; each with its size and its time."""
    from videogen import evaluate as ev

    s = dict(EVAL_SIZES, **(sizes or {}))
    model, bundle, text_tok, config = lm
    spec = config.data.to_dict()
    out: dict[str, Any] = {"sizes": s, "seconds": {}}
    t0 = time.perf_counter()
    out["regression"] = {**REGRESSION, **regression_figures(lm)}
    out["seconds"]["regression"] = time.perf_counter() - t0
    r = out["regression"]
    log(
        f"[pretrained] regression: {r['fully_correct']} of {REGRESSION['num_prompts']} clips fully correct, colour "
        f"found for {r['colour_found']} of {r['objects']} objects ({out['seconds']['regression']:.0f} s)"
    )

    t0 = time.perf_counter()
    gen = ev.GenSettings(
        num_clips=s["judge_clips"],
        batch_size=s["batch_size"],
        guidance=s["guidance"],
        seed=s["seed"],
        fvd=False,
    )
    world = ev.protocol_world(lm, spec, ["test", "heldout"], gen, None)
    out["judge"] = {
        split: {
            k: r["judge"][k]
            for k in ("num_clips", "all_correct", "colour", "shape", "size", "motion", "all_correct_lenient")
        }
        for split, r in world.items()
    }
    out["seconds"]["judge"] = time.perf_counter() - t0
    log(
        f"[pretrained] judge: test {out['judge']['test']['all_correct']:.1%}, held-out "
        f"{out['judge']['heldout']['all_correct']:.1%} fully correct ({out['seconds']['judge']:.0f} s)"
    )

    if fvd:
        t0 = time.perf_counter()
        gen = ev.GenSettings(
            num_clips=s["fvd_clips"],
            batch_size=s["batch_size"],
            guidance=s["guidance"],
            seed=s["seed"],
            fvd=True,
            fvd_frames=s["fvd_frames"],
        )
        r = ev.protocol_world(lm, spec, ["test"], gen, ev.i3d_feature_fn(8))["test"]
        out["fvd"] = {
            "test": r["fvd"],
            "num_clips": r["num_clips"],
            "frames": min(int(s["fvd_frames"]), int(config.data.num_frames)),
        }
        out["seconds"]["fvd"] = time.perf_counter() - t0
        log(
            f"[pretrained] FVD vs {r['num_clips']} test clips: {r['fvd']:.1f} ({out['seconds']['fvd']:.0f} s)"
        )

    t0 = time.perf_counter()
    ae, quantizer, tok_config = bundle
    r = ev.evaluate_tokenizer(
        ae,
        quantizer,
        tok_config,
        splits=["test"],
        num_clips=s["tokenizer_clips"],
        batch_size=s["batch_size"],
        fvd=False,
    )["splits"]["test"]
    out["tokenizer"] = {
        "num_clips": r["num_clips"],
        "psnr": r["psnr"],
        "ssim": r["ssim"],
        "usage": r["usage"],
        "used_codes": r["used_codes"],
        "codebook_size": r["codebook_size"],
        "judge_all_correct": (r.get("judge") or {}).get("all_correct"),
    }
    out["seconds"]["tokenizer"] = time.perf_counter() - t0
    log(
        f"[pretrained] tokenizer: PSNR {r['psnr']:.2f} dB, code usage {r['usage']:.1%} ({r['used_codes']} of "
        f"{r['codebook_size']}) ({out['seconds']['tokenizer']:.0f} s)"
    )
    return out


def _finite(x):
    """NaN / inf (e.g. a judge attribute over no found objects) as None: the manifest is strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _finite(x.item())
    return x


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
    from tokenizer.train import _to_plain

    return json.loads(json.dumps(_to_plain(x)))


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
    from tokenizer.train import apply_overrides, load_config

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
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }


# ============================================================================================
# Packing
# ============================================================================================


def pack(
    tokenizer_workdir: str | Path,
    lm_workdir: str | Path,
    out_dir: str | Path,
    *,
    commands: dict | None = None,
    sizes: dict | None = None,
    fvd: bool = True,
    name: str = "tiny",
    tokenizer_step: int | None = None,
    lm_step: int | None = None,
    note: str | None = None,
    log=print,
) -> dict:
    """Writes the pretrained folder ``out_dir`` from two trained workdirs and returns its manifest.

    The EMA weights of both (``tokenizer.train.load_tokenizer``, ``videogen.train.load_lm``) are flattened to
    ``tokenizer.npz`` / ``lm.npz``; the LM's text tokenizer and both configs are copied. The folder is built
    next to ``out_dir`` and measured *as loaded back* by :func:`load` (``measure``: judge on test and held-out
    prompts, FVD, tokenizer PSNR / usage, the regression count), then the manifest is written and the folder
    replaces ``out_dir`` in one rename. ``commands``: ``{'tokenizer': ..., 'lm': ...}`` command lines to
    record instead of the ones rebuilt from the workdirs' config.json.
    """
    from flax import nnx

    from tokenizer import api as tok_train
    from videogen import train as lm_train

    tokenizer_workdir, lm_workdir, out_dir = Path(tokenizer_workdir), Path(lm_workdir), Path(out_dir)
    checks.trained_workdir(tokenizer_workdir, "--tokenizer-workdir", expect="tokenizer", step=tokenizer_step)
    lm_cfg = checks.lm_workdir(lm_workdir, "--lm-workdir", step=lm_step)
    named = Path(lm_train._saved_tokenizer_workdir(lm_cfg["tokenizer_workdir"], lm_workdir)).resolve()
    if named != tokenizer_workdir.resolve():
        raise UsageError(
            f"--lm-workdir {lm_workdir} was trained on the tokenizer in {named}, not "
            f"--tokenizer-workdir {tokenizer_workdir}: pack the pair that was trained together."
        )
    t_start = time.perf_counter()
    log(f"[pretrained] packing {tokenizer_workdir} + {lm_workdir} into {out_dir}")
    ae, quantizer, tok_config = tok_train.load_tokenizer(tokenizer_workdir, step=tokenizer_step)
    model, _, _, config = lm_train.load_lm(lm_workdir, step=lm_step)
    tok_arrays = {
        **flatten_state(nnx.as_pure(nnx.state(ae)), "autoencoder/"),
        **flatten_state(nnx.as_pure(nnx.state(quantizer)), "quantizer/"),
    }
    lm_arrays = flatten_state(nnx.as_pure(nnx.state(model)))

    work = out_dir.with_name(out_dir.name + ".packing")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _write_npz(work / TOKENIZER_NPZ, tok_arrays)
        _write_npz(work / LM_NPZ, lm_arrays)
        shutil.copyfile(lm_workdir / TEXT_MODEL, work / TEXT_MODEL)
        tok_json = json.loads((tokenizer_workdir / "config.json").read_text())
        lm_json = json.loads((lm_workdir / "config.json").read_text())
        # Provenance only (the manifest's commands say where it came from); loading never reads it.
        lm_json["tokenizer_workdir"] = _display_path(tokenizer_workdir)
        (work / TOKENIZER_CONFIG).write_text(json.dumps(tok_json, indent=1, sort_keys=True) + "\n")
        (work / LM_CONFIG).write_text(json.dumps(lm_json, indent=1, sort_keys=True) + "\n")
        files = {n: {"sha256": sha256(work / n), "bytes": (work / n).stat().st_size} for n in FILES}
        total = sum(f["bytes"] for f in files.values())
        if total > MAX_BYTES:
            raise UsageError(
                f"the packed model is {total / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB the "
                "package may carry: pack a smaller model."
            )
        manifest: dict[str, Any] = {"format": FORMAT, "name": name, **provenance(), "files": files}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")

        tok_step = tokenizer_step if tokenizer_step is not None else tok_train.latest_step(tokenizer_workdir)
        step = lm_step if lm_step is not None else tok_train.latest_step(lm_workdir)
        rebuilt = {
            "tokenizer": reconstruct_command(tokenizer_workdir, "tokenizer"),
            "lm": reconstruct_command(lm_workdir, "lm", tokenizer_workdir=tokenizer_workdir),
        }
        manifest["commands"] = {k: (commands or {}).get(k) or v["command"] for k, v in rebuilt.items()}
        manifest["configs"] = {k: v["config"] for k, v in rebuilt.items()}
        manifest["overrides"] = {k: v["overrides"] for k, v in rebuilt.items()}
        manifest["workdirs"] = {
            "tokenizer": _display_path(tokenizer_workdir),
            "lm": _display_path(lm_workdir),
        }
        manifest["steps"] = {"tokenizer": tok_step, "lm": step}
        manifest["params"] = {
            "tokenizer": int(sum(a.size for a in tok_arrays.values())),
            "lm": int(sum(a.size for a in lm_arrays.values())),
        }
        manifest["seeds"] = {"tokenizer": tok_json.get("seed"), "lm": lm_json.get("seed")}
        manifest["training"] = {
            "tokenizer": training_time(tokenizer_workdir),
            "lm": training_time(lm_workdir),
        }
        if note:
            manifest["note"] = note
        # Measured on the copy as it loads back (hash checks included).
        t0 = time.perf_counter()
        lm = load(work)
        manifest["figures"] = _finite(measure(lm, sizes, fvd=fvd, log=log))
        manifest["eval_seconds"] = time.perf_counter() - t0
        manifest["pack_seconds"] = time.perf_counter() - t_start
        manifest["total_bytes"] = total
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        verify(work)
        old = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out_dir.exists():
            out_dir.rename(old)
        work.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(
        f"[pretrained] wrote {out_dir} ({total / 2**20:.2f} MiB, {len(FILES) + 1} files) in "
        f"{time.perf_counter() - t_start:.0f} s"
    )
    return manifest


# ============================================================================================
# CLI
# ============================================================================================


def main(argv: list[str] | None = None) -> None:
    parser = errors.ArgumentParser(prog="python -m videogen.pretrained", description=__doc__.split("\n\n")[0])
    errors.add_verbose(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "pack", help="pack two trained workdirs into a pretrained folder (measures its figures)"
    )
    p.add_argument("--tokenizer-workdir", required=True)
    p.add_argument("--lm-workdir", required=True)
    p.add_argument("--out", default=str(SHIPPED))
    p.add_argument("--no-fvd", action="store_true", help="skip the FVD figure (I3D)")
    p.add_argument("--note", help="a line of context kept in the manifest")
    errors.add_verbose(p, top_level=False)
    for name, text in (
        ("verify", "check every file's sha256 against the manifest"),
        ("show", "the manifest's commands and figures"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--folder", default=str(SHIPPED))
        errors.add_verbose(p, top_level=False)
    args = parser.parse_args(argv)
    errors.configure_logging(args.verbose)
    with errors.reported(f"{parser.prog} {args.command}", args.verbose):
        if args.command == "pack":
            checks.output_folder(args.out, "--out")
            pack(args.tokenizer_workdir, args.lm_workdir, args.out, fvd=not args.no_fvd, note=args.note)
        elif args.command == "verify":
            m = verify(args.folder)
            print(f"{args.folder}: {len(m['files'])} files match {MANIFEST}")
        else:
            m = verify(args.folder)
            for k, c in (m.get("commands") or {}).items():
                print(f"{k}: {c}")
            print(figures_table([(Path(args.folder).name, m.get("figures") or {})]))


if __name__ == "__main__":
    main(sys.argv[1:])
