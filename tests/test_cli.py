"""The command line as a user runs it: outputs, exit codes, one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from strokegraph.app.cli import EXIT_BUDGET, EXIT_UNJUDGED, EXIT_USAGE, main
from strokegraph.schema import Critique

PROMPT = "two red apples to the left of a blue cup"


def test_generate_writes_image_trajectory_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["generate", PROMPT, "--out", str(out), "--seed", "3"])
    assert code in (0, EXIT_BUDGET)
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["prompt"] == PROMPT
    assert doc["passed"] == (code == 0)
    stages = [e["stage"] for e in doc["events"]]
    assert stages[0] == "plan" and stages.count("draft") == len(doc["plan"]["steps"]) == 2
    # Every image the run made is on disk, and final.png is the last one.
    for event in doc["events"]:
        if event["image"]:
            assert (out / event["image"]["path"]).is_file()
    last = [e["image"] for e in doc["events"] if e["image"]][-1]
    assert (out / "final.png").read_bytes() == (out / last["path"]).read_bytes()
    with Image.open(out / "final.png") as im:
        assert im.size == (512, 512)
    report = (out / "report.html").read_text()
    assert "Step 1 of 2" in report and "Step 2 of 2" in report and "data:image/png;base64," in report
    assert "&lt;ins&gt;" in report and "Final image" in report
    # Progress per stage went to stderr; the summary to stdout.
    captured = capsys.readouterr()
    assert "draft" in captured.err and "critique" in captured.err
    assert str(out / "final.png") in captured.out


def test_exact_drawing_passes_first_time(tmp_path):
    out = tmp_path / "run"
    assert main(["generate", PROMPT, "--out", str(out), "--faults", "0", "-q"]) == 0
    doc = json.loads((out / "trajectory.json").read_text())
    assert [e["stage"] for e in doc["events"]] == ["plan", "draft", "critique", "draft", "critique"]
    assert Critique.model_validate(doc["final_critique"]).passed


def test_budget_spent_with_violations_left_has_its_own_exit_code(tmp_path, capsys):
    out = tmp_path / "run"
    # Every fault at its highest rate and no refinement allowed: violations must remain.
    code = main(["generate", "a dog right of a teddy bear", "--out", str(out), "--faults", "3.33", "--max-rounds", "0"])
    assert code == EXIT_BUDGET
    assert "violation(s) left" in capsys.readouterr().out
    doc = json.loads((out / "trajectory.json").read_text())
    assert not doc["passed"] and doc["final_critique"]["violations"]
    assert (out / "final.png").is_file() and (out / "report.html").is_file()


def test_single_pass(tmp_path):
    out = tmp_path / "run"
    main(["generate", PROMPT, "--out", str(out), "--single-pass", "-q"])
    doc = json.loads((out / "trajectory.json").read_text())
    assert len(doc["plan"]["steps"]) == 1
    assert [e["stage"] for e in doc["events"]] == ["plan", "draft", "critique"]


def test_default_out_dir_is_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a cat", "-q", "--faults", "0"]) == 0
    assert main(["generate", "a cat", "-q", "--faults", "0"]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(name.endswith("a-cat") or name.endswith("a-cat-2") for name in runs)


def test_plan_json_matches_the_scene(capsys):
    assert main(["plan", PROMPT, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    entities = {e["noun"]: e for e in doc["scene"]["entities"]}
    assert entities["apple"]["count"] == 2 and entities["apple"]["colour"] == "red"
    assert entities["cup"]["colour"] == "blue"
    assert doc["scene"]["relations"] == [
        {"subject": entities["apple"]["id"], "predicate": "left of", "object": entities["cup"]["id"]}
    ]
    # The anchor (the cup) is drawn first.
    assert doc["plan"]["steps"][0]["entity_ids"] == [entities["cup"]["id"]]
    assert doc["unjudged"] == []


def test_plan_says_what_a_run_would_not_judge(capsys):
    prompt = "a big blue bus behind a red truck, a man riding a horse"
    assert main(["plan", prompt]) == 0
    lines = capsys.readouterr().out.splitlines()
    # As generate says it on stderr after a run, before any run: the same words, one part a line.
    assert lines[-3:] == [
        "not judged: a man riding a horse",
        "not judged: the bus behind the truck",
        "not judged: big bus",
    ]
    assert main(["plan", prompt, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unjudged"] == [line[len("not judged: ") :] for line in lines[-3:]]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", ""], "prompt is empty"),
        (["generate", "   "], "prompt is empty"),
        (["generate", "!!!"], "prompt"),
        (["plan", "red and blue"], "prompt"),
        (["generate", "a cat", "--drafter", "builtin:skech"], "did you mean 'builtin:sketch'"),
        (["generate", "a cat", "--critic", "nonsense"], "unknown critic id"),
        (["generate", "a cat", "--max-rounds", "-1"], "--max-rounds"),
        (["generate", "a cat", "--faults", "5"], "--faults"),
        # Not a number: the message says what the flag takes, never the name of a function in cli.py.
        (["generate", "a cat", "--seed", "abc"], "--seed: must be a whole number, got 'abc'"),
        (["generate", "a cat", "--rounds-per-step", "1.5"], "--rounds-per-step: must be a whole number"),
        (["generate", "a cat", "--faults", "lots"], "--faults: must be a number, got 'lots'"),
        (["bench", "geneval", "--limit", "x"], "--limit: must be a whole number"),
        (["bench", "geneval", "--ray", "local", "--gpus-per-worker", "one"], "--gpus-per-worker: must be a number"),
        # The help to read is the command's own, or the program's when no command was recognised.
        (["bench", "geneval", "--tags", "x"], "unrecognized arguments: --tags x (see 'strokegraph bench --help')"),
        (["draw", "a cat"], "invalid choice: 'draw'"),
        (["draw", "a cat"], "(see 'strokegraph --help')"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def cli(argv) -> int:
    """Run the CLI in-process; argument errors exit through argparse, the rest return."""
    try:
        return main(argv)
    except SystemExit as exc:
        assert isinstance(exc.code, int), exc.code  # argparse exits with a number
        return exc.code


def test_unwritable_and_occupied_out_dirs(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["generate", "a cat", "--out", str(blocker / "run")]) == EXIT_USAGE
    assert "cannot write to output directory" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("precious")
    assert main(["generate", "a cat", "--out", str(occupied)]) == EXIT_USAGE
    assert "already exists" in capsys.readouterr().err
    assert (occupied / "keep.txt").read_text() == "precious"


@pytest.mark.slow
def test_console_entry_point_runs_as_a_module(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "strokegraph", "generate", "a blue cup", "--out", str(tmp_path / "r"), "--faults", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(tmp_path / "r" / "final.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "strokegraph", "generate", ""], capture_output=True, text=True)
    assert bad.returncode == EXIT_USAGE and "Traceback" not in bad.stderr


def test_codebook_sheet(tmp_path):
    out = tmp_path / "codebook.png"
    assert main(["codebook", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.width == 10 * 112 and im.height == 10 * 112  # 91 nouns, 10 per row
    assert main(["codebook", "dragon", "cup", "--out", str(tmp_path / "two.png")]) == 0
    assert cli(["codebook", "--out", str(tmp_path / "missing" / "x.png")]) == EXIT_USAGE


def _config(tmp_path, text: str) -> str:
    path = tmp_path / "strokegraph.toml"
    path.write_text(text)
    return str(path)


def test_config_file_sets_ids_settings_and_options(tmp_path):
    config = _config(
        tmp_path,
        'seed = 4\nrounds_per_step = 1\n[drafter]\nid = "builtin:sketch"\nfault_scale = 0\n'
        "[refiner]\nfault_scale = 0\n",
    )
    out = tmp_path / "run"
    assert main(["generate", PROMPT, "--out", str(out), "--config", config, "-q"]) == 0
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["budget"]["rounds_per_step"] == 1
    assert [e["stage"] for e in doc["events"]] == ["plan", "draft", "critique", "draft", "critique"]


def test_flags_override_the_config_file(tmp_path):
    config = _config(tmp_path, "max_rounds = 5\n[drafter]\nfault_scale = 0\n")
    out = tmp_path / "run"
    main(["generate", PROMPT, "--out", str(out), "--config", config, "--max-rounds", "2", "-q"])
    assert json.loads((out / "trajectory.json").read_text())["budget"]["max_rounds"] == 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("colour = 'red'\n", "colour: unknown key"),
        ("max_rounds = -1\n", "max_rounds"),
        ("[drafter]\nsteps = 4\n", "unknown setting(s) 'steps' for drafter 'builtin:sketch'; valid: fault_scale, size"),
        ("[painter]\nid = 'x'\n", "painter: unknown key"),
        ("seed = [\n", "not valid TOML"),
        ("[critic]\nid = 'builtin:pixel'\n", "did you mean 'builtin:pixels'"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, text, needle):
    assert main(["generate", "a cat", "--config", _config(tmp_path, text), "--out", str(tmp_path / "r")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["generate", "a cat", "--config", str(tmp_path / "nope.toml")]) == EXIT_USAGE
    assert "cannot read config" in capsys.readouterr().err


def test_a_prompt_with_unjudged_parts_never_exits_as_a_plain_pass(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["generate", "a dog in front of a house", "--out", str(out), "--faults", "0"]) == EXIT_UNJUDGED
    captured = capsys.readouterr()
    # The verdict, then the image: the path must not read as the part that was not judged.
    verdict = "passed what was judged (1 part(s) of the prompt not judged)"
    assert captured.out.startswith(f"{verdict}: {out / 'final.png'}\n")
    assert "not judged: the dog in front of the house" in captured.err
    doc = json.loads((out / "trajectory.json").read_text())
    assert doc["final_critique"]["unjudged"] == ["the dog in front of the house"]


def test_strict_refuses_unjudged_parts_after_planning(tmp_path, capsys):
    from strokegraph.app.runner import generate
    from strokegraph.errors import UsageError

    out = tmp_path / "r"
    assert main(["generate", "a dog in front of a house", "--out", str(out), "--strict", "-q"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--strict" in err and "the dog in front of the house" in err
    assert not list((out / "images").glob("*.png"))  # nothing drawn
    with pytest.raises(UsageError, match="would not be judged"):
        generate("a dog in front of a house", out=tmp_path / "r2", strict=True)
    # A prompt that is judged whole runs as usual under --strict.
    assert main(["generate", "a red cat below a blue kite", "--out", str(tmp_path / "r3"), "--strict", "-q"]) == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_shows_each_stage_from_its_start_with_a_bar_while_sampling():
    from strokegraph.app.cli import _Display

    term = _Terminal()
    display = _Display(term)
    display({"kind": "start", "stage": "draft", "step": 0, "round": 0, "message": "", "duration_s": 0.0})
    display({"kind": "progress", "stage": "draft", "step": 3, "total": 8})
    assert display._bars is not None
    (task,) = display._bars.tasks
    assert task.description == "draft step 1" and (task.completed, task.total) == (3, 8)  # a bar with time left
    display({"kind": "end", "stage": "draft", "step": 0, "round": 0, "message": "images/step01-draft.png"})
    assert not display._bars.tasks  # the stage's live row goes, its line stays
    display.close()
    out = term.getvalue()
    assert "draft step 1" in out and "3/8" in out  # drawn while it sampled
    assert "draft    step 1           images/step01-draft.png" in out


def test_progress_off_a_terminal_is_plain_lines():
    from strokegraph.app.cli import _Display

    log = io.StringIO()
    display = _Display(log)
    display({"kind": "start", "stage": "critique", "step": 0, "round": 0, "message": "", "duration_s": 0.0})
    display({"kind": "end", "stage": "critique", "step": 0, "round": 0, "message": "no violations"})
    display.close()
    assert display._bars is None
    (line,) = log.getvalue().splitlines()
    assert line.endswith("critique step 1           no violations") and "\x1b" not in line


def test_the_summary_prints_a_hostile_run_directory_name_made_safe(tmp_path, capsys):
    out = tmp_path / "run\x1b]0;owned\x07\u202e"
    assert main(["generate", "a red cat", "--out", str(out), "-q"]) in (0, 3, 4)
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed
    assert printed.count("report: ") == 1


def test_a_reader_that_leaves_early_gets_no_error_line(tmp_path):
    # `strokegraph presets | head -1` printed "strokegraph: run failed: Broken pipe" (exit 1).
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "strokegraph", "backends"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""
