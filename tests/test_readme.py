"""The README and docs/ say what works: their make targets exist, their commands parse, the quick ones run."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from videogen import cli
from videogen.training.config import apply_overrides, load_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_spans(path: Path) -> list[str]:
    text = path.read_text()
    blocks = [b.replace("\\\n", " ") for b in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S)]
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [s for s in spans + lines if s]


def _commands(prefix: str) -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for span in _code_spans(path):
            for part in re.split(r"\s*(?:&&|;|\|)\s*", span):
                part = part.strip()
                if re.match(prefix, part):
                    found.append((path.name, part))
    return found


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_every_make_target_the_docs_name_exists():
    named = {(doc, m) for doc, cmd in _commands(r"make ") for m in re.findall(r"make ([a-z][a-z0-9-]*)", cmd)}
    assert len(named) >= 10, named  # the parser finds the README's targets
    missing = sorted((doc, m) for doc, m in named if m not in _make_targets())
    assert not missing, f"make targets named in the docs but not in the Makefile: {missing}"


def test_make_dry_runs_of_the_documented_targets():
    targets = sorted(
        {m for _, cmd in _commands(r"make ") for m in re.findall(r"make ([a-z][a-z0-9-]*)", cmd)}
    )
    for target in targets:
        r = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True)
        assert r.returncode == 0, (target, r.stderr)


def _trainer_commands():
    return [
        (doc, cmd) for doc, cmd in _commands(r"python -m (tokenizer|videogen)\.train ") if "--config " in cmd
    ]


def test_the_documented_trainer_commands_have_valid_configs_and_overrides():
    commands = _trainer_commands()
    assert commands, "the README shows how to train both stages"
    for doc, cmd in commands:
        args = shlex.split(cmd.replace("\\\n", " "))
        spec = args[args.index("--config") + 1]
        overrides = [a for a in args if a.startswith("--config.")]
        config = apply_overrides(load_config(str(ROOT / spec)), overrides)  # raises on an unknown key
        assert config.steps > 0, (doc, cmd)


def test_every_documented_videogen_subcommand_exists():
    names = {cmd.split()[1] for _, cmd in _commands(r"videogen [a-z]") if len(cmd.split()) > 1}
    names.discard("--help")
    assert {"sample", "continue", "eval"} <= names, names
    choices = set(cli.build_parser()._subparsers._group_actions[0].choices)
    assert names <= choices, f"documented but not in the CLI: {sorted(names - choices)}"


@pytest.mark.slow
def test_quick_make_targets_run_as_written(tmp_path):
    """`make data` and `make sample` (the shipped model: no runs/lm in RUNS) as a newcomer types them."""
    out = tmp_path / "samples"
    for target, made in (
        ("data", tmp_path / "preview" / "preview.gif"),
        ("sample", out / "contact_sheet.png"),
    ):
        r = subprocess.run(
            ["make", "-C", str(ROOT), target, f"RUNS={tmp_path}", f"ARGS=--out {out}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, (target, r.stdout[-2000:], r.stderr[-2000:])
        assert made.exists(), (target, sorted(p.name for p in made.parent.iterdir()))
