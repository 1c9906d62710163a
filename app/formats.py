"""How a :class:`~strokegraph.app.rows.Row` is written in each format, as each loader expects it.

Checked against the loaders themselves (Dec 2026):

- ``bagel``: the ``conversation`` column of the interleaved reasoning datasets built on BAGEL,
  Osilly/Interleaving-Reasoning-Generation ``SFT/data/interleave_datasets/multi_think_interleave_t2i_dataset.py``
  (``MultiThinkInterleaveT2IDataset.parse_row``): a JSON list of turns; a user turn is
  ``{"role": "user", "content": str, "need_loss": false}`` (text only); an assistant turn's content
  is a list of ``{"type": "text", "content", "need_loss"}`` and ``{"type": "image", "content":
  <base64>, "need_loss", "need_vae", "need_vit"}``. Parts with empty content are skipped, and
  ``_add_image`` (``interleave_t2i_dataset.py``) asserts that an image has one flag set: an image a
  later part conditions on gets ``need_vae`` and ``need_vit`` (its clean copies), a generation
  target ``need_loss``. So the image to judge in a critique row sits in the assistant turn as context.
  Shards are found through ``parquet_info`` (``{shard path: {"num_row_groups": N}}``,
  ``ParquetStandardIterableDataset.get_data_paths``) and registered in ``DATASET_INFO``
  (``SFT/data/dataset_info.py``: ``data_dir``, ``num_files``, ``num_total_samples``, ``parquet_info_path``).
- ``obelics``: HuggingFaceM4/OBELICS's columns: ``texts`` and ``images`` lists of equal length with
  exactly one non-null entry per position, ``metadata`` (a JSON string aligned with them) and
  ``general_metadata`` (JSON); ``images`` is a ``datasets`` ``List(Image())`` stored as
  ``{bytes, path}`` structs, its feature recorded in the parquet schema's ``huggingface`` metadata.
- ``trl``: TRL's conversational vision format (HuggingFaceH4/llava-instruct-mix-vsft, made for
  TRL's SFT trainer): ``messages`` ``[{role, content: [{type: "text", text} | {type: "image"}]}]``
  and an ``images`` column in the order of the image parts. Only the critique kinds.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from strokegraph.app.rows import Row
from strokegraph.registry import ROLES

__all__ = ["FORMATS", "Format", "common_features", "features", "render"]

Format = Literal["bagel", "obelics", "trl"]
FORMATS: tuple[Format, ...] = ("bagel", "obelics", "trl")


def common_features() -> dict[str, Any]:
    """The columns every row carries, as ``datasets`` features."""
    from datasets import List, Value

    violation = {
        "kind": Value("string"),
        "entity_ids": List(Value("string")),
        "expected": Value("string"),
        "observed": Value("string"),
        "message": Value("string"),
        "box": List(Value("float64")),
    }
    cols: dict[str, Any] = {
        name: Value("string")
        for name in ("id", "kind", "label", "negative_source", "truth_label", "run_id", "prompt", "prompt_source")
    }
    cols |= {"benchmark": Value("string"), "tag": Value("string"), "split": Value("string")}
    cols |= {role: Value("string") for role in ROLES}
    cols |= {"step": Value("int32"), "round": Value("int32"), "seed": Value("int64")}
    cols |= {"strokegraph_version": Value("string"), "violations": List(violation)}
    return cols


def features(fmt: Format):
    """The ``datasets.Features`` of a shard of ``fmt``."""
    from datasets import Features, Image, List, Value

    cols = common_features()
    if fmt == "bagel":
        cols["conversation"] = Value("string")
    elif fmt == "obelics":
        cols |= {
            "texts": List(Value("string")),
            "images": List(Image()),
            "metadata": Value("string"),
            "general_metadata": Value("string"),
        }
    else:
        content = {"type": Value("string"), "text": Value("string")}
        cols |= {"messages": List({"role": Value("string"), "content": List(content)}), "images": List(Image())}
    return Features(cols)


def _bagel(row: Row, image) -> dict[str, Any]:
    turns: list[dict[str, Any]] = []
    for part in row.parts:
        if part.role == "user" and part.text is not None:
            turns.append({"role": "user", "content": part.text, "need_loss": False})
            continue
        if not turns or turns[-1]["role"] != "assistant":
            turns.append({"role": "assistant", "content": []})
        if part.text is not None:
            turns[-1]["content"].append({"type": "text", "content": part.text, "need_loss": part.loss})
        else:
            if not (part.loss or part.condition):
                continue  # an image nothing learns from nor looks at: BAGEL's loader refuses it
            turns[-1]["content"].append(
                {
                    "type": "image",
                    "content": base64.b64encode(image(part.image)).decode("ascii"),
                    "need_loss": part.loss,
                    "need_vae": part.condition,
                    "need_vit": part.condition,
                }
            )
    return {"conversation": json.dumps(turns)}


def _obelics(row: Row, image, general: dict[str, Any]) -> dict[str, Any]:
    texts, images, meta = [], [], []
    for part in row.parts:
        texts.append(part.text)
        images.append({"bytes": image(part.image), "path": None} if part.image is not None else None)
        meta.append({"role": part.role, "loss": part.loss, "condition": part.condition})
    return {
        "texts": texts,
        "images": images,
        "metadata": json.dumps(meta),
        "general_metadata": json.dumps(general),
    }


def _trl(row: Row, image) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    images = []
    for part in row.parts:
        if not messages or messages[-1]["role"] != part.role:
            messages.append({"role": part.role, "content": []})
        if part.image is not None:
            messages[-1]["content"].append({"type": "image", "text": None})
            images.append({"bytes": image(part.image), "path": None})
        else:
            messages[-1]["content"].append({"type": "text", "text": part.text})
    return {"messages": messages, "images": images}


def render(fmt: Format, row: Row, image, general: dict[str, Any]) -> dict[str, Any]:
    """The format's own columns for ``row``; ``image(ref)`` gives an image's PNG bytes."""
    if fmt == "bagel":
        return _bagel(row, image)
    if fmt == "obelics":
        return _obelics(row, image, general)
    return _trl(row, image)
