"""User mistakes, and how every entry point reports them.

A :class:`UsageError` is a mistake in what was asked for: a bad path, the wrong kind of workdir, a value out
of range, an unreadable input. Every entry point (``videogen ...`` and the ``python -m`` mains of the trainers
and evaluators) prints its message as one line on stderr and exits with :data:`EXIT_USAGE`; any other
exception is a bug and keeps its traceback. ``-v`` shows the traceback of a UsageError too.

Exit codes: 0 done (``judge``: the video is correct), 1 a failure that is not a usage error (``judge``: the
video is incorrect; a trainer stopped by a non-finite loss or a busy workdir), 2 a usage error (``judge``:
the video could not be judged).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator

EXIT_USAGE = 2

# Libraries that log at INFO what a user never needs (orbax opens every checkpoint with a dozen absl lines,
# JAX reports its failed TPU probe): kept at WARNING unless -v.
_CHATTY_LOGGERS = ("absl", "jax", "orbax")


class UsageError(ValueError):
    """A mistake in what the user asked for; the message names the input and the fix.

    Subclasses ValueError: library callers that catch bad values still catch these."""


class UnknownKeyError(UsageError, KeyError):
    """A config key that does not exist (a KeyError too, for callers that look keys up)."""

    __str__ = BaseException.__str__  # KeyError's own would quote the whole message


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(text).split())


def shorten(text: str, limit: int = 60) -> str:
    """A user's input quoted in a message: ``repr`` of it, cut in the middle when longer than ``limit``."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    half = (limit - 5) // 2
    return f"{text[:half]!r}...{text[-half:]!r} ({len(text):,} characters)"


@contextlib.contextmanager
def reported(prog: str, verbose: bool = False) -> Iterator[None]:
    """Runs the body of an entry point: a UsageError becomes ``PROG: error: MESSAGE`` on stderr and exit code
    2 (after its traceback when ``verbose``); everything else propagates unchanged."""
    try:
        yield
    except UsageError as err:
        if verbose:
            traceback.print_exc()
        sys.stdout.flush()
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE) from None


def configure_logging(verbose: bool = False) -> None:
    """Logging for a command line: videogen's own INFO lines (DEBUG with -v, e.g. why a folder's files were
    skipped); the libraries' INFO chatter only with -v."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("videogen").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def _worth_showing(default) -> bool:
    """None (not set), False (a flag) and SUPPRESS say nothing a reader needs."""
    return default is not None and default is not False and default is not argparse.SUPPRESS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's help ends with its default when it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and "%(default)" not in text and _worth_showing(action.default):
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse with defaults in --help and its errors on one line: ``PROG: error: MESSAGE (PROG --help)``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None and action.option_strings and _worth_showing(action.default):
            action.help = "default: %(default)s"  # argparse lists an option without help text bare
        return action

    def error(self, message: str):
        sys.stdout.flush()
        print(
            f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr, flush=True
        )
        raise SystemExit(EXIT_USAGE)


def add_verbose(parser: argparse.ArgumentParser, *, top_level: bool = True) -> None:
    """``-v/--verbose``. A subcommand's copy leaves the value unset unless given, so ``videogen -v sample`` and
    ``videogen sample -v`` both work (argparse would let the subcommand's default overwrite the first)."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="library logging, and tracebacks for usage errors too",
    )
