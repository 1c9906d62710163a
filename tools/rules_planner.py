"""The ``builtin:rules`` planner: a deterministic parser of compositional prompts, then an ordered plan.

The grammar, per sentence (sentences end at ``.``, ``;``, ``!`` or ``?``)::

    sentence := filler? group (link group)*          filler: "a photo of", "draw", "there are", ...
    group    := phrase (("," | "and") phrase)*
    phrase   := (article | count)* modifier* noun    noun: known (longest first) or else the last word
    link     := relation ("left of", "on top of", "under", ...) | loose link ("next to", "near", ...)

A relation relates every subject phrase to every object phrase. In a chain ``A rel B rel C`` a one-phrase
middle group is the object of one relation and the subject of the next; in ``A rel B and C rel D`` the
first phrase of the middle group closes the first relation and the rest open the second. Loose links,
other words (``in``, ``with``, ``at``, ...) up to the next comma, and phrases without a noun are kept
verbatim in :attr:`SceneGraph.constraints`; the nouns around them are kept as entities.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from strokegraph._text import NUMBER_WORDS, join_words, pluralize, singularize
from strokegraph.errors import UsageError
from strokegraph.schema import COLOURS, Entity, Plan, PlanStep, Relation, SceneGraph
from strokegraph.vocab import known_nouns

__all__ = ["RulesPlanner", "parse", "plan_scene"]


_SIDES = {
    f"{pre}{side}{suf} of": f"{side} of"
    for side in ("left", "right")
    for pre in ("", "to the ", "on the ", "at the ")
    for suf in ("", " side", " hand side")
}
_RELATIONS: dict[str, str | None] = {
    **_SIDES,
    **dict.fromkeys(("above", "over", "on", "on top of", "atop"), "above"),
    **dict.fromkeys(("below", "under", "beneath", "underneath"), "below"),
    # Loose links: the nouns on both sides are kept, the relation itself only as a constraint.
    **dict.fromkeys(("next to", "beside", "near", "behind", "in front of"), None),
}
_PICTURES = "photo photograph image picture drawing painting sketch illustration render rendering scene".split()
_FILLERS = (
    *(f"{a}{w} of" for a in ("", "a ", "an ", "the ") for w in _PICTURES),
    *"draw generate create make paint show render depict please me".split(),
    *("there is", "there are"),
)
_COUNTS = {tuple(k.split()): v for k, v in NUMBER_WORDS.items()}
#: Article -> whether it is definite (a definite phrase may refer back to an earlier entity).
_ARTICLES = {"a": False, "an": False, "some": False, **dict.fromkeys("the this these those".split(), True)}
_BE = set("is are sits sit stands stand placed located".split())
# Words that end a noun phrase and start free text running to the next comma.
_STOP = set(
    "in at with without of for from during into onto inside outside while that which who where "
    "is are was were being holding wearing made as like".split()
)
_PRONOUNS = {"it", "them", "they", "itself", "themselves"}
_ENDS = {".", ";", "!", "?"}
_TOKEN = re.compile(r"[a-z]+(?:['-][a-z]+)*|\d+|[,.;!?]")


def _table(phrases) -> dict[tuple[str, ...], object]:
    return {tuple(p.split()): v for p, v in phrases}


_RELATION_TABLE = _table(_RELATIONS.items())
_FILLER_TABLE = _table((f, True) for f in _FILLERS)


@cache
def _nouns() -> dict[tuple[str, ...], str]:
    """Surface form (singular, plural, GenEval's naive plural) -> singular noun."""
    table: dict[tuple[str, ...], str] = {}
    for noun in known_nouns():
        for form in (noun, pluralize(noun), noun + "s"):  # "toothbrushs", "sheeps", "tvs", ...
            table.setdefault(tuple(form.split()), noun)
    return table


def _match(table: dict, words: list[str], i: int) -> tuple[object, int] | None:
    """The longest entry of ``table`` starting at ``words[i]``, with its length in words."""
    for n in range(min(6, len(words) - i), 0, -1):
        if (key := tuple(words[i : i + n])) in table:
            return table[key], n
    return None


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
    modifiers: tuple[str, ...]
    end: int  # words read; any after the noun are free text


def _read_phrase(words: list[str]) -> _Phrase | None:
    """Read ``(article | count)* modifier* noun``; None when no word can be the noun."""
    count, definite, i = None, False, 0
    while i < len(words):
        if hit := _match(_COUNTS, words, i):
            count, i = hit[0], i + hit[1]
        elif words[i].isdigit() and int(words[i]) > 0:
            count, i = int(words[i]), i + 1
        elif words[i] in _ARTICLES:
            definite = _ARTICLES[words[i]]
            count = 1 if words[i] in ("a", "an") else count
            i += 1
        else:
            break
    for end in range(len(words), i, -1):  # the rightmost known noun, longest first
        for n in (3, 2, 1):
            if end - n >= i and (noun := _nouns().get(tuple(words[end - n : end]))):
                surface = " ".join(words[end - n : end])
                return _Phrase(noun, count, surface != noun, definite, tuple(words[i : end - n]), end)
    last = words[-1] if len(words) > i else ""
    if not last.isalpha() or last in COLOURS or last in _ARTICLES or (last,) in _COUNTS:
        return None
    noun = last if count == 1 else singularize(last)
    return _Phrase(noun, count, noun != last, definite, tuple(words[i:-1]), len(words))


@dataclass
class _Scene:
    prompt: str
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    mentioned: list[str] = field(default_factory=list)  # entity ids, most recent last

    def keep_text(self, toks: list[_Token]) -> None:
        if toks:
            self.constraints.append(self.prompt[toks[0].start : toks[-1].end])

    def mention(self, toks: list[_Token], other_side: list[str]) -> str | None:
        """Resolve one noun phrase to an entity id, or None (text kept) when it names no noun.

        A definite phrase may reuse an earlier entity; a pronoun is the latest entity not in ``other_side``.
        """
        if len(toks) == 1 and toks[0].word in _PRONOUNS:
            eid = next((e for e in reversed(self.mentioned) if e not in other_side), None)
            if eid is None:
                self.keep_text(toks)
            return eid
        eid = self._resolve(toks)
        if eid is not None:
            self.mentioned.append(eid)
        return eid

    def _resolve(self, toks: list[_Token]) -> str | None:
        phrase = _read_phrase([t.word for t in toks])
        if phrase is None:
            self.keep_text(toks)
            return None
        self.keep_text(toks[phrase.end :])
        colour = next((w for w in phrase.modifiers if w in COLOURS), None)
        if phrase.definite:
            for e in self.entities:
                if e.noun == phrase.noun and colour in (None, e.colour) and phrase.count in (None, e.count):
                    return e.id
        # A bare plural ("the apples") asks for more than one; two is the least that reads right.
        count = phrase.count or (2 if phrase.plural else 1)
        attributes = tuple(w for w in phrase.modifiers if w != colour)
        eid = f"e{len(self.entities)}"
        self.entities.append(Entity(id=eid, noun=phrase.noun, count=count, colour=colour, attributes=attributes))
        return eid

    def sentence(self, toks: list[_Token]) -> None:
        words = [t.word for t in toks]
        i = 0
        while hit := _match(_FILLER_TABLE, words, i):
            i += hit[1]
        groups: list[list[str]] = [[]]
        spans: list[list[_Token]] = [[]]  # tokens of each group, for loose-link constraints
        links: list[tuple[str | None, list[_Token]]] = []  # predicate (None: loose link) and its words
        phrase: list[_Token] = []

        def close() -> None:
            other_side = groups[-2] if len(groups) > 1 else []
            if phrase and (eid := self.mention(phrase, other_side)) is not None:
                groups[-1].append(eid)
            spans[-1] += phrase
            phrase.clear()

        while i < len(toks):
            skip = 1 if words[i] in _BE and _match(_RELATION_TABLE, words, i + 1) else 0
            if hit := _match(_RELATION_TABLE, words, i + skip):
                close()
                links.append((hit[0], toks[i : i + skip + hit[1]]))
                groups.append([])
                spans.append([])
                i += skip + hit[1]
            elif hit := _match(_COUNTS, words, i):
                phrase += toks[i : i + hit[1]]
                i += hit[1]
            elif words[i] in (",", "and"):
                close()
                i += 1
            elif words[i] in _STOP:
                close()
                j = words.index(",", i) if "," in words[i:] else len(words)
                self.keep_text(toks[i:j])
                i = j
            else:
                phrase.append(toks[i])
                i += 1
        close()
        for k, (link, link_toks) in enumerate(links):
            subjects = groups[k] if k == 0 or len(groups[k]) == 1 else groups[k][1:]
            objects = groups[k + 1] if k + 1 == len(links) or len(groups[k + 1]) == 1 else groups[k + 1][:1]
            if link is None or not subjects or not objects or set(subjects) & set(objects):
                self.keep_text([*spans[k], *link_toks, *spans[k + 1]])
                continue
            for s in subjects:
                for o in objects:
                    if (rel := Relation(subject=s, predicate=link, object=o)) not in self.relations:
                        self.relations.append(rel)


def parse(prompt: str) -> SceneGraph:
    """Parse ``prompt`` into its scene graph; raises :class:`UsageError` when it names nothing to draw."""
    if not prompt.strip():
        raise UsageError("prompt is empty: name at least one object to draw")
    toks = [_Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(prompt.lower())]
    scene = _Scene(prompt)
    sentence: list[_Token] = []
    for tok in [*toks, _Token(".", len(prompt), len(prompt))]:
        if tok.word not in _ENDS:
            sentence.append(tok)
        elif sentence:
            scene.sentence(sentence)
            sentence = []
    if not scene.entities:
        raise UsageError(f"prompt names no object to draw: {prompt!r}")
    return SceneGraph(
        prompt=prompt,
        entities=tuple(scene.entities),
        relations=tuple(scene.relations),
        constraints=tuple(dict.fromkeys(scene.constraints)),
    )


_SAY = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


def _the(e: Entity) -> str:
    return " ".join(
        ["the", *e.attributes, *([e.colour] if e.colour else []), e.noun if e.count == 1 else pluralize(e.noun)]
    )


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _draw_order(scene: SceneGraph) -> list[str]:
    """Anchors before the entities placed relative to them; ties, and cycles, by order of mention."""
    ids = [e.id for e in scene.entities]
    needs = {i: {r.object for r in scene.relations if r.subject == i and r.object != i} for i in ids}
    order: list[str] = []
    while len(order) < len(ids):
        left = [i for i in ids if i not in order]
        order.append(next((i for i in left if needs[i] <= set(order)), left[0]))
    return order


def _describe(scene: SceneGraph, drawn: list[str]) -> str:
    text = _cap(join_words([scene.entity(i).phrase() for i in drawn])) + "."
    clauses = []
    for r in scene.relations:
        if r.subject in drawn and r.object in drawn:
            subject = scene.entity(r.subject)
            verb = "is" if subject.count == 1 else "are"
            clauses.append(f"{_the(subject)} {verb} {_SAY[r.predicate]} {_the(scene.entity(r.object))}")
    return f"{text} {_cap(join_words(clauses))}." if clauses else text


def plan_scene(scene: SceneGraph) -> Plan:
    """One step per entity, anchors first; ``<ins>`` names the step's placed relations, ``<des>`` the scene."""
    if not scene.entities:
        raise UsageError("scene has no entities to plan")
    steps: list[PlanStep] = []
    drawn: list[str] = []
    for eid in _draw_order(scene):
        anchors = [
            f"{_SAY[r.predicate]} {_the(scene.entity(r.object))}"
            for r in scene.relations
            if r.subject == eid and r.object in drawn
        ]
        drawn.append(eid)
        where = f" {join_words(anchors)}" if anchors else ""
        instruction = f"{'Add' if steps else 'Draw'} {scene.entity(eid).phrase()}{where}."
        steps.append(PlanStep(instruction=instruction, description=_describe(scene, drawn), entity_ids=(eid,)))
    return Plan(steps=tuple(steps))


class RulesPlanner:
    """The ``builtin:rules`` planner: :func:`parse` then :func:`plan_scene`; no model involved."""

    def plan(self, prompt: str) -> tuple[SceneGraph, Plan]:
        scene = parse(prompt)
        return scene, plan_scene(scene)
