"""report.html shows hostile run state as text: no markup from state, no script, no file outside images/.

The state here is what a hostile model reply or a tampered checkpoint can put into a run: every
free-text field holds an XSS payload, and (as LangGraph's checkpoint loader falls back to
``model_construct`` when validation fails) even the fields pydantic would normally constrain.
The browser tests load the report in a real headless Chromium and look at the DOM it ends with.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from strokegraph.app.report import write_report
from strokegraph.graph.state import RunState
from strokegraph.schema import (
    Critique,
    Detection,
    Entity,
    Event,
    ImageRef,
    Plan,
    PlanStep,
    Refinement,
    Relation,
    SceneGraph,
    Usage,
    Violation,
)

MARK = "PWNED"

# Each would set the page title to MARK if the browser ran it. "{n}" makes every field's text unique.
PAYLOADS = [
    "F{n}<script>document.title='PWNED'</script>",
    'F{n}"><img src=x onerror="document.title=\'PWNED\'">',
    "F{n}'><img src=x onerror='document.title=\"PWNED\"'>",
    "F{n}</style><script>document.title='PWNED'</script>",
    "F{n}</title><script>document.title='PWNED'</script>",
    "F{n}</svg><svg onload=\"document.title='PWNED'\"></svg>",
    "javascript:document.title='PWNED'//F{n}",
    "F{n}<a href=\"javascript:document.title='PWNED'\">click</a>",
    "F{n}<iframe srcdoc=\"<script>parent.document.title='PWNED'</script>\"></iframe>",
    'F{n}<style>body{{display:none}}</style><b style="color:red">styled</b>',
]


class _Payloads:
    """Hands out a different payload, with a unique number, for each field it fills; ``shown`` lists
    those of fields the report shows (the others must merely stay inert)."""

    def __init__(self) -> None:
        self.count = 0
        self.shown: list[str] = []

    def hidden(self) -> str:
        self.count += 1
        return PAYLOADS[self.count % len(PAYLOADS)].format(n=self.count)

    def __call__(self) -> str:
        text = self.hidden()
        self.shown.append(text)
        return text


def _png(run_dir: Path, name: str, colour: str = "red") -> ImageRef:
    return ImageRef.save(Image.new("RGB", (64, 48), colour), run_dir, name)


def _hostile_state(run_dir: Path, p: _Payloads) -> RunState:
    """A valid RunState whose every free-text field holds a payload."""
    e0, e1 = p(), p()
    scene = SceneGraph(
        prompt=p.hidden(),
        entities=(
            Entity(id=e0, noun=p(), count=1, colour="red", attributes=(p(),)),
            # Two of them: the phrase pluralises the noun, so the test looks for the phrase instead.
            Entity(id=e1, noun=p.hidden(), count=2, attributes=(p.hidden(), p.hidden())),
        ),
        relations=(Relation(subject=e0, predicate="left of", object=e1),),
        constraints=(p(), p()),
    )
    plan = Plan(steps=(PlanStep(instruction=p(), description=p(), entity_ids=(e0, p.hidden())),))
    violation = Violation(
        kind="attribute", entity_ids=(e0,), expected=p(), observed=p(), message=p(), box=(0.1, 0.1, 0.5, 0.5)
    )
    critique = Critique(
        violations=(violation,),
        detections=(Detection(noun=p(), box=(0.1, 0.1, 0.5, 0.5), score=0.5, colour="blue"),),
        judged_entity_ids=(e0, p.hidden()),
        unjudged=(p.hidden(), p.hidden()),
    )
    draft, fixed = _png(run_dir, "step01-draft.png"), _png(run_dir, "step01-refine1.png", "blue")
    final = Critique(detections=(Detection(noun=p(), box=(0, 0, 1, 1), score=1.0),), unjudged=(p(), p()))
    refinement = Refinement(text=p.hidden(), operation="inpaint", region=(0.1, 0.2, 0.3, 0.4))
    usage = Usage(calls=2, prompt_tokens=10, completion_tokens=5, images=1, cost_usd=0.0123456)
    return RunState(
        prompt=p(),
        scene=scene,
        plan=plan,
        step=0,
        round=1,
        rounds_total=1,
        sampling_steps=2,
        image=fixed,
        critique=final,
        trajectory=[
            Event(stage="plan", step=-1, text=p.hidden(), backend=p.hidden()),
            Event(stage="draft", step=0, text=p.hidden(), image=draft, duration_s=0.5, backend=p(), usage=usage),
            Event(stage="critique", step=0, text=p.hidden(), critique=critique, backend=p.hidden()),
            Event(stage="refine", step=0, round=1, text=p(), image=fixed, backend=p.hidden(), refinement=refinement),
            Event(stage="critique", step=0, round=1, text=p.hidden(), critique=final, backend=p.hidden()),
        ],
    )


def _constructed_state(run_dir: Path, p: _Payloads) -> RunState:
    """A RunState as a tampered checkpoint can load it: nested models built with ``model_construct``
    (no validation), so closed sets, numbers and image paths hold payloads too."""
    secret = run_dir.parent / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nTOP-SECRET-BYTES")
    outside = ImageRef.model_construct(
        path="../secret.png", sha256=hashlib.sha256(secret.read_bytes()).hexdigest(), width=64, height=48
    )
    named = ImageRef.model_construct(path=p.hidden(), sha256="0" * 64, width=64, height=48)
    e0 = p()
    scene = SceneGraph.model_construct(
        prompt=p.hidden(),
        entities=(Entity.model_construct(id=e0, noun=p(), count=1, colour=p(), attributes=(p(),)),),
        relations=(Relation.model_construct(subject=e0, predicate=p(), object=e0),),
        constraints=(p(),),
    )
    plan = Plan.model_construct(steps=(PlanStep.model_construct(instruction=p(), description=p(), entity_ids=()),))
    violation = Violation.model_construct(
        kind=p(), entity_ids=(), relation=None, expected=p(), observed=p(), message=p(), box=(p.hidden(), 0, 1, 1)
    )
    critique = Critique.model_construct(
        violations=(violation,),
        detections=(Detection.model_construct(noun=p(), box=(0, 0, 1, 1), score=1.0, colour=p()),),
        judged_entity_ids=(),
        unjudged=(p(),),
    )
    refinement = Refinement.model_construct(text=p.hidden(), operation=p(), region=(p(), 0.2, 0.3, 0.4), violations=())
    return RunState(
        prompt=p(),
        scene=scene,
        plan=plan,
        step=0,
        image=outside,
        critique=critique,
        trajectory=[
            Event.model_construct(
                stage="draft", step=0, round=0, text=p.hidden(), image=named, duration_s=p(), backend=p(), usage=None
            ),
            Event.model_construct(stage="critique", step=0, round=0, text=p.hidden(), critique=critique, usage=None),
            Event.model_construct(
                stage="refine",
                step=0,
                round=p(),
                text=p(),
                image=outside,
                duration_s=0.0,
                backend=p.hidden(),
                refinement=refinement,
                usage=None,
            ),
            # A float where a count belongs, and usage counts that are not numbers.
            Event.model_construct(
                stage="refine",
                step=0,
                round=2.5,
                text=p(),
                image=outside,
                duration_s=0.0,
                backend="",
                refinement=None,
                usage=Usage.model_construct(calls=1.5, prompt_tokens=p.hidden(), completion_tokens=0, images=0),
            ),
        ],
    )


class _Page(HTMLParser):
    """Every element (tag, attributes) and the decoded text of a page."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.texts: list[str] = []
        self.title = ""
        self._in_title = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs))
        self._in_title = tag == "title"

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.texts.append(data)
        if self._in_title:
            self.title += data

    @property
    def text(self) -> str:
        return "".join(self.texts)


# Every tag and attribute the report itself writes. Attribute values are numbers, data: PNGs or
# fixed words; nothing else may appear, so no attribute value can have come from state.
_TAGS = {
    *"html head meta title style body h1 h2 p b span table tbody tr td ul li div figure svg image rect text".split(),
    *"figcaption code br".split(),
}
_ATTR_VALUE = re.compile(
    r"[-0-9. ]*|data:image/png;base64,[A-Za-z0-9+/=]+|#ff1744|none|bold|utf-8|Content-Security-Policy"
    r"|http://www\.w3\.org/2000/svg|ok|bad|warn|muted|row|card|missing|default-src 'none'; .*"
)


def _assert_inert(page: _Page, payloads: list[str]) -> None:
    for tag, attrs in page.elements:
        assert tag in _TAGS, f"element <{tag}> came from state"
        for name, value in attrs:
            assert not name.startswith("on"), f"<{tag} {name}=...> came from state"
            assert name in {"class", "charset", "http-equiv", "content", "viewbox", "xmlns", "href"} | {
                *"x y width height fill stroke stroke-width stroke-dasharray font-size font-weight".split()
            }, f"attribute {name!r} on <{tag}>"
            assert _ATTR_VALUE.fullmatch(value or ""), f"<{tag} {name}={value!r}> came from state"
    for text in payloads:
        assert text in page.text, f"{text!r} is not shown as text"


def test_every_state_string_is_text_and_no_markup(tmp_path):
    run_dir = tmp_path / "run"
    p = _Payloads()
    state = _hostile_state(run_dir, p)
    page = _Page(write_report(run_dir, state, passed=False).read_text(encoding="utf-8"))
    assert page.title == f"strokegraph: {state.prompt}"
    _assert_inert(page, [*p.shown, state.scene.entities[1].phrase()])


def test_unvalidated_state_from_a_checkpoint_is_text_too(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    p = _Payloads()
    state = _constructed_state(run_dir, p)
    report = write_report(run_dir, state, passed=False).read_text(encoding="utf-8")
    page = _Page(report)
    # The two image references are refused and named; the file outside images/ is never embedded.
    assert "TOP-SECRET" not in report and "data:image/png" not in report
    assert page.text.count("Image not shown: invalid image reference") == 4
    assert "Refinement 2.5 ()" in page.text and "usage unreadable" in page.text
    _assert_inert(page, p.shown)


def test_the_content_security_policy_comes_first_and_allows_no_script(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    page = _Page(write_report(run_dir, RunState(prompt="a red cat"), passed=False).read_text(encoding="utf-8"))
    tags = [tag for tag, _ in page.elements]
    assert tags[:3] == ["html", "head", "meta"]
    csp = dict(page.elements[2][1])
    assert csp["http-equiv"] == "Content-Security-Policy"
    policy = dict(d.strip().split(" ", 1) for d in csp["content"].split(";"))
    assert policy["default-src"] == "'none'" and policy["img-src"] == "data:"
    assert "script-src" not in policy and "unsafe-inline" not in policy["style-src"]


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def _one_image_state(ref: ImageRef) -> RunState:
    return RunState(prompt="a red cat", image=ref)


def test_an_image_symlinked_elsewhere_is_replaced_by_a_placeholder(tmp_path):
    run_dir = tmp_path / "run"
    ref = _png(run_dir, "final.png")
    secret = tmp_path / "secret.png"
    secret.write_bytes((run_dir / ref.path).read_bytes())  # same bytes: only the symlink gives it away
    (run_dir / ref.path).unlink()
    (run_dir / ref.path).symlink_to(secret)
    report = write_report(run_dir, _one_image_state(ref), passed=False).read_text(encoding="utf-8")
    assert "data:image/png" not in report
    # The reason is text (its quotes escaped, whichever character reference the escaper picks).
    assert "Image not shown: image 'images/final.png' is a symlink" in _Page(report).text


def test_an_image_changed_on_disk_is_replaced_by_a_placeholder(tmp_path):
    run_dir = tmp_path / "run"
    ref = _png(run_dir, "final.png")
    _png(run_dir, "other.png", "green")
    (run_dir / ref.path).unlink()
    (run_dir / "images" / "other.png").rename(run_dir / ref.path)
    report = write_report(run_dir, _one_image_state(ref), passed=False).read_text(encoding="utf-8")
    assert "data:image/png" not in report
    assert "sha256 mismatch" in report


def test_a_missing_image_or_one_that_is_not_a_png_is_named(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "images").mkdir(parents=True)
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"
    (run_dir / "images" / "fake.png").write_bytes(svg)
    fake = ImageRef(path="images/fake.png", sha256=hashlib.sha256(svg).hexdigest(), width=8, height=8)
    gone = ImageRef(path="images/gone.png", sha256="1" * 64, width=8, height=8)
    state = RunState(
        prompt="a red cat",
        image=fake,
        trajectory=[Event(stage="draft", step=0, image=gone)],
        plan=Plan(steps=(PlanStep(instruction="i", description="d", entity_ids=()),)),
    )
    report = write_report(run_dir, state, passed=False).read_text(encoding="utf-8")
    assert "onload" not in report and "data:image" not in report
    assert "is not a PNG" in report and "cannot read image 'images/gone.png'" in _Page(report).text


def test_a_good_image_is_embedded_with_its_violation_box(tmp_path):
    run_dir = tmp_path / "run"
    ref = _png(run_dir, "final.png")
    box = Violation(kind="missing", expected="a cat", observed="none", message="m", box=(0.25, 0.5, 0.75, 1.0))
    state = RunState(prompt="a red cat", image=ref, critique=Critique(violations=(box,)))
    report = write_report(run_dir, state, passed=False).read_text(encoding="utf-8")
    assert report.count("data:image/png;base64,") == 1
    assert '<rect x="16.0" y="24.0" width="32.0" height="24.0"' in report


# ---------------------------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------------------------


def _verdict(run_dir: Path, state: RunState, passed: bool) -> str:
    """The header's verdict, as the reader sees it."""
    run_dir.mkdir(exist_ok=True)
    page = _Page(write_report(run_dir, state, passed=passed).read_text(encoding="utf-8"))
    verdict = re.search(r"Result: (.*?) · plan → draft", page.text)
    assert verdict is not None, "the report has no verdict line"
    return verdict.group(1)


_PLAN = Plan(steps=(PlanStep(instruction="i", description="d", entity_ids=()),) * 2)


def test_unjudged_constraints_are_named_next_to_the_verdict(tmp_path):
    scene = SceneGraph(
        prompt="a red cat in the style of Monet, at dusk",
        entities=(Entity(id="e0", noun="cat", colour="red"),),
        constraints=("in the style of Monet", "at dusk"),
    )
    state = RunState(
        prompt=scene.prompt, scene=scene, plan=_PLAN, step=1, critique=Critique(unjudged=scene.constraints)
    )
    expected = "passed what was judged · 2 part(s) of the prompt not judged: “in the style of Monet”; “at dusk”"
    # Whether or not the caller counts such a run as passed, the header says what was judged.
    assert _verdict(tmp_path / "a", state, passed=True) == expected
    assert _verdict(tmp_path / "b", state, passed=False) == expected
    text = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    assert "Free-text constraints" in text and "<li>at dusk</li>" in text


def test_each_way_a_run_ends_has_its_own_verdict(tmp_path):
    done = RunState(prompt="a cat", plan=_PLAN, step=1, critique=Critique())
    assert _verdict(tmp_path / "passed", done, passed=True) == "passed"
    stopped = done.model_copy(update={"stopped": True})
    assert _verdict(tmp_path / "stopped", stopped, passed=False) == "stopped in review"
    bad = Violation(kind="missing", expected="a cat", observed="nothing", message="no cat")
    left = done.model_copy(update={"critique": Critique(violations=(bad,), unjudged=("at dusk",))})
    expected_left = "violations left · 1 part(s) of the prompt not judged: “at dusk”"
    assert _verdict(tmp_path / "left", left, passed=False) == expected_left
    # Interrupted after step 1 of 2 was judged clean: that is not a pass.
    halfway = done.model_copy(update={"step": 0})
    assert _verdict(tmp_path / "halfway", halfway, passed=False) == "not finished"
    assert _verdict(tmp_path / "early", RunState(prompt="a cat"), passed=False) == "not finished"


# ---------------------------------------------------------------------------------------------
# In a real browser
# ---------------------------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _headless(profile: Path) -> list[str]:
    """The start of a headless Chromium command line with its own profile folder."""
    chromium = _chromium()
    assert chromium is not None, "the browser tests are skipped without Chromium"
    cmd = [chromium, "--headless", "--disable-gpu", f"--user-data-dir={profile}"]
    if os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return cmd


def _browser_dom(path: Path, profile: Path) -> _Page:
    """The DOM Chromium ends with after loading ``path`` and letting its scripts (if any) run."""
    cmd = [*_headless(profile), "--dump-dom", "--virtual-time-budget=2000", path.resolve().as_uri()]
    # A bound on the wait, not a speed check: a hung browser must fail the test, not hang the suite.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return _Page(done.stdout)


browser = pytest.mark.skipif(_chromium() is None, reason="no Chromium binary (apt-get install chromium-headless-shell)")

# Payloads that run when they land unescaped in a page's body: the harness must see each one.
_LIVE = [0, 1, 3, 5, 8]


@browser
@pytest.mark.parametrize("index", _LIVE)
def test_the_browser_harness_sees_a_payload_that_runs(tmp_path, index):
    page = tmp_path / "control.html"
    payload = PAYLOADS[index].format(n=0)
    page.write_text(f"<!doctype html><html><head><title>clean</title></head><body>{payload}</body></html>")
    assert _browser_dom(page, tmp_path / "profile").title == MARK


@browser
def test_the_policy_alone_stops_an_unescaped_payload(tmp_path):
    # Defence in depth: were an escape ever missed, the report's own <head> keeps the script from running.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    report = write_report(run_dir, RunState(prompt="clean"), passed=False).read_text(encoding="utf-8")
    head, _ = report.split("</head>", 1)
    page = tmp_path / "injected.html"
    page.write_text(head + "</head><body>" + "".join(PAYLOADS[i].format(n=i) for i in _LIVE) + "</body></html>")
    assert _browser_dom(page, tmp_path / "profile").title == "strokegraph: clean"


@browser
@pytest.mark.parametrize("build", [_hostile_state, _constructed_state])
def test_no_payload_runs_in_the_browser_and_each_shows_as_text(tmp_path, build):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    p = _Payloads()
    state = build(run_dir, p)
    dom = _browser_dom(write_report(run_dir, state, passed=False), tmp_path / "profile")
    assert dom.title == f"strokegraph: {state.prompt}"  # a payload that ran would have made it MARK
    tags = {tag for tag, _ in dom.elements}
    assert not tags & {"script", "img", "iframe", "a"}, tags
    assert not any(name.startswith("on") for _, attrs in dom.elements for name, _ in attrs)
    for text in p.shown:
        assert text in dom.text, text


@browser
def test_the_policy_lets_the_page_show_its_images_and_style(tmp_path):
    run_dir = tmp_path / "run"
    report = write_report(run_dir, _hostile_state(run_dir, _Payloads()), passed=False)
    shot = tmp_path / "shot.png"
    cmd = [*_headless(tmp_path / "profile"), "--hide-scrollbars", "--window-size=1200,1600"]
    cmd += [f"--screenshot={shot}", report.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        pixels = {colour: n for n, colour in rgb.getcolors(1 << 24)}
        corner = rgb.getpixel((5, 5))
    # The stylesheet applied (page background #fafafa, not the browser's white), and the red draft
    # and the blue refinement show at their size on the page (320 x 240 px each).
    assert corner == (250, 250, 250)
    assert pixels.get((255, 0, 0), 0) > 50_000 and pixels.get((0, 0, 255), 0) > 50_000
