"""Captions of the built-in world: one phrase table drives both the writer and the parser.

Writing and parsing share `_MOTION_PHRASES`, `_SIZE_WORDS` and `_SHAPE_WORDS`, so every caption the
dataset can produce is parseable by construction (and a test checks it over thousands of clips).

Grammar (case-insensitive, optional final period):
    caption := [prefix] clause (joiner clause)*
    clause  := article [size] colour shape motion_phrase
    joiner  := " and " | " while " | ", and " | ", while "
"""

from __future__ import annotations

import dataclasses
import re

from videogen.errors import UsageError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 90, 230),
    "yellow": (235, 210, 40),
    "cyan": (40, 210, 220),
    "magenta": (210, 50, 200),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
DIRECTIONS: dict[str, tuple[float, float]] = {
    # (dx, dy) in image coordinates: x to the right, y downwards.
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-1.0, -1.0),
    "up-right": (1.0, -1.0),
    "down-left": (-1.0, 1.0),
    "down-right": (1.0, 1.0),
}
MOTIONS: tuple[str, ...] = tuple(DIRECTIONS) + ("still", "bounce-horizontal", "bounce-vertical")

_SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little"), "large": ("large", "big")}
_SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
}
_MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": (
        "moves to the left",
        "moves left",
        "slides to the left",
        "drifts left",
        "travels leftward",
        "heads left",
    ),
    "right": (
        "moves to the right",
        "moves right",
        "slides to the right",
        "drifts right",
        "travels rightward",
        "heads right",
    ),
    "up": ("moves up", "moves upward", "rises", "drifts up", "travels upward", "heads up"),
    "down": ("moves down", "moves downward", "sinks", "drifts down", "travels downward", "heads down"),
    "up-left": (
        "moves up and to the left",
        "moves diagonally up and left",
        "drifts toward the top left",
        "heads to the upper left",
    ),
    "up-right": (
        "moves up and to the right",
        "moves diagonally up and right",
        "drifts toward the top right",
        "heads to the upper right",
    ),
    "down-left": (
        "moves down and to the left",
        "moves diagonally down and left",
        "drifts toward the bottom left",
        "heads to the lower left",
    ),
    "down-right": (
        "moves down and to the right",
        "moves diagonally down and right",
        "drifts toward the bottom right",
        "heads to the lower right",
    ),
    "still": (
        "stays still",
        "does not move",
        "remains still",
        "sits still",
        "stays in place",
        "rests in place",
    ),
    "bounce-horizontal": (
        "bounces left and right",
        "bounces from side to side",
        "bounces back and forth horizontally",
        "bounces between the left and right walls",
    ),
    "bounce-vertical": (
        "bounces up and down",
        "bounces vertically",
        "bounces back and forth vertically",
        "bounces between the top and bottom walls",
    ),
}
_JOINERS: tuple[str, ...] = (" and ", " while ", ", and ", ", while ")
_PREFIXES: tuple[str, ...] = ("", "", "", "in this video ", "here ")
_ARTICLES: tuple[str, ...] = ("a", "the")

# Probability that a clause leaves the size unsaid (the judge then does not check it).
SIZE_OMIT_PROB = 0.2


@dataclasses.dataclass(frozen=True)
class ObjectPhrase:
    """What a caption says about one object. `size` is None when the caption does not say."""

    colour: str
    shape: str
    size: str | None
    motion: str


class CaptionParseError(UsageError):
    """A caption outside the built-in world's grammar (a UsageError, so a ValueError)."""


def _article_for(word: str, article: str) -> str:
    if article == "a" and word[0] in "aeiou":
        return "an"
    return article


def write_caption(objects: list[ObjectPhrase], rng) -> str:
    """Renders a caption for `objects`, choosing paraphrases with `rng` (a numpy Generator)."""
    clauses = []
    for obj in objects:
        size_word = "" if obj.size is None else str(rng.choice(_SIZE_WORDS[obj.size]))
        shape_word = str(rng.choice(_SHAPE_WORDS[obj.shape]))
        first = size_word or obj.colour
        article = _article_for(first, str(rng.choice(_ARTICLES)))
        words = (
            [article]
            + ([size_word] if size_word else [])
            + [obj.colour, shape_word, str(rng.choice(_MOTION_PHRASES[obj.motion]))]
        )
        clauses.append(" ".join(words))
    caption = clauses[0]
    for clause in clauses[1:]:
        caption += str(rng.choice(_JOINERS)) + clause
    return str(rng.choice(_PREFIXES)) + caption


def _alternation(words) -> str:
    # Longest first so that "moves up and to the left" wins over "moves up".
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_WORD_TO_SIZE = {w: s for s, ws in _SIZE_WORDS.items() for w in ws}
_WORD_TO_SHAPE = {w: s for s, ws in _SHAPE_WORDS.items() for w in ws}
_PHRASE_TO_MOTION = {p: m for m, ps in _MOTION_PHRASES.items() for p in ps}
_CLAUSE_RE = re.compile(
    rf"(?:an|a|the|one) (?:(?P<size>{_alternation(_WORD_TO_SIZE)}) )?"
    rf"(?P<colour>{_alternation(COLOURS)}) (?P<shape>{_alternation(_WORD_TO_SHAPE)}) "
    rf"(?P<motion>{_alternation(_PHRASE_TO_MOTION)})"
)
_JOINER_RE = re.compile(_alternation(_JOINERS))
_PREFIX_RE = re.compile(_alternation([p for p in _PREFIXES if p]))


def parse_caption(caption: str) -> list[ObjectPhrase]:
    """Inverse of `write_caption`: the objects a caption describes, in order.

    Raises:
      CaptionParseError: naming the caption and the point where it leaves the grammar.
    """
    text = " ".join(caption.strip().lower().split()).rstrip(".")
    pos = 0
    prefix = _PREFIX_RE.match(text)
    if prefix:
        pos = prefix.end()
    objects = []
    while True:
        m = _CLAUSE_RE.match(text, pos)
        if not m:
            raise CaptionParseError(
                f"Cannot parse caption {caption!r} at {text[pos : pos + 30]!r}: expected "
                "'<a|the> [small|large] <colour> <circle|square|triangle> <motion>', e.g. "
                "'a small red circle moves to the left while a blue square stays still'. "
                f"Colours: {', '.join(COLOURS)}."
            )
        objects.append(
            ObjectPhrase(
                colour=m["colour"],
                shape=_WORD_TO_SHAPE[m["shape"]],
                size=_WORD_TO_SIZE[m["size"]] if m["size"] else None,
                motion=_PHRASE_TO_MOTION[m["motion"]],
            )
        )
        pos = m.end()
        if pos == len(text):
            break
        j = _JOINER_RE.match(text, pos)
        if not j:
            raise CaptionParseError(
                f"Cannot parse caption {caption!r}: after {text[:pos]!r} expected end of caption or one of "
                f"{[s.strip() for s in _JOINERS]} joining another object, found {text[pos : pos + 20]!r}."
            )
        pos = j.end()
    colours = [o.colour for o in objects]
    if len(set(colours)) != len(colours):
        raise CaptionParseError(
            f"Caption {caption!r} names the colour of two objects the same; in the built-in "
            "world every object in a clip has its own colour."
        )
    return objects


def all_phrases() -> list[str]:
    """Every word sequence the writer can emit (used to seed the text tokenizer's vocabulary)."""
    out = [p for ps in _MOTION_PHRASES.values() for p in ps]
    out += list(COLOURS) + list(_WORD_TO_SHAPE) + list(_WORD_TO_SIZE)
    out += [j.strip(", ") for j in _JOINERS] + [p.strip() for p in _PREFIXES if p] + ["a", "an", "the"]
    return out
