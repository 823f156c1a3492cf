"""The committed JSON Schema (``spanline/contract/span.schema.json``) is generated from the model."""

from __future__ import annotations

from pathlib import Path

import orjson

from spanline.contract.schema import Span

SCHEMA_PATH = Path(__file__).with_name("span.schema.json")


def span_json_schema() -> bytes:
    return (
        orjson.dumps(Span.model_json_schema(mode="validation"), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        + b"\n"
    )


def write_schema(path: Path | None = None) -> Path:
    target = path or SCHEMA_PATH
    target.write_bytes(span_json_schema())
    return target
