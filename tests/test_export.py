"""strokegraph export and strokegraph data: the three kinds, the three formats, splits, untrusted runs."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from strokegraph.agents.critic import CritiqueRequest
from strokegraph.app.cli import main
from strokegraph.app.export import export_runs, split_of
from strokegraph.app.rows import perturb
from strokegraph.app.runner import generate
from strokegraph.app.runs import load_run
from strokegraph.errors import UsageError
from strokegraph.graph import Budget
from strokegraph.schema import Critique, Violation
from strokegraph.tools.sketch.truth import record_truth

pq = pytest.importorskip("pyarrow.parquet", reason="export needs pyarrow (the data extra)")


class _AlwaysFails:
    """A critic that finds the first entity missing in every image: the run can never pass."""

    def critique(self, request: CritiqueRequest) -> Critique:
        e = request.scene.entities[0]
        v = Violation(kind="missing", entity_ids=(e.id,), expected=e.noun, observed="none", message=f"no {e.noun}")
        return Critique(violations=(v,), judged_entity_ids=tuple(sorted(request.scope)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    generate("a red cup left of a blue book", out=root / "passed", seed=3)  # passes after two refines
    record_truth(root / "passed")
    generate("two green apples", out=root / "clean", settings={"drafter": {"fault_scale": 0.0}})
    generate("a photo of a bench", out=root / "geneval", seed=1)  # a GenEval prompt
    failed = generate(
        "a yellow kite above a dog", out=root / "failed", critic=_AlwaysFails(), budget=Budget(rounds_per_step=1)
    )
    assert not failed.passed
    return root


def _rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.glob("data/*/*/*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


@pytest.fixture(scope="module")
def obelics(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("x") / "obelics"
    export_runs([runs], out, "obelics")
    return out


def test_a_failed_run_gives_no_multiturn_positive_and_no_flawed_target(obelics):
    rows = _rows(obelics)
    multi = {r["prompt"]: r for r in rows if r["kind"] == "multiturn"}
    assert multi["a yellow kite above a dog"]["label"] == "negative"
    assert multi["a yellow kite above a dog"]["negative_source"] == "failed_run"
    assert multi["a red cup left of a blue book"]["label"] == "positive"
    for row in rows:
        meta = json.loads(row["metadata"])
        for i, (m, image) in enumerate(zip(meta, row["images"], strict=True)):
            if image is not None and m["loss"]:
                # A target: in a positive row, and the critique that follows it passed it.
                assert row["label"] == "positive"
                assert row["texts"][i + 1] == "<critique>no violations</critique>"
    failed = [r for r in rows if r["prompt"] == "a yellow kite above a dog"]
    assert failed and all(
        not m["loss"] for r in failed for m, im in zip(json.loads(r["metadata"]), r["images"], strict=True) if im
    )


def test_texts_and_images_align_and_boxes_are_in_thousandths(obelics):
    rows = _rows(obelics)
    for row in rows:
        assert len(row["texts"]) == len(row["images"]) == len(json.loads(row["metadata"]))
        assert all((t is None) != (i is None) for t, i in zip(row["texts"], row["images"], strict=True))
    boxes = [b for r in rows for t in r["texts"] if t for b in re.findall(r"\((\d+),(\d+)\),\((\d+),(\d+)\)", t)]
    assert boxes and all(0 <= int(v) < 1000 for b in boxes for v in b)
    floats = [v["box"] for r in rows for v in r["violations"] if v["box"] is not None]
    assert floats and all(0.0 <= x <= 1.0 for box in floats for x in box)


def test_perturbed_plans_really_differ(obelics, runs):
    rows = _rows(obelics)
    perturbed = [r for r in rows if r["negative_source"] == "perturbed_plan"]
    assert perturbed
    for p in perturbed:
        original = next(
            r
            for r in rows
            if (r["run_id"], r["step"], r["round"], r["kind"], r["label"])
            == (p["run_id"], p["step"], p["round"], "conflict", "positive")
        )
        assert p["texts"][0] != original["texts"][0]
        assert p["texts"][1:] == original["texts"][1:] or p["images"][1]["bytes"] == original["images"][1]["bytes"]
    run = load_run(runs / "passed")
    des = run.plan.steps[-1].description
    changed, violation = perturb(des, run, len(run.plan.steps) - 1, "k")
    assert changed != des and violation["expected"] in changed
    assert perturb("A plain scene.", run, 0, "k") is None


def test_benchmark_prompts_go_to_their_own_config(obelics):
    rows = _rows(obelics)
    bench = [r for r in rows if r["prompt"] == "a photo of a bench"]
    assert bench and all(r["benchmark"] == "geneval" for r in bench)
    for path in obelics.glob("data/*/*/*.parquet"):
        prompts = set(pq.read_table(path, columns=["prompt"]).column("prompt").to_pylist())
        assert ("a photo of a bench" in prompts) == path.parts[-3].endswith("-benchmark")
    assert "Contamination warning" in (obelics / "README.md").read_text()


def test_truth_labels_and_the_label_accuracy_table(obelics):
    rows = _rows(obelics)
    with_truth = [r for r in rows if r["prompt"] == "a red cup left of a blue book"]
    assert with_truth and all(r["truth_label"] in ("positive", "negative") for r in with_truth)
    assert all(r["truth_label"] is None for r in rows if r["prompt"] == "two green apples")
    card = (obelics / "README.md").read_text()
    assert "| kind | rows | with truth | label = truth |" in card


def test_no_prompt_is_in_two_splits(obelics):
    from strokegraph.bench.harness import geneval_prompts

    splits = {p.prompt: split_of(p.prompt) for p in geneval_prompts()}
    assert set(splits.values()) == {"train", "validation"}
    assert split_of("A Photo of  a bench") == split_of("a photo of a bench")
    seen: dict[str, set[str]] = {}
    for row in _rows(obelics):
        seen.setdefault(row["prompt"], set()).add(row["split"])
        assert row["split"] == split_of(row["prompt"])
    assert all(len(s) == 1 for s in seen.values())


def _run_card_snippets(out: Path) -> int:
    card = (out / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    cwd = os.getcwd()
    os.chdir(out)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    return len(blocks)


def test_datasets_opens_the_obelics_export(obelics):
    datasets = pytest.importorskip("datasets", reason="the obelics loading check needs datasets (the data extra)")
    ds = datasets.load_dataset("parquet", data_files=str(obelics / "data/conflict/*/*.parquet"), split="train")
    assert isinstance(ds.features["images"], datasets.List)
    assert isinstance(ds.features["images"].feature, datasets.Image)
    image = next(i for i in ds[0]["images"] if i is not None)
    assert image.size == (512, 512)
    assert _run_card_snippets(obelics) == 1


def test_every_bagel_row_decodes_per_the_published_contract(runs, tmp_path):
    from PIL import Image

    out = tmp_path / "bagel"
    export_runs([runs], out, "bagel")
    info = json.loads((out / "dataset_info.json").read_text())
    total = 0
    for entry in info.values():
        index = json.loads(Path(entry["parquet_info_path"]).read_text())
        assert len(index) == entry["num_files"]
        for path, meta in index.items():
            assert Path(path).parent == Path(entry["data_dir"]) and Path(path).is_file()
            shard = pq.ParquetFile(path)
            assert shard.num_row_groups == meta["num_row_groups"]
            for row in shard.read().to_pylist():
                total += 1
                turns = json.loads(row["conversation"])
                parts = []
                for turn in turns:
                    if turn["role"] == "user":
                        assert isinstance(turn["content"], str) and turn["content"] and turn["need_loss"] is False
                        parts.append(turn)
                        continue
                    assert turn["role"] == "assistant" and isinstance(turn["content"], list)
                    parts += turn["content"]
                for i, part in enumerate(parts):
                    if part.get("type") == "image":
                        flags = (part["need_loss"], part["need_vae"], part["need_vit"])
                        assert all(isinstance(f, bool) for f in flags) and any(flags)
                        Image.open(io.BytesIO(base64.b64decode(part["content"], validate=True))).verify()
                        if i < len(parts) - 1:  # later parts condition on it
                            assert part["need_vae"] and part["need_vit"]
                    elif part.get("type") == "text":
                        assert isinstance(part["content"], str) and part["content"]
                        assert isinstance(part["need_loss"], bool)
        assert entry["num_total_samples"] > 0
    assert total == sum(e["num_total_samples"] for e in info.values())
    assert _run_card_snippets(out) == 1


def test_trl_rows_have_trls_message_shape(runs, tmp_path):
    from PIL import Image

    out = tmp_path / "trl"
    export_runs([runs], out, "trl")
    rows = _rows(out)
    assert rows and {r["kind"] for r in rows} == {"conflict", "alignment"}
    for row in rows:
        images = 0
        for message in row["messages"]:
            assert message["role"] in ("system", "user", "assistant")
            for part in message["content"]:
                assert part["type"] in ("text", "image")
                if part["type"] == "text":
                    assert isinstance(part["text"], str) and part["text"]
                else:
                    images += 1
        assert images == len(row["images"])
        for image in row["images"]:
            Image.open(io.BytesIO(image["bytes"])).verify()
        assert row["messages"][-1]["role"] == "assistant"
    with pytest.raises(UsageError, match="critique kinds"):
        export_runs([runs], tmp_path / "t2", "trl", ["multiturn"])


def test_a_damaged_run_is_skipped_with_one_line(runs, tmp_path, capsys):
    bad = tmp_path / "in"
    shutil.copytree(runs / "passed", bad / "damaged")
    shutil.copytree(runs / "clean", bad / "ok")
    image = next((bad / "damaged" / "images").glob("*.png"))
    image.write_bytes(image.read_bytes()[:-8] + b"tampered")
    (bad / "foreign").mkdir()
    (bad / "foreign" / "trajectory.json").write_text('{"not": "ours"}')
    capsys.readouterr()
    assert main(["export", str(bad), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("strokegraph: skipped ") for line in err)
    assert "damaged" in err[0] and "sha256" in err[0] and "foreign" in err[1]
    assert {r["prompt"] for r in _rows(tmp_path / "out")} == {"two green apples"}


def test_bad_input_is_one_line_exit_2_and_nothing_written(runs, tmp_path, capsys):
    out = tmp_path / "out"
    cases = [
        ["export", str(runs), "--out", str(out), "--format", "webdataset"],
        ["export", str(runs), "--out", str(out), "--kinds", "multiturn,pairs"],
        ["export", str(tmp_path / "nowhere"), "--out", str(out)],
    ]
    nolimages = tmp_path / "noimages"
    shutil.copytree(runs / "clean", nolimages)
    shutil.rmtree(nolimages / "images")
    cases.append(["export", str(nolimages), "--out", str(out)])
    for argv in cases:
        capsys.readouterr()
        assert main(argv) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".*export-tmp"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["export", str(runs), "--out", str(tmp_path / "full")]) == 2
    (tmp_path / ".busy.export-tmp").mkdir()
    assert main(["export", str(runs), "--out", str(tmp_path / "busy")]) == 2
    assert "in use" in capsys.readouterr().err
    assert not (tmp_path / "busy").exists() and (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_identical_rows_are_written_once(runs, tmp_path):
    twice = tmp_path / "twice"
    shutil.copytree(runs / "clean", twice / "a")
    shutil.copytree(runs / "clean", twice / "b")
    result = export_runs([twice], tmp_path / "out", "obelics")
    assert result.runs == 2 and result.duplicates == sum(result.rows.values())


def test_data_draws_keeps_and_resumes(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a red cup", "seed": 7, "tag": "mine", "source": "user"}\ntwo blue books\n')
    out = tmp_path / "d"
    assert main(["data", str(prompts), "--out", str(out), "--seeds", "2", "-q", "--format", "trl"]) == 0
    assert "4 run(s) drawn, 0 resumed" in capsys.readouterr().out
    seeds = sorted(json.loads(p.read_text())["seed"] for p in out.glob("runs/*/source.json"))
    assert seeds == [0, 1, 7, 8]
    assert list(out.glob("runs/*/images/*.truth.json"))
    assert main(["data", str(prompts), "--out", str(out), "--seeds", "2", "-q", "--format", "trl"]) == 0
    assert "0 run(s) drawn, 4 resumed" in capsys.readouterr().out
    assert main(["export", str(out), "--out", str(tmp_path / "again"), "--format", "trl"]) == 0
    prompts.write_text('{"prompt": "a cup", "seed": -1}\n')
    assert main(["data", str(prompts), "--out", str(tmp_path / "e")]) == 2


class _AlwaysPasses:
    """A deliberately wrong critic: every image passes."""

    def critique(self, request: CritiqueRequest) -> Critique:
        return Critique(judged_entity_ids=tuple(sorted(request.scope)))


def test_an_image_the_truth_finds_flawed_is_never_a_target_and_the_card_says_so(tmp_path):
    run = generate(
        "a red cup left of a blue book",
        out=tmp_path / "runs" / "fooled",
        critic=_AlwaysPasses(),
        settings={"drafter": {"fault_scale": 5.0}},
    )
    assert run.passed  # the critic saw nothing wrong ...
    record_truth(run.run_dir)
    out = tmp_path / "x"
    export_runs([tmp_path / "runs"], out, "obelics")
    rows = _rows(out)
    multi = next(r for r in rows if r["kind"] == "multiturn")
    assert multi["label"] == "positive" and multi["truth_label"] == "negative"  # ... the truth did
    meta = json.loads(multi["metadata"])
    assert not any(m["loss"] for m, image in zip(meta, multi["images"], strict=True) if image is not None)
    # Its "no violations" on an image the truth finds flawed is not taught either.
    wrong = [
        m["loss"] for m, text in zip(meta, multi["texts"], strict=True) if text == "<critique>no violations</critique>"
    ]
    assert wrong and not all(wrong)
    card = (out / "README.md").read_text()
    assert re.search(r"\| multiturn \| 1 \| 1 \| 0 \| 1 \| 0\.000 \|", card)


def test_a_benchmark_kept_with_keep_runs_exports_with_its_backends(tmp_path):
    from strokegraph.bench import run_bench

    run_bench("geneval", out=tmp_path / "b", limit=1, keep_runs=True)
    out = tmp_path / "x"
    result = export_runs([tmp_path / "b"], out, "trl")
    assert result.runs == 12 and not result.skipped
    rows = _rows(out)
    assert {r["prompt_source"] for r in rows} == {"geneval"} and {r["drafter"] for r in rows} == {"builtin:sketch"}
    assert all(r["truth_label"] is not None for r in rows)  # bench --keep-runs records the truth
    assert _run_card_snippets(out) == 1


def test_a_changed_colour_keeps_its_article_right():
    from strokegraph.app.rows import _recolour

    assert _recolour("A red cup and a blue bird.", "red", "orange") == "An orange cup and a blue bird."
    assert _recolour("two red apples and an orange cup", "orange", "blue") == "two red apples and a blue cup"
    assert _recolour("Two red apples.", "red", "orange") == "Two orange apples."
