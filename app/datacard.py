"""The data card (``README.md``) of an export: YAML configs, counts, provenance, label accuracy, loading.

The YAML header follows the Hub's dataset-card ``configs`` (``config_name``, ``data_files`` with
``split`` and ``path``), which ``datasets.load_dataset(folder, name)`` reads. Every ```` ```python ````
block of the card runs as it is from the dataset's folder (the tests run them).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from strokegraph.app.rows import Kind

if TYPE_CHECKING:
    from strokegraph.app.export import ExportResult
    from strokegraph.app.formats import Format

__all__ = ["LICENCES", "write_card"]

#: Where each prompt source's prompts come from, and under what licence.
LICENCES = {
    "geneval": "GenEval prompts (github.com/djghosh13/geneval), MIT licence",
    "t2i-compbench": "T2I-CompBench prompts (github.com/Karine-Huang/T2I-CompBench), MIT licence",
    "user": "prompts given by the person who drew the runs; their licence is theirs to state",
}


def _yaml(result: ExportResult) -> str:
    lines = ["---", "configs:"]
    for config, files in sorted(result.files.items()):
        lines += [f"- config_name: {config}", "  data_files:"]
        for split in sorted({f[0] for f in files}, key=lambda s: s != "train"):
            lines += [f"  - split: {split}", f"    path: data/{config}/{split}/*.parquet"]
    return "\n".join([*lines, "---", ""])


def _counts(result: ExportResult) -> str:
    table: dict[tuple[str, str, str, str], Counter] = {}
    for (config, split, kind, label, source), n in result.rows.items():
        table.setdefault((config, kind, label, source), Counter())[split] += n
    lines = ["| config | kind | label | negative source | train | validation |", "|---|---|---|---|---|---|"]
    for (config, kind, label, source), by_split in sorted(table.items()):
        lines.append(f"| {config} | {kind} | {label} | {source} | {by_split['train']} | {by_split['validation']} |")
    return "\n".join(lines)


def _accuracy(result: ExportResult, kinds: tuple[Kind, ...]) -> str:
    if not any(result.truth[(k, t)] for k in kinds for t in ("agree", "disagree")):
        critics = sorted({b.split(" ", 1)[1] for b in result.backends if b.startswith("critic ")})
        return (
            "No image has a recorded truth: labels are the critic's judgement of unknown precision, "
            f"critic = {', '.join(critics) or 'unknown'}."
        )
    lines = [
        "Labels are the critic's judgement. Where the sketch world recorded what it really drew "
        "(`images/<name>.truth.json`), each row also has `truth_label`, the same judgement made on the true "
        "instances; this table compares the two.",
        "",
        "| kind | rows | with truth | label = truth | label ≠ truth | label accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        agree, disagree, unknown = (result.truth[(kind, t)] for t in ("agree", "disagree", "unknown"))
        known = agree + disagree
        acc = f"{agree / known:.3f}" if known else "—"
        lines.append(f"| {kind} | {known + unknown} | {known} | {agree} | {disagree} | {acc} |")
    return "\n".join(lines)


def _loading(fmt: Format, result: ExportResult) -> str:
    configs = sorted(result.files)
    config = configs[0]
    split = sorted({f[0] for f in result.files[config]}, key=lambda s: s != "train")[0]
    pattern = f"data/{config}/{split}/*.parquet"
    if fmt == "bagel":
        name = f"{config}-{split}"
        return f"""Each shard has a `conversation` column as the interleaved datasets built on BAGEL read it
(Osilly/Interleaving-Reasoning-Generation, `SFT/data/interleave_datasets/multi_think_interleave_t2i_dataset.py`),
with the image parts base64 PNGs. `dataset_info.json` holds one entry per config and split in the shape of
`DATASET_INFO` (`data_dir`, `num_files`, `num_total_samples`, `parquet_info_path`), and `parquet_info/`
the `{{shard path: {{"num_row_groups": N}}}}` files it names. Paths are absolute to where the export was
written: move the folder, export again. Register an entry under a `MultiThinkInterleaveT2IDataset` key of
`DATASET_REGISTRY` (e.g. `initial_full_learning`).

```python
import base64, io, json
import pyarrow.parquet as pq
from PIL import Image

entry = json.load(open("dataset_info.json"))["{name}"]
index = json.load(open(entry["parquet_info_path"]))
for path, meta in index.items():
    shard = pq.ParquetFile(path)
    assert shard.num_row_groups == meta["num_row_groups"]
    turns = json.loads(shard.read_row_group(0).column("conversation")[0].as_py())
    for part in (p for t in turns if t["role"] == "assistant" for p in t["content"]):
        if part["type"] == "image":
            Image.open(io.BytesIO(base64.b64decode(part["content"]))).load()
```
"""
    if fmt == "obelics":
        return f"""OBELICS's layout: `texts` and `images` of equal length, one of them set per position,
`metadata` (JSON, aligned: role, loss, condition) and `general_metadata` (JSON). `images` is a
`datasets` `List(Image())`.

```python
import os

from datasets import load_dataset

ds = load_dataset("parquet", data_files={{"{split}": "{pattern}"}}, split="{split}")
row = ds[0]
assert len(row["texts"]) == len(row["images"])
# By the configs of this card's YAML header (the folder's own path; "." has no name to build from):
by_config = load_dataset(os.path.abspath("."), "{config}", split="{split}")
```
"""
    return f"""TRL's conversational vision layout: `messages` (`role`, `content` of `{{"type": "text", "text"}}` and
`{{"type": "image"}}` parts) and `images`, in the order of the image parts; pass it to TRL's `SFTTrainer`.

```python
from datasets import load_dataset

ds = load_dataset("parquet", data_files={{"{split}": "{pattern}"}}, split="{split}")
example = ds[0]
n_images = sum(part["type"] == "image" for m in example["messages"] for part in m["content"])
assert n_images == len(example["images"])
```
"""


def write_card(tmp: Path, out: Path, fmt: Format, kinds: tuple[Kind, ...], result: ExportResult) -> None:
    """Write ``README.md`` (the card) and ``stats.json`` into ``tmp``, the export's folder before its rename."""
    seeds = sorted(result.seeds)
    seed_text = f"{len(seeds)} distinct, {seeds[0]}..{seeds[-1]}" if seeds else "none"
    sources = "\n".join(f"- `{s}` ({n} run(s)): {LICENCES.get(s, 'unknown source')}" for s, n in result.sources.items())
    backends = "\n".join(f"- {b}: {n} run(s)" for b, n in sorted(result.backends.items()))
    warning = ""
    if any(c.endswith("-benchmark") for c in result.files):
        warning = (
            "\n> **Contamination warning.** The `*-benchmark` configs hold rows whose prompt is a GenEval or "
            "T2I-CompBench prompt. Training on them and then reporting those benchmarks measures memory, not skill: "
            "keep them out of training for any model you evaluate there.\n"
        )
    card = f"""{_yaml(result)}
# strokegraph trajectories ({fmt})

Process-driven image generation data (plan, draft, inspect, refine), exported by `strokegraph export`
from {result.runs} finished run(s) ({len(result.skipped)} skipped, {result.duplicates} duplicate row(s) dropped).
Kinds: {", ".join(kinds)}. Splits by a hash of the prompt: no prompt is in both train and validation.
Boxes appear in text as integers in [0, 1000) `(x1,y1),(x2,y2)` and as floats in the `violations` column.
{warning}
## Counts

{_counts(result)}

## Label accuracy

{_accuracy(result, kinds)}

## Provenance

Backends:
{backends}

Seeds: {seed_text}.

Prompt sources:
{sources}

## Loading

{_loading(fmt, result)}"""
    (tmp / "README.md").write_text(card, encoding="utf-8")
    stats = {
        "format": fmt,
        "kinds": list(kinds),
        "runs": result.runs,
        "skipped": [{"run_dir": d, "reason": r} for d, r in result.skipped],
        "duplicates": result.duplicates,
        "rows": [
            {"config": c, "split": s, "kind": k, "label": lab, "negative_source": n, "rows": v}
            for (c, s, k, lab, n), v in sorted(result.rows.items())
        ],
    }
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
