"""The ``builtin:rules`` planner: a deterministic reader of ordinary prompts into a scene graph, then an ordered plan.

The grammar, per sentence (sentences end at ``.``, ``;``, ``!`` or ``?``)::

    sentence := filler? group (link group)*          filler: "a photo of", "draw", "there are", ...
    group    := phrase place? (("," | "and") phrase place?)*
    phrase   := determiner* modifier* noun           determiner: article, number, "no", "zero", ...
    place    := ("on" | "to" | "at" | "in") "the" side ("of the image")?     side: "left", "top right", ...
    link     := relation | verb | preposition

- **Nouns.** A known noun (GenEval's 80 classes and basic shapes, longest first) anywhere in a phrase;
  any other word is the noun only as a phrase's last word with an article, a number or a colour before
  it ("a dragon", "two red dragons"). A sentence of other words ("asdf qwer") names nothing.
- **Relations** ("left of", "on top of", "under", ... GenEval's four; "next to", "beside", "near";
  "in front of", "behind") relate every subject phrase to every object phrase. In a chain
  ``A rel B rel C`` a one-phrase middle group is the object of one relation and the subject of the
  next; in ``A rel B and C rel D`` the first phrase of the middle group closes the first relation
  and the rest open the second, but a list ending in "and" closes at the comma after it
  (``A rel B and C, D rel E``). "is", "sits", "standing", ... before a relation are skipped. A
  relation word that would relate more than :data:`MAX_PAIRS` pairs is kept as free text instead.
  "On" is "above" except on what it touches rather than tops ("a clock on the wall", "a dog on the
  grass", :data:`_CONTACT`): there it is a linking preposition.
- **Sides of the picture** ("a cat on the left and a dog on the right", "at the top of the image",
  "in the middle") become relations between the entities on opposite sides of one axis: the cat is
  left of the dog. A side with nothing across from it ("a cat on the left") is kept as free text.
- **Verbs** ("riding", "holds", "playing with") and **prepositions naming a known noun** ("a dog in a
  car", "a bowl of apples", "a man with an umbrella") keep the nouns on both sides as entities and
  the phrase, word for word, as a free-text constraint; after a verb the next relation is the verb's
  subject's ("a boy holding a kite next to a dog": the boy is next to the dog). A verb's object needs
  no article ("a chef cooking pasta"), unless the verb takes none ("a dog running fast").
- **Counts.** Digits and number words ("twenty-three", "forty two", "a dozen", "half a dozen", "a
  hundred"); more than :data:`~strokegraph.schema.MAX_COUNT` is refused. "A pair of jeans" is one
  (:data:`_PAIRED`), "a pair of shoes" two shoes. A count that only bounds ("one or two", "2-3",
  "dozens of") draws the least it can mean and keeps the phrase as free text: the count is not judged.
- **Negation.** "no cars", "zero apples", "0 apples", "without a hat", "with no hat", "without any
  cheese" give count 0: the object must be absent. Relations and verbs involving it are dropped
  (absence is judged anywhere).
- **Colours and other adjectives.** The first colour of a phrase is its colour, the other modifiers
  (size words included) its attributes; "two cups, both red" and "the sky is blue" colour the phrase
  before them.
- **Free text.** Anything else from a word such as "in", "at", "while", "that" (or a preposition that
  names no known noun: "in the style of van gogh") up to the next comma, link or "and a ..." is kept
  verbatim in :attr:`SceneGraph.constraints`, as are phrases without a noun.

Every step is a constant amount of work per word (the look-ahead of a preposition stops where the
next one starts), so reading is linear in the prompt's length; the plan has at most
:data:`MAX_STEPS` steps, each described in time linear in the scene.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TypeVar

from strokegraph._text import NUMBER_WORDS, PLURAL_ONLY, check_prompt, join_words, pluralize, singularize
from strokegraph.errors import UsageError
from strokegraph.schema import (
    COLOURS,
    MAX_COUNT,
    PREDICATE_PHRASES,
    Entity,
    Plan,
    PlanStep,
    Predicate,
    Relation,
    SceneGraph,
)
from strokegraph.vocab import known_nouns

__all__ = ["MAX_PAIRS", "MAX_STEPS", "RulesPlanner", "parse", "plan_scene"]

#: The most steps a plan has. Beyond it, steps draw several entities each: one step per entity of
#: a long prompt would make the plan's text (every step describes the whole scene) quadratic.
MAX_STEPS = 8
#: The most pairs one relation word may relate ("A, B, C and D left of E, F, G and H" relates 16);
#: beyond it the phrase is kept as free text, so that relations stay linear in the prompt's length.
MAX_PAIRS = 16


def _side_phrases(side: str) -> list[str]:
    """``'left of'``, ``'to the left hand side of'``, ...: the phrases that name one side."""
    return [
        f"{pre}{side}{suf} of" for pre in ("", "to the ", "on the ", "at the ") for suf in ("", " side", " hand side")
    ]


_RELATIONS: dict[str, Predicate] = {
    **dict.fromkeys(_side_phrases("left"), "left of"),
    **dict.fromkeys(_side_phrases("right"), "right of"),
    **dict.fromkeys(("above", "over", "on", "upon", "on top of", "atop", "on the top of", "at the top of"), "above"),
    **dict.fromkeys(("below", "under", "beneath", "underneath", "on the bottom of", "at the bottom of"), "below"),
    **dict.fromkeys(
        ("next to", "beside", "besides", "near", "close to", "alongside", "on side of", "on the side of"), "next to"
    ),
    **dict.fromkeys(("in front of", "in the front of"), "in front of"),
    **dict.fromkeys(("behind", "in back of", "at the back of"), "behind"),
}
_PICTURES = "photo photograph image picture drawing painting sketch illustration render rendering scene".split()
_FILLERS = (
    *(f"{a}{w} of" for a in ("", "a ", "an ", "the ") for w in _PICTURES),
    *"draw generate create make paint show render depict please me".split(),
    *("there is", "there are", "i want", "i would like", "i'd like", "give me", "can you draw", "could you draw"),
)
_PICTURE_LINKS = {"of", "showing", "featuring", "depicting", "with"}
# "a pair of" is read by :func:`_determiner`: a pair of jeans is one thing, a pair of shoes two.
_COUNTS = {tuple(k.split()): v for k, v in NUMBER_WORDS.items() if k != "a pair of"}
_UNITS = {w: n for n, w in enumerate("one two three four five six seven eight nine".split(), 1)}
_TEENS = {
    w: n
    for n, w in enumerate("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split(), 10)
}
_TENS = dict(zip("twenty thirty forty fifty sixty seventy eighty ninety".split(), range(20, 100, 10), strict=True))
_BIG = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
#: Counts that say only "more than a few"; each reads as the least it can mean, and is left unjudged.
_VAGUE: dict[tuple[str, ...], int] = {
    **{(f"{w}s", "of"): n for w, n in (("dozen", 24), ("hundred", 200), ("thousand", 2000), ("million", 2_000_000))},
    ("countless",): 100,
    ("innumerable",): 100,
}
#: Nouns only used in the plural that name one thing: "a pair of jeans" is one, "jeans" too.
_PAIRED = PLURAL_ONLY
#: Nouns that name one thing unless counted ("two glasses of water" are two glasses).
_PAIRED_AFTER_PAIR = {"glasses"}
_ZERO = {("no",): 0, ("zero",): 0, ("not", "a", "single"): 0, ("not", "any"): 0, ("none", "of", "the"): 0}
#: Article -> whether it is definite (a definite phrase may refer back to an earlier entity).
_ARTICLES = {
    "a": False,
    "an": False,
    "another": False,
    "some": False,
    "any": False,
    **dict.fromkeys("the this these those".split(), True),
}
#: Determiners that say nothing about the count.
_QUIET = set("only just exactly all each every both".split())
#: Words that only link a subject to a relation or a verb after them ("is sitting on", "that is").
_BE = set(
    "is are was were be being sits sit sitting stands stand standing placed located positioned lies lie lying "
    "seated set rests rest resting parked perched".split()
)
_WH = {"who", "that", "which"}
#: Prepositions that link two entities when what follows names a known noun, else start free text.
_PREPOSITIONS = set(
    "with without in inside into onto at of by from among around through against toward towards along within "
    "across past beyond throughout amid amidst amongst up down out off".split()
)
#: Words that start free text running to the next comma, link or "and a ...".
_STOP = set(
    "for during while that which who whose where when as like or because so though although if "
    "was were being made is are be to between not".split()
)
#: Words that are never the noun of a phrase: where things are, and how big.
_NOT_NOUNS = set(
    "left right top bottom side middle center centre front back background foreground distance corner edge "
    "big small large tiny huge little giant tall short long wide enormous massive mini miniature one ones "
    "other others it them they something anything nothing single few".split()
)
_PRONOUNS = {"it", "them", "they", "itself", "themselves"}
#: Nouns that "on" touches rather than rests on top of: "a clock on the wall" is not above the wall,
#: "a dog on the grass" not above the grass. "On" one of them is a linking preposition, not "above".
_CONTACT = set(
    "wall fridge refrigerator door ceiling window board blackboard whiteboard chalkboard screen mirror tree "
    "ground floor grass lawn field meadow snow sand beach ice water sea ocean lake river pond "
    "head shoulder lap face hand arm shirt page".split()
)
#: Where in the picture: "on the left", "at the top", "in the bottom right corner" -> (axis, side);
#: along an axis, side 0 is left of (or above) side 1, which is left of (or above) side 2. "In the
#: middle" ("m") lies on the axis the prompt's other sides use.
_PLACES: dict[str, tuple[str, int]] = {
    "left": ("x", 0),
    "right": ("x", 2),
    "top": ("y", 0),
    "upper": ("y", 0),
    "bottom": ("y", 2),
    "lower": ("y", 2),
    **dict.fromkeys(("middle", "center", "centre"), ("m", 1)),
}
_FRAMES = {*_PICTURES, "frame", "canvas", "picture"}
_ENDS = {".", ";", "!", "?"}
# Matched on the prompt as written (lower-casing can change a string's length), so spans stay exact.
_TOKEN = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*|[0-9]+|[,.;!?]")


def _verb_forms(base: str) -> tuple[str, ...]:
    if base.endswith(("s", "sh", "ch", "x")):
        third = base + "es"
    elif base.endswith("y") and base[-2] not in "aeiou":
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    if base.endswith("ie"):
        ing = base[:-2] + "ying"
    elif base.endswith("e") and not base.endswith("ee"):
        ing = base[:-1] + "ing"
    elif base in _DOUBLED:
        ing = base + base[-1] + "ing"
    else:
        ing = base + "ing"
    return (base, third, ing)


_DOUBLED = set("run swim hug pet cut hit grab sit drag dig rub tap jog chat nap".split())
#: Verbs that link two entities ("a boy holding an umbrella"); intransitive uses ("a dog running in
#: the park") are read as free text.
_VERBS = {
    form
    for base in (
        "ride hold wear carry eat chase walk pull push feed watch hug drink read use throw catch drive kick pet "
        "fly play look lean lick bite sniff touch face cross jump climb kiss grab fight follow hit lift sleep "
        "hang float run swim graze chew cut cook brush wash hunt drag guard sniff bring share drop"
    ).split()
    for form in _verb_forms(base)
} | {"has", "have", "having", "ridden", "held", "worn", "carried", "eaten", "chased", "pulled", "pushed", "driven"}
#: Motion verbs known only by their "-ing" form ("skis" and "sails" are nouns): "a man skiing down a hill".
_MOVING = set("skiing skating surfing sailing galloping dancing hiking jogging skateboarding snowboarding".split())
_VERBS |= _MOVING


#: Verbs read as taking no object, so that a bare word after one is not a noun ("a dog running fast").
_INTRANSITIVE = {
    form
    for base in "run swim fly sleep float hang graze jump look lean walk climb".split()
    for form in _verb_forms(base)
} | _MOVING
#: Bare verb objects that are games, not things to draw ("a person playing tennis").
_ACTIVITIES = set(
    "tennis soccer football golf chess baseball basketball volleyball hockey cricket rugby badminton cards "
    "games music".split()
)
_ADVERBS = set(
    "fast slowly quickly away home together alone outside inside indoors outdoors here there around up down off "
    "out back now today again very well hard high low far".split()
)

_V = TypeVar("_V")


def _table(phrases: Iterable[tuple[str, _V]]) -> dict[tuple[str, ...], _V]:
    return {tuple(p.split()): v for p, v in phrases}


_RELATION_TABLE = _table(_RELATIONS.items())
_FILLER_TABLE = _table((f, True) for f in _FILLERS)
_PLACE_ENDS = _table((w, True) for w in ("side", "hand side", "corner", "half", "part", "edge"))


@cache
def _nouns() -> dict[tuple[str, ...], str]:
    """Surface form (singular, plural, GenEval's naive plural) -> singular noun."""
    table: dict[tuple[str, ...], str] = {}
    for noun in known_nouns():
        for form in (noun, pluralize(noun), noun + "s"):  # "toothbrushs", "sheeps", "tvs", ...
            table.setdefault(tuple(form.split()), noun)
    return table


def _match(table: Mapping[tuple[str, ...], _V], words: list[str], i: int) -> tuple[_V, int] | None:
    """The longest entry of ``table`` starting at ``words[i]``, with its length in words."""
    for n in range(min(6, len(words) - i), 0, -1):
        if (key := tuple(words[i : i + n])) in table:
            return table[key], n
    return None


def _number(words: list[str], i: int) -> tuple[int, int] | None:
    """The number written in words or digits at ``words[i]``: (value, length), e.g. "forty two" -> (42, 2).

    Covers "twenty-three", "forty two", "a hundred", "two hundred and five", "a dozen", "two dozen" and
    "half a dozen"; a vague count ("hundreds of") is :data:`_VAGUE`'s, not this.
    """
    word, n = words[i], len(words)
    if word.isdigit():
        value, k = int(word), i + 1
    elif word == "half" and words[i + 1 : i + 3] == ["a", "dozen"]:
        return 6, 3
    elif word in _TENS or (word.partition("-")[0] in _TENS and word.partition("-")[2] in _UNITS):
        tens, _, unit = word.partition("-")
        value, k = _TENS[tens] + _UNITS.get(unit, 0), i + 1
        if not unit and k < n and words[k] in _UNITS:  # "forty two"
            value, k = value + _UNITS[words[k]], k + 1
    elif word in _UNITS or word in _TEENS:
        value, k = _UNITS.get(word) or _TEENS[word], i + 1
    elif word == "a" and i + 1 < n and (words[i + 1] in _BIG or words[i + 1] == "dozen"):
        value, k = 1, i + 1
    elif word in _BIG:
        value, k = 1, i
    else:
        return None
    if k < n and words[k] == "dozen":
        return value * 12, k + 1 - i
    if k < n and words[k] in _BIG:
        value, k = value * _BIG[words[k]], k + 1
        # "a hundred and fifty": the rest belongs to the same number.
        if k + 1 < n and words[k] == "and" and (rest := _number(words, k + 1)) and rest[0] < 100:
            value, k = value + rest[0], k + 1 + rest[1]
    return value, k - i


def _range(words: list[str], i: int) -> tuple[int, int] | None:
    """A range of counts at ``words[i]`` ("one or two", "2 to 3", "3-4" read as "3 4"): (least, length)."""
    if (low := _number(words, i)) is None:
        return None
    k = i + low[1]
    if k < len(words) and words[k] in ("or", "to"):
        k += 1
    if k < len(words) and (high := _number(words, k)) is not None and high[0] > low[0]:
        return low[0], k + high[1] - i
    return None


_Determiner = tuple[int | None, bool | None, int, str | None]


def _determiner(words: list[str], i: int) -> _Determiner | None:
    """The determiner at ``words[i]``: (count or None, definite or None, length, kind); None if there is none.

    ``kind`` is ``"vague"`` for a count that only bounds ("one or two", "dozens of"): the count is the
    least it can mean, and the phrase is kept as unjudged text. It is ``"pair"`` for "pair(s) of".
    """
    if hit := _match(_ZERO, words, i):
        return 0, None, hit[1], None
    if hit := _match(_VAGUE, words, i):
        return hit[0], None, hit[1], "vague"
    if hit := _range(words, i):
        return hit[0], None, hit[1], "vague"
    if hit := _number(words, i):
        return hit[0], None, hit[1], None
    if hit := _match(_COUNTS, words, i):
        return hit[0], None, hit[1], None
    word = words[i]
    if word in ("pair", "pairs") and words[i + 1 : i + 2] == ["of"]:
        return None, None, 2, "pair"
    if word in _ARTICLES:
        return (1 if word in ("a", "an", "another") else None), _ARTICLES[word], 1, None
    if word in _QUIET:
        return (2 if word == "both" else None), None, 1, None
    return None


def _can_be_noun(word: str) -> bool:
    """Whether ``word`` may be an unknown noun (the last word of a phrase with a determiner or colour)."""
    return (
        word.isalpha()
        and word not in COLOURS
        and word not in _ARTICLES
        and word not in _QUIET
        and word not in _NOT_NOUNS
        and word not in _STOP
        and word not in _PREPOSITIONS
        and word not in _BE
        and (word,) not in _COUNTS
        and (word,) not in _VAGUE
        and _number([word], 0) is None
        and (word,) not in _ZERO
    )


@dataclass(frozen=True)
class _Token:
    word: str
    start: int
    end: int


@dataclass(frozen=True)
class _Phrase:
    noun: str
    count: int | None  # None: the phrase gives no number
    plural: bool
    definite: bool
    determined: bool  # an article, number or negation stands before the noun
    modifiers: tuple[str, ...]
    end: int  # words read; any after the noun are free text
    vague: bool = False  # the count only bounds ("one or two cats"): it is not judged


def _read_phrase(words: list[str], bare: bool = False) -> _Phrase | None:
    """Read ``determiner* modifier* noun``; None when no word can be the noun.

    ``bare``: an unknown noun needs no determiner or colour (the object of a verb: "cooking pasta").
    """
    count, definite, determined, vague, pairs, i = None, False, False, False, None, 0
    while i < len(words) and (hit := _determiner(words, i)):
        value, is_definite, n, kind = hit
        if kind == "pair":
            pairs = count if count is not None else (2 if words[i] == "pairs" else 1)
            count = None
        count = value if value is not None else count
        definite = is_definite if is_definite is not None else definite
        determined = determined or words[i] not in _QUIET or words[i] == "both"
        vague = vague or kind == "vague"
        i += n
    # "one or two kittens": the noun is plural whatever the least count is.
    phrase = _noun_phrase(words, i, None if vague else count, definite, determined or bare, pairs is not None)
    if phrase is None or pairs is None:
        return phrase if phrase is None or not vague else replace(phrase, count=count, vague=True)
    # "a pair of jeans" is one pair of trousers; "a pair of shoes" two shoes.
    if phrase.noun in _PAIRED or phrase.noun in _PAIRED_AFTER_PAIR:
        return replace(phrase, count=pairs, plural=False, vague=vague)
    return replace(phrase, count=2 * pairs, plural=True, vague=vague)


def _noun_phrase(
    words: list[str], i: int, count: int | None, definite: bool, determined: bool, pair: bool
) -> _Phrase | None:
    """The ``modifier* noun`` from ``words[i]``, after determiners that gave ``count`` (if any) and "pair of"."""
    for end in range(len(words), i, -1):  # the rightmost known noun, longest first
        for n in (3, 2, 1):
            if end - n >= i and (noun := _nouns().get(tuple(words[end - n : end]))):
                surface = " ".join(words[end - n : end])
                return _Phrase(noun, count, surface != noun, definite, determined, tuple(words[i : end - n]), end)
    end = len(words)
    # "a man walking": the noun is the word before a trailing verb.
    if end - i >= 2 and (words[-1] in _VERBS or words[-1] in _BE) and _can_be_noun(words[-2]):
        end -= 1
    last = words[end - 1] if end > i else ""
    modifiers = tuple(words[i : end - 1])
    if not _can_be_noun(last) or not (determined or any(w in COLOURS for w in modifiers)):
        return None
    # "wearing glasses", "a pair of glasses": one pair; "two glasses of water": two glasses.
    paired = last in _PAIRED or (last in _PAIRED_AFTER_PAIR and (pair or count is None))
    noun = last if count == 1 or paired else singularize(last)
    return _Phrase(noun, count, noun != last, definite, determined, modifiers, end)


@dataclass
class _Buffer:
    """The words of the phrase being read, with what is known of them so far (kept up to date per word)."""

    toks: list[_Token] = field(default_factory=list)
    determined: bool = False
    coloured: bool = False
    known: bool = False  # a known noun ends somewhere in it

    def add(self, toks: list[_Token]) -> None:
        for tok in toks:
            self.toks.append(tok)
            word = tok.word
            self.determined = self.determined or word in _ARTICLES or word.isdigit() or (word,) in _COUNTS
            self.determined = self.determined or (word,) in _ZERO or word in ("not", "none")
            self.determined = self.determined or _number([word], 0) is not None or (word,) in _VAGUE
            self.coloured = self.coloured or tok.word in COLOURS
            words = [t.word for t in self.toks[-3:]]
            self.known = self.known or any(tuple(words[-n:]) in _nouns() for n in (1, 2, 3) if n <= len(words))

    def has_noun(self) -> bool:
        """Whether the words read so far make a phrase with a noun (so that a verb or article ends it)."""
        if not self.toks:
            return False
        return self.known or ((self.determined or self.coloured) and _can_be_noun(self.toks[-1].word))

    def take(self) -> list[_Token]:
        toks, self.toks = self.toks, []
        self.determined = self.coloured = self.known = False
        return toks


@dataclass(frozen=True)
class _Mention:
    eid: str
    start: int  # character span in the prompt
    end: int
    then: str = ""  # the "," or "and" that ended the phrase, if one did


@dataclass(frozen=True)
class _Link:
    predicate: Predicate | None  # None: a verb or preposition, kept as free text
    toks: tuple[_Token, ...]


_ANY = object()


@dataclass(frozen=True)
class _Place:
    """An entity said to be on one side of the picture ("a cat on the left"), and the words saying so."""

    eid: str
    axis: str
    side: int
    start: int
    end: int


@dataclass
class _Scene:
    prompt: str
    entities: list[Entity] = field(default_factory=list)
    relations: dict[Relation, None] = field(default_factory=dict)
    constraints: list[str] = field(default_factory=list)
    mentioned: list[str] = field(default_factory=list)  # entity ids, most recent last
    # (noun, colour or _ANY, count or _ANY) -> the first entity that fits, for definite phrases.
    index: dict[tuple, str] = field(default_factory=dict)
    places: list[_Place] = field(default_factory=list)

    def keep_text(self, toks: list[_Token] | tuple[_Token, ...]) -> None:
        if toks:
            self.keep_span(toks[0].start, toks[-1].end)

    def keep_span(self, start: int, end: int) -> None:
        if start < end:
            self.constraints.append(self.prompt[start:end])

    def _register(self, e: Entity) -> None:
        for key in ((e.colour, e.count), (e.colour, _ANY), (_ANY, e.count), (_ANY, _ANY)):
            self.index.setdefault((e.noun, *key), e.id)

    def add_entity(self, **fields) -> str:
        eid = f"e{len(self.entities)}"
        entity = Entity(id=eid, **fields)
        self.entities.append(entity)
        self._register(entity)
        return eid

    def recolour(self, eid: str, colour: str) -> bool:
        """Give an uncoloured entity ``colour``; False when it has a colour already."""
        k = int(eid[1:])
        if self.entities[k].colour is not None:
            return self.entities[k].colour == colour
        self.entities[k] = self.entities[k].model_copy(update={"colour": colour})
        self._register(self.entities[k])
        return True

    def mention(
        self, toks: list[_Token], other_side: list[_Mention], zero: str | None, bare: bool = False
    ) -> str | None:
        """Resolve one noun phrase to an entity id, or None (text kept) when it names no noun.

        A definite phrase may reuse an earlier entity; a pronoun is the latest entity not in ``other_side``
        (never one of count 0); a pronoun with none names nothing (the link it is in keeps its text).
        ``zero`` forces count 0: ``"always"``, or ``"bare"`` when the phrase has no determiner of its own.
        ``bare``: an unknown noun needs no determiner ("cooking pasta", "without cheese").
        """
        if len(toks) == 1 and toks[0].word in _PRONOUNS:
            skip = {m.eid for m in other_side}
            return next((e for e in reversed(self.mentioned) if e not in skip), None)
        eid = self._resolve(toks, zero, bare or zero == "always")
        if eid is not None and self.count_of(eid) > 0:
            self.mentioned.append(eid)
        return eid

    def _resolve(self, toks: list[_Token], zero: str | None, bare: bool) -> str | None:
        phrase = _read_phrase([t.word for t in toks], bare)
        if phrase is None:
            self.keep_text(toks)
            return None
        self.keep_text(toks[phrase.end :])
        if phrase.vague:  # "one or two cats": drawn as one, said not judged
            self.keep_text(toks[: phrase.end])
        colour = next((w for w in phrase.modifiers if w in COLOURS), None)
        count = phrase.count
        if zero == "always" or (zero == "bare" and not phrase.determined):
            count = 0
        if phrase.definite and count != 0:
            key = (phrase.noun, colour or _ANY, _ANY if count is None else count)
            if (eid := self.index.get(key)) is not None:
                return eid
        if count is not None and count > MAX_COUNT:
            asked = f"{count} {pluralize(phrase.noun)}"
            if phrase.vague:  # "hundreds of stars": no one number to name
                asked = repr(self.prompt[toks[0].start : toks[phrase.end - 1].end])
            raise UsageError(f"prompt asks for {asked}; the most one object may have is {MAX_COUNT}")
        # A bare plural ("the apples") asks for more than one; two is the least that reads right.
        if count is None:
            count = 2 if phrase.plural else 1
        attributes = tuple(w for w in phrase.modifiers if w != colour and not _determiner([w], 0))
        return self.add_entity(noun=phrase.noun, count=count, colour=colour, attributes=attributes)

    def count_of(self, eid: str) -> int:
        return self.entities[int(eid[1:])].count

    def sentence(self, toks: list[_Token]) -> None:
        _Sentence(self, toks).read()

    def relate_places(self) -> None:
        """Turn sides of the picture into relations: "a cat on the left and a dog on the right" is cat
        left of dog. A side with nothing on the other side of its axis says nothing judged about
        where the entity is: its words are kept as free text."""
        axes = {p.axis for p in self.places}
        middle_axis = "x" if "x" in axes else "y"
        axis_predicates: tuple[tuple[str, Predicate], ...] = (("x", "left of"), ("y", "above"))
        for axis, predicate in axis_predicates:
            places = [p for p in self.places if p.axis == axis or (p.axis == "m" and axis == middle_axis)]
            drawn = [p for p in places if self.count_of(p.eid) > 0]
            sides = [list(dict.fromkeys(p.eid for p in drawn if p.side == k)) for k in range(3)]
            orders = ((0, 1), (0, 2), (1, 2))
            # Counted before they are listed, so that many sides cost their number, not its square.
            crowded = sum(len(sides[a]) * len(sides[b]) for a, b in orders) > MAX_PAIRS
            pairs = [] if crowded else [(s, o) for a, b in orders for s in sides[a] for o in sides[b] if s != o]
            if not pairs:
                for p in places:
                    self.keep_span(p.start, p.end)
                continue
            for p in places:
                if p not in drawn:
                    self.keep_span(p.start, p.end)
            for s, o in pairs:
                self.relations.setdefault(Relation(subject=s, predicate=predicate, object=o))


class _Sentence:
    """One pass over one sentence's words: phrases into groups, groups joined by links."""

    def __init__(self, scene: _Scene, toks: list[_Token]) -> None:
        self.scene = scene
        self.toks = toks
        self.words = [t.word for t in toks]
        # Where the run of "is"/"sitting"/... words (and of those or "that"/"who") from each word ends,
        # so that a long run costs its length once, not once per word.
        n = len(self.words)
        self.be_end, self.link_end = [n] * (n + 1), [n] * (n + 1)
        for k in range(n - 1, -1, -1):
            w = self.words[k]
            self.be_end[k] = self.be_end[k + 1] if w in _BE else k
            self.link_end[k] = self.link_end[k + 1] if w in _BE or w in _WH else k
        self.groups: list[list[_Mention]] = [[]]
        self.spans: list[list[int]] = [[]]  # per group, the character positions of all its phrases
        self.links: list[_Link] = []
        self.buf = _Buffer()
        # "always": the next phrase has count 0 ("without"); "bare": the next one without a
        # determiner of its own has ("no cars and dogs").
        self.zero: str | None = None
        self.after_verb = False  # the next phrase is a verb's object: "cooking pasta" names pasta
        self.placed = 0  # mentions of the current group that a side of the picture was given to
        # Free text since the last phrase: "a cat in a box, a dog on the right" gives the side to the dog alone.
        self.described = False
        # (group, mention) of phrases with a place of their own ("a clock on the wall"): not also the
        # object of the relation before them ("a cup on a table and a clock on the wall").
        self.located: set[tuple[int, int]] = set()
        self.pending: tuple[list[tuple[str, int]], int] | None = None  # "on the left, a cat": sides, start

    # -- looking ahead ----------------------------------------------------------------------

    def relation_at(self, i: int) -> tuple[Predicate, int] | None:
        """The relation starting at ``i``, after any "is"/"sits"/... words: (predicate, end index)."""
        j = self.be_end[i]
        hit = _match(_RELATION_TABLE, self.words, j)
        return (hit[0], j + hit[1]) if hit else None

    def place_at(self, i: int) -> tuple[list[tuple[str, int]], int] | None:
        """The side of the picture at ``i`` ("on the left", "in the top right corner of the image"), after
        any "is"/"sits"/... words: (its (axis, side) pairs, end index). None before "of" and anything but
        the picture: "on the left of a dog" is a relation."""
        words, j = self.words, self.be_end[i]
        if words[j : j + 1] not in (["on"], ["to"], ["at"], ["in"]) or words[j + 1 : j + 2] != ["the"]:
            return None
        k = j + 2 + (words[j + 2 : j + 3] in (["far"], ["very"]))
        sides: dict[str, int] = {}
        while k < len(words) and words[k] in _PLACES and _PLACES[words[k]][0] not in sides:
            axis, side = _PLACES[words[k]]
            sides[axis] = side
            k += 1
        if not sides:
            return None
        if hit := _match(_PLACE_ENDS, words, k):
            k += hit[1]
        if words[k : k + 1] == ["of"]:
            if words[k + 1 : k + 2] not in (["the"], ["this"]) or not set(words[k + 2 : k + 3]) & _FRAMES:
                return None
            k += 3
        return list(sides.items()), k

    def touches_at(self, i: int) -> bool:
        """Whether "on" at ``i`` (after any "is"/"lying"/...) is on something it touches rather than tops:
        "on the wall", "on the grass"."""
        j = self.be_end[i]
        if self.words[j : j + 1] not in (["on"], ["upon"]) or self.relation_at(i) != ("above", j + 1):
            return False
        return any(w in _CONTACT or singularize(w) in _CONTACT for w in self.words[j + 1 : self.window(j + 1)])

    def phrase_starts(self, i: int) -> bool:
        """Whether a noun phrase clearly starts at ``i``: a determiner, a colour or a known noun."""
        if i >= len(self.words):
            return False
        w = self.words[i]
        return bool(_determiner(self.words, i)) or w in COLOURS or _match(_nouns(), self.words, i) is not None

    def is_verb(self, i: int) -> bool:
        """Whether ``words[i]`` is a verb here: one of ours, not starting a known noun, with something after it."""
        nxt = self.words[i + 1] if i + 1 < len(self.words) else ""
        return (
            (self.words[i] in _VERBS or (self.words[i] in _BE and nxt in _PREPOSITIONS))  # "sitting at"
            and _match(_nouns(), self.words, i) is None
            and (self.buf.has_noun() or (not self.buf.toks and bool(self.groups[-1])))
            and (
                self.phrase_starts(i + 1)
                or self.relation_at(i + 1) is not None
                or (i + 1 < len(self.words) and self.words[i + 1] in _PREPOSITIONS)
                or self.bare_object(i + 1)
            )
        )

    def bare_object(self, i: int) -> bool:
        """Whether a noun without a determiner is a verb's object at ``i``: "cooking pasta", "reading books".

        Only after a verb that takes one ("running fast" is not), and not an adverb.
        """
        if i >= len(self.words) or self.words[i - 1] in _INTRANSITIVE:
            return False
        end = self.window(i)
        return end > i and all(_can_be_noun(w) and w not in _ADVERBS for w in self.words[i:end])

    def window(self, i: int) -> int:
        """Where free text (or a preposition's object) starting at ``i`` ends: before the next comma,
        stop word, preposition, relation or verb, or an "and" that starts a new phrase."""
        words, m = self.words, i - 1
        while (m := m + 1) < len(words):
            w = words[m]
            if (hit := _determiner(words, m)) and hit[0] != 0 and hit[2] > 1:
                m += hit[2] - 1  # "with one or two balloons", "a hundred and fifty": one count
                continue
            # "of" belongs to the text it is in: "in the style of van gogh".
            if w == "," or w in _STOP or (w in _PREPOSITIONS and w != "of") or _match(_RELATION_TABLE, words, m):
                return m
            if w in _VERBS and m > i and _match(_nouns(), words, m) is None:
                return m
            if w == "and" and m + 1 < len(words) and (_determiner(words, m + 1) or _match(_nouns(), words, m + 1)):
                return m
        return len(words)

    def names_known(self, i: int, j: int) -> bool:
        """Whether ``words[i:j]`` hold a known noun."""
        words = self.words
        return any(tuple(words[m : m + n]) in _nouns() for m in range(i, j) for n in (1, 2, 3) if m + n <= j)

    # -- building ---------------------------------------------------------------------------

    def close(self, by: str = "") -> None:
        """End the phrase being read: resolve it to an entity of the current group, if it names one."""
        toks = self.buf.take()
        if not toks:
            return
        self.spans[-1] += (toks[0].start, toks[-1].end)
        words = [t.word for t in toks]
        if by == "," and all(w in COLOURS or _determiner(words, k) for k, w in enumerate(words)):
            self.buf.add(toks)  # "a red, shiny apple": one phrase
            return
        zero, self.zero = self.zero, None
        bare, self.after_verb = self.after_verb, False
        if bare and all(w in _ACTIVITIES for w in words):
            return  # a game, not a thing: the verb's text says it ("a person playing tennis")
        # "both red", "all blue": the colour of the phrase before.
        colours = [w for w in words if w not in _QUIET]
        if len(colours) == 1 and colours[0] in COLOURS and self.groups[-1]:
            if self.scene.recolour(self.groups[-1][-1].eid, colours[0]):
                return
        other_side = self.groups[-2] if len(self.groups) > 1 else []
        eid = self.scene.mention(toks, other_side, zero, bare)
        if eid is None:
            return
        if self.described:
            self.placed, self.described = len(self.groups[-1]), False
        self.groups[-1].append(_Mention(eid, toks[0].start, toks[-1].end, by))
        if self.pending is not None:
            (sides, start), self.pending = self.pending, None
            self.scene.places += [_Place(eid, axis, side, start, toks[-1].end) for axis, side in sides]
            self.placed = len(self.groups[-1])
        if by == "and" and self.scene.count_of(eid) == 0:
            self.zero = "bare"

    def link(self, predicate: Predicate | None, toks: list[_Token]) -> None:
        self.close()
        self.links.append(_Link(predicate, tuple(toks)))
        self.groups.append([])
        self.spans.append([])
        self.placed = 0

    def place(self, sides: list[tuple[str, int]], toks: list[_Token]) -> None:
        """Give the phrases read since the last side ("a cat and a dog on the left"), or else the next
        phrase ("on the left, a cat"), the sides of the picture at ``toks``."""
        self.close()
        targets = self.groups[-1][self.placed :]
        self.placed = len(self.groups[-1])
        if not targets:
            if self.pending is not None:
                self.scene.keep_span(self.pending[1], toks[0].start)
            self.pending = (sides, toks[0].start)
            return
        if self.links and self.links[-1].predicate is None and targets[0] is self.groups[-1][0] and self.groups[-2]:
            targets = self.groups[-2][-1:]  # "a girl reading a book on the left": the girl, as for a relation
        for m in targets:
            for axis, side in sides:
                self.scene.places.append(_Place(m.eid, axis, side, targets[0].start, toks[-1].end))

    def free_text(self, i: int, start: int | None = None, after: int | None = None) -> int:
        """Keep ``words[i:end]`` (from character ``start`` if given) as a constraint; return ``end``.

        ``end`` is where the text from ``after`` (default ``i + 1``) ends, see :meth:`window`.
        """
        self.close()
        self.described = True
        after = i + 1 if after is None else after
        end = max(self.window(after), after)
        self.scene.keep_span(self.toks[i].start if start is None else start, self.toks[end - 1].end)
        return end

    def read(self) -> None:
        words, toks = self.words, self.toks
        i = self.filler()
        while i < len(words):
            w = words[i]
            if place := self.place_at(i):
                sides, end = place
                self.place(sides, toks[self.be_end[i] : end])
                i = end
            elif rel := self.relation_at(i):
                predicate, end = rel
                j = self.be_end[i]
                if self.touches_at(i):  # "a clock on the wall": on it, not above it
                    self.close()
                    if len(self.groups[-1]) > 1:  # "a cup on a table and a clock on the wall"
                        self.located.add((len(self.groups) - 1, len(self.groups[-1]) - 1))
                    i = self.preposition(j, toks[j:end], whole=True)
                else:
                    self.link(predicate, toks[i:end])
                    i = end
            elif w in ("is", "are") and i + 1 < len(words) and words[i + 1] in COLOURS and self.ends_clause(i + 2):
                self.close()
                if not (self.groups[-1] and self.scene.recolour(self.groups[-1][-1].eid, words[i + 1])):
                    self.scene.keep_text(toks[i : i + 2])
                i += 2
            elif (w in _BE or w in _WH) and self.skippable(i):
                self.close()
                i += 1
            elif (w in _VERBS or w in _BE) and self.is_verb(i):
                i = self.verb(i)
            elif w == "without" or (w == "with" and i + 1 < len(words) and _match(_ZERO, words, i + 1)):
                self.close()
                self.zero = "always" if w == "without" else None
                i += 1
            elif w in _PREPOSITIONS:
                i = self.preposition(i, toks[i : i + 1])
            elif w in (",", "and", "but"):
                self.close(by=w)
                i += 1
            elif i + 1 < len(words) and words[i + 1] == "than" and self.buf.has_noun():
                self.link(None, toks[i : i + 2])  # "a cat bigger than a dog"
                i += 2
            elif w in _STOP and not _determiner(words, i):  # "not a single car" is a count
                i = self.free_text(i)
            else:
                hit = _determiner(words, i)
                n = hit[2] if hit else 1
                if hit and self.buf.has_noun():  # "a cat a dog": a determiner after a noun starts a new phrase
                    self.close()
                elif hit and self.buf.toks and not (self.buf.determined or self.buf.coloured):
                    self.scene.keep_text(self.buf.take())  # "wow, a cat": words before it are not its adjectives
                self.buf.add(toks[i : i + n])
                i += n
        self.close()
        if self.pending is not None:
            self.scene.keep_span(self.pending[1], toks[-1].end)
        self.relate()

    def ends_clause(self, i: int) -> bool:
        return i >= len(self.words) or self.words[i] in (",", "and")

    def skippable(self, i: int) -> bool:
        """Whether the "is"/"that"/"sitting" at ``i`` only leads into a relation or a verb after it."""
        j = self.link_end[i]
        if j < len(self.words) and self.words[j] in COLOURS and self.words[j - 1] in ("is", "are"):
            return self.ends_clause(j + 1) and j - 1 > i  # "a cup that is red": the "is red" after it
        return self.relation_at(j) is not None or (j < len(self.words) and self.words[j] in _VERBS and self.is_verb(j))

    def verb(self, i: int) -> int:
        """A verb at ``i``: a link to the phrase after it, or before a relation, text of its own."""
        toks = self.toks
        if self.touches_at(i + 1):  # "a clock hanging on the wall": all of it is the text
            self.close()
            return i + 1
        if self.relation_at(i + 1) is not None:  # "a cat sleeping on a bed": the relation, and "a cat sleeping"
            self.close()
            start = self.groups[-1][-1].start if self.groups[-1] else toks[i].start
            self.scene.keep_span(start, toks[i].end)
            return i + 1
        if self.words[i + 1] in _PREPOSITIONS:  # "playing with", "sitting in"
            return self.preposition(i + 1, toks[i : i + 2])
        self.link(None, toks[i : i + 1])
        self.after_verb = True
        return i + 1

    def preposition(self, i: int, link_toks: list[_Token], whole: bool = False) -> int:
        """A preposition at ``i`` (with the verb before it in ``link_toks``): a link when what follows
        names a known noun, else free text; ``whole``: the text starts at the phrase before it."""
        end = self.window(i + 1)
        # After a verb, "with", "at" and "by" take any phrase: "playing with a ball", "ridden by an astronaut".
        taken = len(link_toks) > 1 and self.words[i] in ("with", "at", "by") and self.phrase_starts(i + 1)
        if (taken or self.names_known(i + 1, end)) and _match(_ZERO, self.words, i + 1) is None:
            self.link(None, link_toks)
            return i + 1
        # "a bowl of fruit": the whole phrase is the constraint, not "of fruit".
        start = None
        if whole or (self.words[i] == "of" and self.buf.has_noun()):
            self.close()
            start = self.groups[-1][-1].start if self.groups[-1] else None
        return self.free_text(i - (len(link_toks) - 1), start, after=i + 1)

    def filler(self) -> int:
        """Skip "a photo of", "draw", "there are", ...; a picture's own words ("a watercolor painting of") are kept."""
        words, i = self.words, 0
        while hit := _match(_FILLER_TABLE, words, i):
            i += hit[1]
        for k in range(i, min(i + 5, len(words) - 1)):
            if words[k] in _PICTURES and words[k + 1] in _PICTURE_LINKS:
                if any(_match(_nouns(), words, m) or _match(_RELATION_TABLE, words, m) for m in range(i, k)):
                    break
                if any(w not in _ARTICLES for w in words[i:k]):
                    self.scene.keep_span(self.toks[i].start, self.toks[k].end)
                return k + 2
            if words[k] in (",",):
                break
        return i

    def relate(self) -> None:
        """Turn the links between groups into relations (or free text)."""
        scene, groups = self.scene, self.groups
        previous: list[_Mention] = []
        for k, link in enumerate(self.links):
            subjects = groups[k] if k == 0 or len(groups[k]) == 1 else groups[k][_second(groups[k]) :]
            last = k + 1 == len(self.links)
            objects = groups[k + 1] if last or len(groups[k + 1]) == 1 else groups[k + 1][: _second(groups[k + 1])]
            objects = [m for n, m in enumerate(objects) if (k + 1, n) not in self.located]
            if link.predicate is None:
                objects = objects[:1]  # "a boy holding a kite, a dog and a bus": he holds the kite
            chained = previous if k > 0 and self.links[k - 1].predicate is None and len(groups[k]) == 1 else []
            if chained and not {m.eid for m in chained} & {m.eid for m in objects}:
                subjects = chained  # "a boy holding a kite next to a dog": the boy is next to the dog
            previous = subjects
            absent = [m for m in (*subjects, *objects) if scene.count_of(m.eid) == 0]
            subjects = [m for m in subjects if scene.count_of(m.eid) != 0]
            objects = [m for m in objects if scene.count_of(m.eid) != 0]
            if absent and not (subjects and objects):
                continue  # "no cars on the street": absence is judged anywhere
            same = {m.eid for m in subjects} & {m.eid for m in objects}
            # Many phrases on both sides would relate every pair (quadratic): say it instead.
            crowded = len(subjects) * len(objects) > MAX_PAIRS
            if link.predicate is None or not subjects or not objects or same or crowded:
                spans = [(m.start, m.end) for m in (*subjects, *objects)] + [(t.start, t.end) for t in link.toks]
                if subjects and objects:
                    scene.keep_span(min(s for s, _ in spans), max(e for _, e in spans))
                else:
                    where = [link.toks[0].start, link.toks[-1].end, *self.spans[k], *self.spans[k + 1]]
                    scene.keep_span(min(where), max(where))
                continue
            for s in subjects:
                for o in objects:
                    scene.relations.setdefault(Relation(subject=s.eid, predicate=link.predicate, object=o.eid))


def _second(group: list[_Mention]) -> int:
    """Where a group between two links starts the second link's subjects.

    After the first phrase ("a cat next to a dog, a cup above it": the dog, then the cup), unless the
    first link's list ends with "and" before a comma: "a cat next to a dog and a bird, a cup above
    the cat" puts the cat next to the dog and the bird.
    """
    anded = False
    for k, mention in enumerate(group[:-1]):
        if mention.then == "," and anded:
            return k + 1
        anded = anded or mention.then == "and"
    return 1


def parse(prompt: str) -> SceneGraph:
    """Parse ``prompt`` into its scene graph; raises :class:`UsageError` when it names nothing to draw.

    Reads any length (linear time); :class:`RulesPlanner` caps the length first.
    """
    if not prompt.strip():
        raise UsageError("prompt is empty: name at least one object to draw")
    toks = [_Token(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(prompt)]
    scene = _Scene(prompt)
    sentence: list[_Token] = []
    for tok in [*toks, _Token(".", len(prompt), len(prompt))]:
        if tok.word not in _ENDS:
            sentence.append(tok)
        elif sentence:
            scene.sentence(sentence)
            sentence = []
    scene.relate_places()
    if not scene.entities:
        raise UsageError(
            f"prompt names no object to draw: {prompt!r}; name a known object ('a red apple') "
            "or put an article or a number before a noun ('a dragon')"
        )
    if all(e.count == 0 for e in scene.entities):
        absent = join_words([e.phrase() for e in scene.entities])
        raise UsageError(f"prompt asks only for what must be absent ({absent}): {prompt!r}; name something to draw")
    return SceneGraph(
        prompt=prompt,
        entities=tuple(scene.entities),
        relations=tuple(scene.relations),
        constraints=tuple(dict.fromkeys(scene.constraints)),
    )


def _the(e: Entity) -> str:
    return " ".join(
        ["the", *e.attributes, *([e.colour] if e.colour else []), e.noun if e.count == 1 else pluralize(e.noun)]
    )


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _draw_order(scene: SceneGraph) -> list[str]:
    """The entities to draw (count >= 1), anchors before the entities placed relative to them.

    Ties, and cycles, by order of mention: each time, the first entity whose anchors are all drawn,
    else the first not drawn yet. A heap of ready entities keeps this O((E + R) log E).
    """
    ids = [e.id for e in scene.entities if e.count > 0]
    rank = {eid: k for k, eid in enumerate(ids)}
    needs: dict[str, set[str]] = {i: set() for i in ids}
    needed_by: dict[str, list[str]] = {i: [] for i in ids}
    for r in scene.relations:
        if r.subject in needs and r.object in needs and r.object != r.subject and r.object not in needs[r.subject]:
            needs[r.subject].add(r.object)
            needed_by[r.object].append(r.subject)
    waiting = {i: len(needs[i]) for i in ids}
    ready = [rank[i] for i in ids if waiting[i] == 0]
    heapq.heapify(ready)
    done: set[str] = set()
    order: list[str] = []
    first_left = 0
    while len(order) < len(ids):
        while ready and ids[ready[0]] in done:
            heapq.heappop(ready)
        if ready:
            eid = ids[heapq.heappop(ready)]
        else:
            while ids[first_left] in done:
                first_left += 1
            eid = ids[first_left]
        done.add(eid)
        order.append(eid)
        for other in needed_by[eid]:
            waiting[other] -= 1
            if waiting[other] == 0 and other not in done:
                heapq.heappush(ready, rank[other])
    return order


def _describe(scene: SceneGraph, drawn: list[str], drawn_set: set[str], final: bool) -> str:
    """<des>: what is drawn, its relations, what must be absent and, at the end, the free text."""
    by_id = {e.id: e for e in scene.entities}
    text = _cap(join_words([by_id[i].phrase() for i in drawn])) + "."
    clauses = []
    for r in scene.relations:
        if r.subject in drawn_set and r.object in drawn_set:
            subject = by_id[r.subject]
            verb = "is" if subject.count == 1 else "are"
            clauses.append(f"{_the(subject)} {verb} {PREDICATE_PHRASES[r.predicate]} {_the(by_id[r.object])}")
    if clauses:
        text += f" {_cap(join_words(clauses))}."
    absent = [e.phrase() for e in scene.entities if e.count == 0]
    if absent:
        text += f" {_cap(join_words(absent))}."
    if final:
        text += "".join(f" {_cap(c)}." for c in scene.constraints)
    return text


def plan_scene(scene: SceneGraph) -> Plan:
    """Anchors first, one step per entity to draw (several per step beyond :data:`MAX_STEPS`).

    ``<ins>`` names the step's entities and their relations to those drawn before them; ``<des>``
    the scene so far. Entities of count 0 belong to the first step (they are judged from the start,
    never drawn); its ``<ins>`` and every ``<des>`` name them ("no cars"). The last ``<des>`` ends
    with the free-text constraints.
    """
    order = _draw_order(scene)
    if not order:
        raise UsageError("scene has no entities to draw")
    by_id = {e.id: e for e in scene.entities}
    anchors_of: dict[str, list[Relation]] = {}
    for r in scene.relations:
        anchors_of.setdefault(r.subject, []).append(r)
    absent = [e for e in scene.entities if e.count == 0]
    n_steps = min(len(order), MAX_STEPS)
    bounds = [len(order) * k // n_steps for k in range(n_steps + 1)]
    steps: list[PlanStep] = []
    drawn: list[str] = []
    drawn_set: set[str] = set()
    for k in range(n_steps):
        chunk = order[bounds[k] : bounds[k + 1]]
        parts = []
        for eid in chunk:
            anchors = [
                f"{PREDICATE_PHRASES[r.predicate]} {_the(by_id[r.object])}"
                for r in anchors_of.get(eid, ())
                if r.object in drawn_set
            ]
            drawn.append(eid)
            drawn_set.add(eid)
            parts.append(by_id[eid].phrase() + (f" {join_words(anchors)}" if anchors else ""))
        instruction = f"{'Add' if steps else 'Draw'} {join_words(parts)}"
        ids = tuple(chunk)
        if k == 0 and absent:
            instruction += f", with {join_words([e.phrase() for e in absent])}"
            ids += tuple(e.id for e in absent)
        steps.append(
            PlanStep(
                instruction=instruction + ".",
                description=_describe(scene, drawn, drawn_set, final=k == n_steps - 1),
                entity_ids=ids,
            )
        )
    return Plan(steps=tuple(steps))


class RulesPlanner:
    """The ``builtin:rules`` planner: :func:`parse` then :func:`plan_scene`; no model involved."""

    def plan(self, prompt: str) -> tuple[SceneGraph, Plan]:
        scene = parse(check_prompt(prompt))
        return scene, plan_scene(scene)
