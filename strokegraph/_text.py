"""Small English helpers shared by the planner (parsing) and the plan texts (writing)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from strokegraph.errors import UsageError

#: The longest prompt any planner is given. DPG-Bench's dense prompts, the longest public ones,
#: stay under 900 characters; a prompt far beyond that is a mistake or an attack on the planner.
MAX_PROMPT_CHARS = 2000

# The Unicode bidi controls (embeddings, overrides, isolates, marks): they reorder how the text
# around them is shown, so that what a person reads is not what a program gets ("Trojan Source").
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"

# C0 controls but tab and newline, DEL, C1 controls, bidi controls: terminal escapes and the like
# have no place in a description of a picture. Lone surrogates are how Python spells argv bytes
# that were not UTF-8.
_BAD_PROMPT_CHAR = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\ud800-\\udfff{_BIDI}]")

# Escape sequences (CSI, OSC, and the rest), other control characters and bidi controls. Model
# replies and prompts reach the terminal (progress lines, reviews, error messages) and report.html;
# none of them may move the cursor, retitle the window, write the clipboard, forge a hyperlink or
# reorder the text shown around them.
_UNPRINTABLE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC ... ST
    r"|\x1b.?"  # any other escape
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # C0 and C1 controls but tab and newline
    f"|[{_BIDI}]"
)


def printable(text: object) -> str:
    """``text`` as a person may be shown it, on a terminal or in a page: escape sequences, control
    characters (but tab and newline) and bidi controls removed."""
    return _UNPRINTABLE.sub("", str(text))


def check_prompt(prompt: object) -> str:
    """``prompt`` if it is one a planner may be given; otherwise a one-line :class:`UsageError`."""
    if not isinstance(prompt, str):
        raise UsageError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise UsageError("prompt is empty; say what to draw, e.g. 'two red apples to the left of a blue cup'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UsageError(f"prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}")
    bad = _BAD_PROMPT_CHAR.search(prompt)
    if bad is not None:
        char = bad.group()
        if "\ud800" <= char <= "\udfff":
            what = "is not valid UTF-8"
        else:
            kind = "a control" if re.match(r"[\x00-\x9f]", char) else "a bidi control"
            what = f"holds {kind} character {char!r}"
        raise UsageError(f"prompt {what} (at character {bad.start() + 1})")
    return prompt


def check_utf8(what: str, text: str) -> str:
    """``text`` (a path or a name) if it is valid UTF-8; otherwise a one-line :class:`UsageError` naming ``what``.

    Python spells command-line bytes that are not UTF-8 as lone surrogates, which no record
    (``run.json``, a store's key) can hold: refused before anything is created for them.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        try:
            shown = os.fsencode(text).decode("utf-8", "backslashreplace")[:200]  # the bytes as given: \xff
        except UnicodeEncodeError:  # a lone surrogate that did not come from bytes
            shown = text.encode("utf-8", "backslashreplace").decode()[:200]
        raise UsageError(f"{what} '{shown}' is not valid UTF-8 (at character {exc.start + 1})") from None
    return text


NUMBER_WORDS: dict[str, int] = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "a pair of": 2,
    "a couple of": 2,
    "a dozen": 12,
    "a single": 1,
    # Vague quantities: three is the least that reads as "several" or "a group".
    "several": 3,
    "a few": 3,
    **{f"a {group} of": 3 for group in "group bunch herd flock crowd pile stack".split()},
}
_WORD_FOR = {v: k for k, v in NUMBER_WORDS.items() if " " not in k and k != "several"}

# Irregular plural -> singular. Nouns whose plural equals the singular map to themselves.
IRREGULAR_PLURALS: dict[str, str] = {
    "people": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "knives": "knife",
    "leaves": "leaf",
    "wolves": "wolf",
    "shelves": "shelf",
    "loaves": "loaf",
    "halves": "half",
    "calves": "calf",
    "oxen": "ox",
    "cacti": "cactus",
    "sheep": "sheep",
    "fish": "fish",
    "deer": "deer",
    "skis": "skis",
    "scissors": "scissors",
    "glasses": "glass",
    "broccoli": "broccoli",
    "tomatoes": "tomato",
    "potatoes": "potato",
    "mangoes": "mango",
    "heroes": "hero",
    "volcanoes": "volcano",
    "mosquitoes": "mosquito",
}
_IRREGULAR_SINGULARS = {v: k for k, v in IRREGULAR_PLURALS.items()}
# Nouns ending in 's' that are singular in their own right (do not strip the 's').
_SINGULAR_S = {"bus", "glass", "grass", "dress", "cactus", "octopus", "walrus", "class", "skis", "scissors", "lens"}


def pluralize(noun: str) -> str:
    """``'wine glass'`` -> ``'wine glasses'``; inflects the last word only."""
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR_SINGULARS:
        plural = _IRREGULAR_SINGULARS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        plural = last + "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        plural = last[:-1] + "ies"
    elif last.endswith("fe"):
        plural = last[:-2] + "ves"
    else:
        plural = last + "s"
    return f"{head} {plural}" if head else plural


def singular_candidates(word: str) -> list[str]:
    """Possible singular forms of ``word``, most likely first (``word`` itself last)."""
    out: list[str] = []
    if word in IRREGULAR_PLURALS:
        out.append(IRREGULAR_PLURALS[word])
    if word in _SINGULAR_S:
        out.append(word)
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("ves"):
        out += [word[:-3] + "fe", word[:-3] + "f"]
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    out.append(word)
    return list(dict.fromkeys(w for w in out if w))  # in order, each once


def singularize(word: str) -> str:
    """``'stars'`` -> ``'star'``, ``'boxes'`` -> ``'box'``; a word that does not read as plural is kept."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if word in _SINGULAR_S:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    # "-ss", "-us" and "-is" words (grass, cactus, iris) are singular already.
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 2:
        return word[:-1]
    return word


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def number_word(n: int) -> str:
    return _WORD_FOR.get(n, str(n))


#: Nouns used only in the plural that name one thing: one is "a pair of jeans", two "two pairs of jeans".
PLURAL_ONLY = frozenset(
    "scissors jeans pants trousers shorts sunglasses eyeglasses spectacles goggles binoculars tongs pliers tweezers "
    "headphones earphones pajamas pyjamas leggings tights overalls skis".split()
)
#: Nouns for a substance rather than a thing: "some pasta", "no cheese", never "a pasta" or "no cheeses".
MASS_NOUNS = frozenset(
    "pasta spaghetti noodles rice bread cheese soup water milk coffee tea juice butter meat sugar salt sand snow "
    "grass hay mud smoke fog honey jam cereal popcorn salad".split()
)


def noun_phrase(noun: str, count: int, adjectives: Iterable[str] = ()) -> str:
    """``noun_phrase('apple', 2, ['red'])`` -> ``'two red apples'``; count 0 -> ``'no red apples'``.

    Plural-only nouns count in pairs (``'a pair of blue jeans'``), mass nouns take ``some`` and no
    plural (``'some pasta'``, ``'no cheese'``).
    """
    last = noun.rpartition(" ")[2]
    if last in PLURAL_ONLY and count:
        words = " ".join([*adjectives, noun])
        return f"a pair of {words}" if count == 1 else f"{number_word(count)} pairs of {words}"
    if last in MASS_NOUNS and count <= 1:
        return f"{'some' if count else 'no'} {' '.join([*adjectives, noun])}"
    words = " ".join([*adjectives, noun if count == 1 or last in PLURAL_ONLY else pluralize(noun)])
    if count == 1:
        return f"{article(words)} {words}"
    return f"{number_word(count) if count else 'no'} {words}"


def join_words(items: list[str]) -> str:
    """``['a', 'b', 'c']`` -> ``'a, b and c'``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
