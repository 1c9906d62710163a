"""One finished run as training rows of three kinds, independent of the output format.

- ``multiturn``: the whole trajectory as one interleaved sequence: the prompt; per step the plan
  text (``<ins>``/``<des>``) and the draft; each critique with its boxes; each ``<refine>`` and the
  redraw. Positive only when the run's final critique passed. An image is a loss target only in a
  positive row and only when its own critique passed (and its truth, where recorded, is clean): a
  flawed intermediate image is context, never a target; nor is a critique the truth contradicts.
- ``conflict``: the image at step k and the plan so far -> consistent or not, with the violations and
  the correction. Negatives are the critic's real findings (``critic_violation``) and plans perturbed
  on purpose (``perturbed_plan``: a colour, a relation or a count changed in ``<des>``); positives
  are the images that passed.
- ``alignment``: one instruction (a step's ``<ins>``, or a ``<refine>``) and the image drawn for it ->
  aligned or not, with the reason and the ``<refine>`` that followed.

Labels are the critic's judgement; where the sketch world recorded the truth of an image
(:mod:`strokegraph.tools.sketch.truth`), each row also carries ``truth_label``. Boxes appear in text
as integers in [0, 1000) ``(x1,y1),(x2,y2)`` (GoT's convention) and as floats in ``violations``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from strokegraph.agents.critic import judge
from strokegraph.agents.refiner import refine_text
from strokegraph.app.runs import RunData, Skipped
from strokegraph.errors import RunError
from strokegraph.schema import COLOURS, Box, Critique, Event, ImageRef, Violation

__all__ = ["KINDS", "Kind", "Part", "Row", "box_text", "rows_for"]

Kind = Literal["multiturn", "conflict", "alignment"]
KINDS: tuple[Kind, ...] = ("multiturn", "conflict", "alignment")
NegativeSource = Literal["none", "failed_run", "critic_violation", "perturbed_plan"]
Label = Literal["positive", "negative"]


@dataclass(frozen=True)
class Part:
    """One piece of a sequence: text or an image, said by the user or the assistant.

    ``loss``: a training target. ``condition``: later parts condition on this image (BAGEL then needs
    its VAE and ViT copies).
    """

    role: Literal["user", "assistant"]
    text: str | None = None
    image: ImageRef | None = None
    loss: bool = False
    condition: bool = False


@dataclass(frozen=True)
class Row:
    kind: Kind
    label: Literal["positive", "negative"]
    negative_source: NegativeSource
    step: int
    round: int
    parts: tuple[Part, ...]
    violations: tuple[dict[str, Any], ...] = ()
    truth_label: Literal["positive", "negative"] | None = None
    variant: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def box_text(box: Box) -> str:
    """``(x1,y1),(x2,y2)``: a normalised box as integers in [0, 1000)."""
    x1, y1, x2, y2 = (min(999, max(0, int(v * 1000))) for v in box)
    return f"({x1},{y1}),({x2},{y2})"


def _violation_text(v: Violation) -> str:
    return f"{v.message} at {box_text(v.box)}" if v.box is not None else v.message


def _critique_text(c: Critique) -> str:
    body = "no violations" if c.passed else "; ".join(_violation_text(v) for v in c.violations)
    return f"<critique>{body}</critique>"


def _violation_column(v: Violation) -> dict[str, Any]:
    return {
        "kind": v.kind,
        "entity_ids": list(v.entity_ids),
        "expected": v.expected,
        "observed": v.observed,
        "message": v.message,
        "box": list(v.box) if v.box is not None else None,
    }


def _plan_text(run: RunData, step: int) -> str:
    s = run.plan.steps[step]
    return f"<ins>{s.instruction}</ins> <des>{s.description}</des>"


class _Trajectory:
    """The run's images with the critique that judged each, the refine that followed it, and truths."""

    def __init__(self, run: RunData) -> None:
        from strokegraph.tools.sketch.truth import read_truth

        self.run = run
        self.drawn: list[Event] = [e for e in run.events if e.stage in ("draft", "refine") and e.image is not None]
        self.critique: dict[str, Critique] = {}
        self.refine_after: dict[str, Event] = {}
        last: Event | None = None
        for e in run.events:
            if e.stage in ("draft", "refine") and e.image is not None:
                if e.stage == "refine" and last is not None and last.image is not None:
                    self.refine_after.setdefault(last.image.path, e)
                last = e
            elif e.stage == "critique" and e.critique is not None and e.image is not None:
                self.critique.setdefault(e.image.path, e.critique)
        self.truth_clean: dict[str, bool] = {}
        for e in self.drawn:
            assert e.image is not None
            try:
                truth = read_truth(run.run_dir, e.image)
            except RunError as exc:
                raise Skipped(str(exc)) from None
            critique = self.critique.get(e.image.path)
            if truth is not None and critique is not None:
                scope = frozenset(critique.judged_entity_ids) or frozenset(x.id for x in run.scene.entities)
                self.truth_clean[e.image.path] = judge(run.scene, scope, truth.detections()).passed

    def truth_label(self, ref: ImageRef) -> Literal["positive", "negative"] | None:
        clean = self.truth_clean.get(ref.path)
        return None if clean is None else "positive" if clean else "negative"

    def correction(self, ref: ImageRef, critique: Critique) -> str:
        after = self.refine_after.get(ref.path)
        return after.text if after is not None else refine_text(critique.violations, self.run.scene)


def _multiturn(t: _Trajectory) -> Iterator[Row]:
    run = t.run
    parts: list[Part] = [Part("user", text=run.prompt)]
    for e in run.events:
        if e.stage == "draft" and e.image is not None:
            parts.append(Part("assistant", text=_plan_text(run, e.step), loss=True))
        elif e.stage == "refine" and e.image is not None:
            parts.append(Part("assistant", text=f"<refine>{e.text}</refine>", loss=True))
        elif e.stage == "critique" and e.critique is not None:
            # A critique the truth contradicts (it passed a flawed image, or failed a clean one) is not taught.
            truth = t.truth_clean.get(e.image.path) if e.image is not None else None
            parts.append(Part("assistant", text=_critique_text(e.critique), loss=truth in (None, e.critique.passed)))
        if e.stage in ("draft", "refine") and e.image is not None:
            critique = t.critique.get(e.image.path)
            clean = critique is not None and critique.passed and t.truth_clean.get(e.image.path, True)
            # Every image is followed by its critique, which reads it: each one conditions what comes after.
            parts.append(Part("assistant", image=e.image, loss=run.passed and clean, condition=True))
    final = t.drawn[-1].image
    assert final is not None
    yield Row(
        kind="multiturn",
        label="positive" if run.passed else "negative",
        negative_source="none" if run.passed else "failed_run",
        step=t.drawn[-1].step,
        round=t.drawn[-1].round,
        parts=tuple(parts),
        truth_label=t.truth_label(final),
    )


_SWAPS = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above"}
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def perturb(description: str, run: RunData, step: int, key: str) -> tuple[str, dict[str, Any]] | None:
    """``description`` with one fact changed (a colour, a relation or a count), and the violation that
    the change makes; None when it states none of them. The choice among the candidates is seeded by ``key``."""
    scope = run.plan.introduced_until(step)
    candidates: list[tuple[str, dict[str, Any]]] = []
    for e in run.scene.entities:
        if e.id in scope and e.colour is not None and re.search(rf"\b{e.colour}\b", description):
            pick = int(hashlib.sha256(f"{key}|{e.id}".encode()).hexdigest(), 16)
            other = [c for c in COLOURS if c != e.colour][pick % (len(COLOURS) - 1)]
            text = _recolour(description, e.colour, other)
            candidates.append((text, _made("attribute", e.id, f"{other} {e.noun}", f"{e.colour} {e.noun}")))
    for phrase, inverse in _SWAPS.items():
        if re.search(rf"\b{phrase}\b", description):
            text = re.sub(rf"\b{phrase}\b", inverse, description, count=1)
            candidates.append((text, _made("relation", None, inverse, phrase)))
            break
    for i, word in enumerate(_NUMBERS[:-1]):
        if re.search(rf"\b{word}\b", description, flags=re.IGNORECASE):
            text = re.sub(rf"\b{word}\b", _NUMBERS[i + 1], description, count=1, flags=re.IGNORECASE)
            candidates.append((text, _made("count", None, _NUMBERS[i + 1], word)))
            break
    candidates = [(text, v) for text, v in candidates if text != description]
    if not candidates:
        return None
    return candidates[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(candidates)]


def _recolour(description: str, colour: str, other: str) -> str:
    """``description`` with its first ``colour`` made ``other``, and an article before it agreeing ("an orange")."""

    def swap(m: re.Match[str]) -> str:
        article = m.group(1)
        if article is None:
            return other
        fitting = "an" if other[0] in "aeiou" else "a"
        return (fitting.capitalize() if article[0].isupper() else fitting) + " " + other

    return re.sub(rf"\b(?:([Aa]n?) )?{colour}\b", swap, description, count=1)


def _made(kind: str, entity_id: str | None, expected: str, observed: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "entity_ids": [entity_id] if entity_id else [],
        "expected": expected,
        "observed": observed,
        "message": f"the plan says {expected!r} where the image shows {observed!r}",
        "box": None,
    }


_CONFLICT_ASK = "Plan so far:\n{plan}\nDoes the image match the plan? Answer consistent or inconsistent; name each "
_CONFLICT_ASK += "violation with its box, then the correction."
_ALIGN_ASK = "Instruction: {instruction}\nWas the instruction carried out in the image? Answer aligned or not aligned, "
_ALIGN_ASK += "with the reason and the correction."


def _judged(t: _Trajectory) -> Iterator[tuple[Event, Critique]]:
    for e in t.drawn:
        assert e.image is not None
        critique = t.critique.get(e.image.path)
        if critique is not None:
            yield e, critique


def _judged_row(
    kind: Kind,
    e: Event,
    label: Label,
    source: NegativeSource,
    ask: str,
    answer: str,
    violations: tuple[dict[str, Any], ...],
    truth: Label | None,
    variant: str = "",
) -> Row:
    """A row about a judged image: the question ``ask``, the image, and the ``answer`` to learn."""
    assert e.image is not None
    return Row(
        kind=kind,
        label=label,
        negative_source=source,
        step=e.step,
        round=e.round,
        parts=(
            Part("user", text=ask),
            Part("user", image=e.image, condition=True),
            Part("assistant", text=answer, loss=True),
        ),
        violations=violations,
        truth_label=truth,
        variant=variant,
    )


def _findings(t: _Trajectory, image: ImageRef, critique: Critique) -> str:
    """What a failed critique found, in words, then the ``<refine>`` correction of it."""
    lines = "; ".join(_violation_text(v) for v in critique.violations)
    return f"{lines}\n<refine>{t.correction(image, critique)}</refine>"


def _conflict(t: _Trajectory) -> Iterator[Row]:
    run = t.run
    for e, critique in _judged(t):
        assert e.image is not None
        plan = "\n".join(_plan_text(run, k) for k in range(e.step + 1))
        ask = _CONFLICT_ASK.format(plan=plan)
        truth = t.truth_label(e.image)
        if critique.passed:
            yield _judged_row("conflict", e, "positive", "none", ask, "consistent", (), truth)
            des = run.plan.steps[e.step].description
            changed = perturb(des, run, e.step, f"{run.run_id}|{e.image.path}")
            if changed is not None:
                text, violation = changed
                perturbed = _CONFLICT_ASK.format(plan=plan.replace(f"<des>{des}</des>", f"<des>{text}</des>"))
                answer = f"inconsistent: {violation['message']}\n<refine>Make the image show {violation['expected']}."
                answer += "</refine>"
                # Against the changed plan a truly clean image is wrong; of any other image the truth says nothing sure.
                wrong: Label | None = "negative" if truth == "positive" else None
                yield _judged_row(
                    "conflict", e, "negative", "perturbed_plan", perturbed, answer, (violation,), wrong, "p"
                )
        else:
            answer = f"inconsistent: {_findings(t, e.image, critique)}"
            violations = tuple(_violation_column(v) for v in critique.violations)
            yield _judged_row("conflict", e, "negative", "critic_violation", ask, answer, violations, truth)


def _alignment(t: _Trajectory) -> Iterator[Row]:
    run = t.run
    for e, critique in _judged(t):
        assert e.image is not None
        instruction = (
            f"<ins>{run.plan.steps[e.step].instruction}</ins>" if e.stage == "draft" else f"<refine>{e.text}</refine>"
        )
        ask = _ALIGN_ASK.format(instruction=instruction)
        violations = tuple(_violation_column(v) for v in critique.violations)
        truth = t.truth_label(e.image)
        if critique.passed:
            yield _judged_row("alignment", e, "positive", "none", ask, "aligned", violations, truth)
        else:
            answer = f"not aligned: {_findings(t, e.image, critique)}"
            yield _judged_row("alignment", e, "negative", "critic_violation", ask, answer, violations, truth)


def rows_for(run: RunData, kinds: tuple[Kind, ...]) -> Iterator[Row]:
    """The rows of ``kinds`` that ``run`` gives, in kind order; raises :class:`Skipped` for a damaged sidecar."""
    t = _Trajectory(run)
    makers = {"multiturn": _multiturn, "conflict": _conflict, "alignment": _alignment}
    for kind in kinds:
        yield from makers[kind](t)
