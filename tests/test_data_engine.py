"""``strokegraph data`` through the benchmark's executor: shards, failures, and Ray workers that draw the
dataset one process draws, the driver alone writing the output folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strokegraph.app.cli import main

pq = pytest.importorskip("pyarrow.parquet", reason="the dataset needs pyarrow (the data extra)")


def _prompts(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def _rows(out: Path) -> dict[str, dict]:
    """Every row of the dataset by id, with the file it is in."""
    rows = {}
    for path in sorted((out / "dataset").rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            assert row["id"] not in rows
            rows[row["id"]] = {**row, "file": path.relative_to(out).as_posix()}
    return rows


def _run_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "runs").rglob("*") if p.is_file()}


def test_shards_draw_their_runs_and_a_plain_rerun_exports_everything(tmp_path, capsys):
    prompts = _prompts(tmp_path, "a red cup", "two blue books")
    out = str(tmp_path / "d")
    args = ["data", prompts, "--out", out, "--seeds", "2", "-q"]
    assert main([*args, "--shard", "0/2"]) == 0
    printed = capsys.readouterr().out
    assert "2 run(s) drawn, 0 resumed, 0 failed (shard 0/2)" in printed and "no dataset written" in printed
    assert not (tmp_path / "d" / "dataset").exists()  # shards may run at once into one folder: none exports
    assert main([*args, "--shard", "1/2"]) == 0
    assert "2 run(s) drawn, 0 resumed, 0 failed (shard 1/2)" in capsys.readouterr().out
    seeds = sorted(
        (d["prompt"], d["seed"])
        for d in map(json.loads, map(Path.read_text, (tmp_path / "d").glob("runs/*/source.json")))
    )
    assert seeds == [("a red cup", 0), ("a red cup", 1), ("two blue books", 0), ("two blue books", 1)]

    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "0 run(s) drawn, 4 resumed, 0 failed," in printed and "from 4 run(s) (0 skipped" in printed


def test_a_failed_run_is_listed_and_exits_1_and_the_rest_is_exported(tmp_path, capsys):
    prompts = _prompts(tmp_path, "a red cup", "hello world")
    out = tmp_path / "d"
    assert main(["data", prompts, "--out", str(out), "-q"]) == 1
    captured = capsys.readouterr()
    assert "1 run(s) drawn, 0 resumed, 1 failed" in captured.out and "from 1 run(s)" in captured.out
    assert "strokegraph: failed: 'hello world' seed 0: prompt names no object to draw" in captured.err
    assert "1 run(s) failed (not exported)" in captured.err
    # A rerun draws again only what failed.
    assert main(["data", prompts, "--out", str(out), "-q"]) == 1
    assert "0 run(s) drawn, 1 resumed, 1 failed" in capsys.readouterr().out


def test_a_run_over_its_time_limit_fails_and_nothing_of_it_is_kept(tmp_path, capsys):
    prompts = _prompts(tmp_path, "a red cup")
    out = tmp_path / "d"
    assert main(["data", prompts, "--out", str(out), "-q", "--timeout-per-image", "1e-9"]) == 1
    assert "strokegraph: failed: 'a red cup' seed 0: timed out after 1e-09 s" in capsys.readouterr().err
    assert not any((out / "runs").iterdir()) and not (out / "dataset").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--workers", "2"], "need ray"), (["--gpus-per-worker", "1"], "need ray"), (["--planner", "nope:x"], "nope")],
)
def test_scale_out_flags_are_checked_before_anything_is_written(tmp_path, capsys, flags, message):
    out = tmp_path / "d"
    assert main(["data", _prompts(tmp_path, "a red cup"), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_ray_workers_draw_the_dataset_one_process_draws(ray_cluster, tmp_path, capsys):
    serial, ray = tmp_path / "serial", tmp_path / "ray"
    assert main(["data", "geneval", "--limit", "1", "--out", str(serial), "-q"]) == 0
    flags = ["--ray", ray_cluster, "--workers", "2", "--gpus-per-worker", "1"]
    assert main(["data", "geneval", "--limit", "1", "--out", str(ray), "-q", *flags]) == 0
    assert "6 run(s) drawn on 2 Ray node(s), 0 resumed, 0 failed" in capsys.readouterr().out

    # The driver wrote every file a run in this process writes; byte for byte but those that hold times
    # (the steps' durations; the report shows them; checkpoints are stamped), as two draws in one process.
    files, expected = _run_files(ray), _run_files(serial)
    assert files.keys() == expected.keys() and len(files) > 6 * 5
    timed = ("/trajectory.json", "/report.html", "/checkpoints.journal")
    assert all(files[k] == expected[k] for k in files if not k.endswith(timed))

    # The datasets match row for row by id: a row's id and its perturbation come from what a run made,
    # never from how long its steps took.
    rows = _rows(ray)
    assert rows == _rows(serial) and len(rows) > 6


def test_the_config_gives_the_roles_settings_budget_and_seed_as_for_generate(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("seed = 5\nmax_rounds = 1\n\n[drafter]\nfault_scale = 0.0\n")
    out = tmp_path / "d"
    assert main(["data", _prompts(tmp_path, "a red cup"), "--out", str(out), "-q", "--config", str(config)]) == 0
    (run,) = out.glob("runs/*/run.json")
    record = json.loads(run.read_text())
    assert record["seed"] == 5 and record["budget"]["max_rounds"] == 1
    assert record["settings"] == {"drafter": {"fault_scale": 0.0}}
    assert record["backends"]["drafter"] == "builtin:sketch"  # the id, not a built object's custom:


def test_two_draws_of_the_same_prompts_export_the_same_rows(tmp_path):
    # Row ids came from a digest of trajectory.json, durations and all, so no two draws agreed.
    prompts = _prompts(tmp_path, "a red cup", "two blue books")
    for name in ("one", "two"):
        assert main(["data", prompts, "--out", str(tmp_path / name), "-q"]) == 0
    rows = _rows(tmp_path / "one")
    assert rows == _rows(tmp_path / "two") and len(rows) > 2
