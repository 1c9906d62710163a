"""``strokegraph export``: finished runs to a sharded, split, deduplicated dataset with its card.

Streams: one run is read at a time, rows go to one parquet writer per (config, split) in row groups
of :data:`ROW_GROUP` rows and shards of at most :data:`SHARD_ROWS`, so memory does not grow with
the number of runs. Images go in as PNG bytes, never paths.

- **Splits** by a hash of the prompt: every row of a prompt is in one split, so no prompt is in both
  train and validation.
- **Configs**: one per kind; rows whose prompt is a benchmark's (GenEval, T2I-CompBench) go to
  ``<kind>-benchmark`` instead, with a contamination warning in the card.
- **Dedup**: a row whose content (kind, label, texts, images) was written already is dropped.
- Everything is written to a temporary folder beside ``out`` and renamed at the end, so an export
  that fails leaves nothing half-written; a run that cannot be read is skipped with one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strokegraph.app.formats import FORMATS, Format, features, render
from strokegraph.app.rows import KINDS, Kind, Row, rows_for
from strokegraph.app.runs import RunData, Skipped, find_runs, load_run
from strokegraph.errors import UsageError
from strokegraph.registry import ROLES

__all__ = [
    "FORMATS",
    "KINDS",
    "ROW_GROUP",
    "SHARD_ROWS",
    "ExportResult",
    "benchmark_prompts",
    "export_runs",
    "split_of",
]

#: Rows per parquet row group (BAGEL's loader reads one row group at a time).
ROW_GROUP = 32
#: Rows per shard file.
SHARD_ROWS = 2048
#: Share of prompts (by hash) in the validation split, in percent.
VALIDATION_PERCENT = 10
#: The kinds the TRL format holds: the critique kinds (TRL's SFT trainer has no image targets).
TRL_KINDS: tuple[Kind, ...] = ("conflict", "alignment")


@dataclass
class ExportResult:
    out: Path
    runs: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rows: Counter = field(default_factory=Counter)
    """(config, split, kind, label, negative_source) -> rows written."""
    truth: Counter = field(default_factory=Counter)
    """(kind, 'agree' | 'disagree' | 'unknown') -> rows."""
    duplicates: int = 0
    backends: Counter = field(default_factory=Counter)
    seeds: set[int] = field(default_factory=set)
    sources: Counter = field(default_factory=Counter)
    files: dict[str, list[tuple[str, str, int, int]]] = field(default_factory=dict)
    """config -> (split, file relative to out, rows, row groups)."""


def split_of(prompt: str) -> str:
    """``train`` or ``validation``, by a SHA-256 of the prompt (lower case, spaces collapsed)."""
    key = " ".join(prompt.lower().split())
    return "validation" if int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < VALIDATION_PERCENT else "train"


def benchmark_prompts() -> dict[str, str]:
    """Every GenEval and T2I-CompBench prompt (normalised) -> its benchmark."""
    from importlib import resources

    from strokegraph.bench.harness import COMPBENCH_CATEGORIES, geneval_prompts

    out = {" ".join(p.prompt.lower().split()): "geneval" for p in geneval_prompts()}
    data = resources.files("strokegraph.bench.data.t2i_compbench")
    for category in COMPBENCH_CATEGORIES:
        for line in data.joinpath(f"{category}_val.txt").read_text("utf-8").splitlines():
            if line.strip():
                out.setdefault(" ".join(line.lower().split()), "t2i-compbench")
    return out


class _Writer:
    """One config and split: parquet shards written a row group at a time."""

    def __init__(self, root: Path, config: str, split: str, fmt: Format, result: ExportResult) -> None:
        import pyarrow.parquet  # noqa: F401 - fail here, before rows are made, if pyarrow is missing

        self.root, self.config, self.split, self.fmt, self.result = root, config, split, fmt, result
        self.schema = features(fmt).arrow_schema
        self.buffer: list[dict[str, Any]] = []
        self.writer = None
        self.index = self.in_file = self.groups = 0
        self.rel = ""

    def add(self, row: dict[str, Any]) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.buffer:
            return
        writer = self.writer
        if writer is None:
            self.rel = f"data/{self.config}/{self.split}/{self.index:05d}.parquet"
            (self.root / self.rel).parent.mkdir(parents=True, exist_ok=True)
            writer = self.writer = pq.ParquetWriter(self.root / self.rel, self.schema)
        writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema), row_group_size=ROW_GROUP)
        self.in_file += len(self.buffer)
        self.groups += 1
        self.buffer = []
        if self.in_file >= SHARD_ROWS:
            self.close()

    def close(self) -> None:
        self.flush() if self.buffer else None
        if self.writer is not None:
            self.writer.close()
            self.result.files.setdefault(self.config, []).append((self.split, self.rel, self.in_file, self.groups))
            self.writer, self.index, self.in_file, self.groups = None, self.index + 1, 0, 0


def _content_key(row: Row, prompt: str) -> str:
    h = hashlib.sha256(f"{row.kind}|{row.label}|{row.negative_source}|{prompt}".encode())
    for part in row.parts:
        h.update(b"\x1e" + part.role.encode() + b"\x1f")
        h.update(part.text.encode() if part.text is not None else b"")
        h.update(part.image.sha256.encode() if part.image is not None else b"")
        h.update(b"L" if part.loss else b"-")
    return h.hexdigest()


def _columns(run: RunData, row: Row, benchmark: str | None, split: str) -> dict[str, Any]:
    rid = hashlib.sha256(f"{run.run_id}|{row.kind}|{row.step}|{row.round}|{row.variant}".encode()).hexdigest()[:20]
    cols: dict[str, Any] = {
        "id": rid,
        "kind": row.kind,
        "label": row.label,
        "negative_source": row.negative_source,
        "truth_label": row.truth_label,
        "run_id": run.run_id,
        "prompt": run.prompt,
        "prompt_source": run.prompt_source,
        "benchmark": benchmark,
        "tag": run.tag,
        "split": split,
        "step": row.step,
        "round": row.round,
        "seed": run.seed,
        "strokegraph_version": run.version,
        "violations": list(row.violations),
    }
    for role in ROLES:
        cols[role] = run.backends.get(role, "")
    return cols


def _check_out(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or out.is_symlink() or any(out.iterdir())):
        raise UsageError(f"{str(out)!r} exists and is not an empty folder; choose another --out")
    tmp = out.parent / f".{out.name}.export-tmp"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except FileExistsError:
        raise UsageError(f"{str(out)!r} is in use by another export ({str(tmp)!r} exists)") from None
    except OSError as exc:
        raise UsageError(f"cannot write to {str(out.parent)!r}: {exc.strerror or exc}") from None
    return tmp


def check_export(fmt: str, kinds: Iterable[str] | None) -> tuple[Format, tuple[Kind, ...]]:
    """The format and kinds to export, checked (with the ``data`` extra installed); else a :class:`UsageError`."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    default = TRL_KINDS if fmt == "trl" else KINDS
    chosen = tuple(dict.fromkeys(kinds)) if kinds else default
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise UsageError(f"unknown kind(s) {', '.join(map(repr, unknown))}; expected {', '.join(KINDS)}")
    if fmt == "trl" and (bad := [k for k in chosen if k not in TRL_KINDS]):
        raise UsageError(f"the trl format holds the critique kinds ({', '.join(TRL_KINDS)}), not {', '.join(bad)}")
    try:
        import datasets  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("export needs datasets and pyarrow: pip install 'strokegraph[data]'") from None
    return fmt, chosen  # type: ignore[return-value]


def export_runs(
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    fmt: str = "obelics",
    kinds: Iterable[str] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> ExportResult:
    """Write the rows of ``kinds`` (default: all the format holds) of the finished runs under ``paths``
    to ``out`` as ``fmt``, with a data card. ``on_skip(run_dir, reason)`` hears of each run skipped.

    Raises :class:`UsageError` (nothing written) for an unknown format or kind, an ``out`` that is
    not new or empty or is in use, a path that is no run or folder of runs, or no run to export.
    """
    fmt_, chosen = check_export(fmt, kinds)
    out = Path(out)
    paths = [Path(p) for p in paths]
    if not paths:
        raise UsageError("name at least one run directory or folder of runs")
    runs = list(find_runs(paths))  # checks every path before anything is written
    if not runs:
        raise UsageError(f"no run directory under {', '.join(map(str, paths))}")
    tmp = _check_out(out)
    result = ExportResult(out=out)
    try:
        _export(runs, tmp, out, fmt_, chosen, result, on_skip)
        if result.runs == 0:
            raise UsageError(f"none of the {len(runs)} run(s) could be exported (each was skipped, see above)")
        from strokegraph.app.datacard import write_card

        write_card(tmp, out, fmt_, chosen, result)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _export(runs, tmp: Path, out: Path, fmt: Format, kinds, result: ExportResult, on_skip) -> None:
    bench = benchmark_prompts()
    writers: dict[tuple[str, str], _Writer] = {}
    seen: set[bytes] = set()
    for run_dir in runs:
        try:
            run = load_run(run_dir)
            rows = list(rows_for(run, kinds))
        except Skipped as exc:
            result.skipped.append((str(run_dir), str(exc)))
            if on_skip is not None:
                on_skip(str(run_dir), str(exc))
            continue
        result.runs += 1
        result.seeds.add(run.seed)
        result.backends.update(f"{role} {i}" for role, i in sorted(run.backends.items()))
        result.sources[run.prompt_source] += 1
        benchmark = bench.get(" ".join(run.prompt.lower().split()))
        split = split_of(run.prompt)
        general = {"run_id": run.run_id, "prompt": run.prompt, "seed": run.seed, "backends": run.backends}
        cache: dict[str, bytes] = {}

        def image(ref, run=run, cache=cache) -> bytes:
            if ref.path not in cache:
                cache[ref.path] = run.image(ref)
            return cache[ref.path]

        for row in rows:
            key = bytes.fromhex(_content_key(row, run.prompt))
            if key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            config = f"{row.kind}-benchmark" if benchmark else row.kind
            writer = writers.get((config, split))
            if writer is None:
                writer = writers[(config, split)] = _Writer(tmp, config, split, fmt, result)
            writer.add(_columns(run, row, benchmark, split) | render(fmt, row, image, general))
            result.rows[(config, split, row.kind, row.label, row.negative_source)] += 1
            truth = "unknown" if row.truth_label is None else "agree" if row.truth_label == row.label else "disagree"
            result.truth[(row.kind, truth)] += 1
    for writer in writers.values():
        writer.close()
    if fmt == "bagel":
        _bagel_index(tmp, out, result)


def _bagel_index(tmp: Path, out: Path, result: ExportResult) -> None:
    """Per config and split: ``parquet_info/<config>-<split>.json`` keyed by each shard's final path
    (as BAGEL's loader looks them up), and its entry in ``dataset_info.json``."""
    final = out.resolve()
    (tmp / "parquet_info").mkdir()
    info: dict[str, Any] = {}
    for config, files in sorted(result.files.items()):
        for split in sorted({f[0] for f in files}):
            mine = [f for f in files if f[0] == split]
            data_dir = os.path.join(final, "data", config, split)
            index = {os.path.join(data_dir, Path(rel).name): {"num_row_groups": groups} for _, rel, _, groups in mine}
            name = f"{config}-{split}"
            (tmp / "parquet_info" / f"{name}.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
            info[name] = {
                "data_dir": data_dir,
                "num_files": len(mine),
                "num_total_samples": sum(rows for _, _, rows, _ in mine),
                "parquet_info_path": os.path.join(final, "parquet_info", f"{name}.json"),
            }
    (tmp / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def print_skip(run_dir: str, reason: str) -> None:
    """One line on stderr for a run the export skipped."""
    print(f"strokegraph: skipped {run_dir}: {reason}", file=sys.stderr)
