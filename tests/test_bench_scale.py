"""The benchmark scaled out: shards without Ray, and Ray actors on a 2-node local cluster, each drawing
what a run in one process draws; and the scale-out options checked before anything runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from strokegraph.agents.critic import DetectorCritic
from strokegraph.app.cli import main
from strokegraph.bench import geneval_prompts, harness, run_bench
from strokegraph.bench.executor import Drawn, Job
from strokegraph.errors import RunError, UsageError
from strokegraph.tools.sketch.pixels import PixelDetector

# What may differ between two runs of the same images: times, and the memory of whichever process drew.
TIMINGS = {"wall_s", "judge_s", "peak_rss_mib"}
MODE_TIMINGS = {"wall_s_per_image", "judge_s_per_image", "peak_rss_mib"}


def _records(out: Path) -> dict[str, dict]:
    return {
        p.parent.relative_to(out).as_posix(): {k: v for k, v in json.loads(p.read_text()).items() if k not in TIMINGS}
        for p in out.rglob("record.json")
    }


def _images(out: Path) -> dict[str, bytes]:
    return {p.parent.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("final.png")}


def _files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith("results")}


def _modes(summary: dict) -> dict:
    return {mode: {k: v for k, v in m.items() if k not in MODE_TIMINGS} for mode, m in summary["modes"].items()}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Path:
    """GenEval's first 2 prompts of each tag, drawn in this process: what every other way must draw."""
    out = tmp_path_factory.mktemp("serial") / "bench"
    run_bench("geneval", out=out, limit=2)
    return out


@pytest.mark.slow
def test_shards_together_draw_what_one_run_draws(serial, tmp_path):
    out = tmp_path / "bench"
    first = run_bench("geneval", out=out, limit=2, shard=(0, 2))
    assert (first.generated, first.resumed) == (12, 0)
    summary = json.loads((out / "results.json").read_text())
    assert summary["shard"] == {"index": 0, "count": 2, "images": 12}
    assert sum(m["images"] for m in summary["modes"].values()) == 12  # its results cover its shard only
    assert "Shard 0/2: these results cover 12 image(s)" in (out / "results.md").read_text()
    # Job n of the full run's order is shard n % 2's: the first job (single pass, first prompt) is shard 0's.
    assert (out / "single_pass" / "single_object" / "0-0" / "record.json").is_file()
    assert not (out / "single_pass" / "single_object" / "1-0").exists()

    second = run_bench("geneval", out=out, limit=2, shard=(1, 2))
    assert (second.generated, second.resumed) == (12, 0)  # the other shard's records are not its own
    assert _records(out) == _records(serial) and _images(out) == _images(serial)

    # A run without a shard over the same directory finds everything done and summarises it all.
    whole = run_bench("geneval", out=out, limit=2)
    assert (whole.generated, whole.resumed) == (0, 24)
    assert whole.summary["shard"] is None
    assert _modes(whole.summary) == _modes(json.loads((serial / "results.json").read_text()))


@pytest.mark.slow
def test_a_shard_rerun_without_shard_draws_the_rest(tmp_path):
    out = tmp_path / "bench"
    run_bench("geneval", out=out, limit=1, shard=(2, 3))
    rest = run_bench("geneval", out=out, limit=1)
    assert (rest.generated, rest.resumed) == (8, 4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 2}, "need ray"),
        ({"gpus_per_worker": 1}, "need ray"),
        ({"ray": "local", "workers": 0}, "workers must be 1 or more"),
        ({"ray": "local", "gpus_per_worker": -1}, "gpus_per_worker must be 0 or more"),
        ({"ray": "local", "gpus_per_worker": float("nan")}, "gpus_per_worker must be 0 or more"),
        ({"shard": (2, 2)}, "shard must be I/N"),
        ({"shard": (0, 0)}, "shard must be I/N"),
        ({"ray": "local", "critic": DetectorCritic(PixelDetector())}, "critic is an object"),
    ],
)
def test_scale_options_are_checked_before_anything_runs(tmp_path, options, message):
    with pytest.raises(UsageError, match=message):
        run_bench("geneval", out=tmp_path / "bench", limit=1, **options)
    assert not (tmp_path / "bench").exists()


def test_ray_not_installed_is_a_usage_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(UsageError, match=r"pip install 'strokegraph\[ray\]'"):
        run_bench("geneval", out=tmp_path / "bench", limit=1, ray="local")
    assert not (tmp_path / "bench").exists()


def test_a_ray_address_where_nothing_answers_is_a_usage_error(tmp_path, closed_port):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'strokegraph[ray]')")
    with pytest.raises(UsageError, match=f"cannot reach Ray at '127.0.0.1:{closed_port}'"):
        run_bench("geneval", out=tmp_path / "bench", limit=1, ray=f"127.0.0.1:{closed_port}")
    assert not (tmp_path / "bench").exists()


@pytest.mark.slow
def test_cli_bench_shards_then_completes(tmp_path, capsys):
    out = str(tmp_path / "bench")
    assert main(["bench", "geneval", "--limit", "1", "--out", out, "--shard", "1/2", "-q"]) == 0
    assert "6 image(s) drawn, 0 resumed (shard 1/2)" in capsys.readouterr().out
    assert main(["bench", "geneval", "--limit", "1", "--out", out, "-q"]) == 0
    assert "6 image(s) drawn, 6 resumed," in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shard", "2/2"], "must be I/N with 0 <= I < N"),
        (["--shard", "x"], "must be I/N with 0 <= I < N"),
        (["--gpus-per-worker", "nan"], "must be from 0 to 64"),
    ],
)
def test_cli_bench_refuses_bad_scale_out_flags(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as raised:
        main(["bench", "geneval", "--out", str(tmp_path / "b"), *flags])
    assert raised.value.code == 2 and message in capsys.readouterr().err
    assert main(["bench", "geneval", "--out", str(tmp_path / "b"), "--workers", "2"]) == 2
    assert "need ray" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("name", ["../escape.png", "/tmp/abs.png", "a/b/c.png", "images/../x", "record.json", ""])
def test_a_workers_file_names_stay_in_its_run_directory(tmp_path, name):
    item = geneval_prompts(1)[0]
    job = Job(item, "loop", 0, "all")
    record = {"mode": "loop", "tag": item.tag, "index": item.index, "image_index": 0}
    with pytest.raises(RunError, match="a worker sent a file named"):
        harness._write(tmp_path / "bench", Drawn(job, record, {"final.png": b"ok", name: b"x"}, "node"), "geneval")
    assert not (tmp_path / "bench").exists() and not (tmp_path / "escape.png").exists()


def test_a_workers_kept_files_are_written_and_the_record_last(tmp_path):
    item = geneval_prompts(1)[0]
    job = Job(item, "loop", 0, "all")
    record = {"mode": "loop", "tag": item.tag, "index": item.index, "image_index": 0}
    files = {"final.png": b"png", "images/step01-draft.png": b"draft", ".lock": b""}
    written = harness._write(tmp_path / "bench", Drawn(job, record, files, "node"), "geneval")
    run_dir = tmp_path / "bench" / "loop" / item.tag / f"{item.index}-0"
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()) == [
        ".lock",
        "final.png",
        "images/step01-draft.png",
        "record.json",
    ]
    assert json.loads((run_dir / "record.json").read_text()) == written == {**record, "benchmark": "geneval"}


@pytest.mark.slow
def test_ray_workers_on_two_nodes_draw_what_one_process_draws(ray_cluster, serial, tmp_path):
    out = tmp_path / "bench"
    result = run_bench("geneval", out=out, limit=2, ray=ray_cluster, workers=2, gpus_per_worker=1)
    assert (result.generated, result.resumed) == (24, 0)
    assert len(result.nodes) == 2 and sum(result.nodes.values()) == 24  # both nodes drew
    assert _records(out) == _records(serial)  # field for field, but for timings and memory
    assert _images(out) == _images(serial) and len(_images(out)) == 24  # every image is a sample here
    assert _files(out) == _files(serial)  # the driver wrote what a run in one process keeps, nothing else
    summary = json.loads((out / "results.json").read_text())
    assert summary["executor"] == {"ray": True, "workers": 2, "gpus_per_worker": 1, "nodes": 2}
    assert _modes(summary) == _modes(json.loads((serial / "results.json").read_text()))
    # The page lists the prompts where the modes differ in the run's order, whatever order the workers
    # finished in.
    assert _figures(out) == _figures(serial)

    again = run_bench("geneval", out=out, limit=2, ray=ray_cluster, workers=2)
    assert (again.generated, again.resumed, again.nodes) == (0, 24, {})


def _figures(out: Path) -> str:
    """The prompts where the modes differ on a results page, with their images (what follows its charts,
    whose timings differ from run to run)."""
    page = (out / "results.html").read_text()
    return page[page.index("<h2>Where the modes differ</h2>") :]


@pytest.mark.slow
def test_ray_keeps_every_file_a_run_in_one_process_keeps(ray_cluster, tmp_path):
    serial = run_bench("geneval", out=tmp_path / "serial", limit=1, keep_runs=True).out
    ray = run_bench("geneval", out=tmp_path / "ray", limit=1, keep_runs=True, ray=ray_cluster, workers=2)
    assert _files(ray.out) == _files(serial)
    assert any(name.endswith("images/step01-draft.png") for name in _files(serial))
    assert _records(ray.out) == _records(serial)


@pytest.mark.slow  # for its cluster
def test_more_gpus_than_the_cluster_has_is_refused_before_anything_runs(ray_cluster, tmp_path):
    with pytest.raises(UsageError, match=r"room for 0 worker\(s\) of 1 CPU and 2 GPU, not 1"):
        run_bench("geneval", out=tmp_path / "bench", limit=1, ray=ray_cluster, gpus_per_worker=2)
    with pytest.raises(UsageError, match=r"room for 2 worker\(s\) of 1 CPU and 1 GPU, not 3"):
        run_bench("geneval", out=tmp_path / "bench", limit=1, ray=ray_cluster, workers=3, gpus_per_worker=1)
    assert not (tmp_path / "bench").exists()


@pytest.mark.slow
def test_ray_replaces_dead_and_stuck_workers_and_records_what_keeps_failing(ray_cluster, tmp_path):
    """One worker, a planner on a loopback server that, while a worker waits on it, kills that worker's
    process (for two clocks every time, for the fire hydrant once) or never answers (the teddy bear, once)."""
    psutil = pytest.importorskip("psutil")
    from strokegraph.testing.openai_server import FakeOpenAI, Reply, any_prompt_replies

    answer = any_prompt_replies()["chat/completions"]
    asked: list[str] = []

    def kill_drawing_workers() -> None:
        # Only this test's own Ray cluster (its processes descend from this one), only a worker drawing.
        for process in psutil.Process().children(recursive=True):
            try:
                if " ".join(process.cmdline()).startswith("ray::Worker.draw"):
                    process.kill()
            except psutil.Error:
                pass

    def planner(request):
        prompt = next(p for p in ("two clocks", "fire hydrant", "teddy bear", "") if p in json.dumps(request.json))
        asked.append(prompt)
        if prompt == "two clocks" or (prompt == "fire hydrant" and asked.count(prompt) == 1):
            kill_drawing_workers()
        if prompt == "teddy bear" and asked.count(prompt) == 1:
            return Reply(delay=120)
        return answer(request)

    out = tmp_path / "bench"
    with FakeOpenAI(fallback={"chat/completions": planner}) as server:
        options = {
            "limit": 1,
            "planner": "openai:gpt-4.1-mini",
            "settings": {"planner": {"base_url": server.url, "max_retries": 0}},
        }
        result = run_bench("geneval", out=out, **options, ray=ray_cluster, workers=1, timeout_per_image=4)
        assert result.generated == 12
        errors = {(e["mode"], e["tag"]): e["error"] for e in result.summary["errors"]["images"]}
        assert errors.keys() == {("single_pass", "counting"), ("loop", "counting"), ("single_pass", "position")}
        assert errors["single_pass", "counting"].startswith("2 Ray workers died drawing it, the last: ")
        assert errors["single_pass", "position"] == "timed out after 4 s"
        assert asked.count("two clocks") == 4 and asked.count("fire hydrant") == 3  # tried twice per mode; once more
        hydrant = json.loads((out / "single_pass" / "colors" / "259-0" / "record.json").read_text())
        assert hydrant["error"] is None and hydrant["image"] == "final.png"

        # A rerun (here in this process, where nothing kills a worker) draws the three again, and only them.
        again = run_bench("geneval", out=out, **options)
        assert (again.generated, again.resumed, again.summary["errors"]["count"]) == (3, 9, 0)


@pytest.mark.slow  # for its cluster
def test_a_ray_worker_that_cannot_start_stops_the_bench_with_its_reason(ray_cluster, tmp_path):
    # A setting only building the backend can refuse: in this process it is refused before anything runs.
    settings = {"planner": {"base_url": "http://127.0.0.1:9/v1", "timeout": -1}}
    with pytest.raises(RunError, match=r"a Ray worker could not start: .*timeout must be a number of seconds"):
        run_bench("geneval", out=tmp_path / "bench", limit=1, planner="openai:x", settings=settings, ray=ray_cluster)
