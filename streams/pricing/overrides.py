"""Per-tenant price overrides from a YAML file: negotiated discounts and self-hosted models.

The file is a YAML list; each entry prices one model (see ``overrides.example.yaml``)::

    - provider: openai            # required
      model: gpt-4o               # required; matched like the catalog matches names
      tenant: acme                # optional; absent = every tenant
      valid_from: 2026-01-01      # optional date or datetime (naive = UTC); absent = always
      input_mtok: 2.0             # USD per million uncached input tokens
      output_mtok: 8.0            # USD per million output tokens (reasoning included)
      cache_read_mtok: 1.0        # optional; absent = cache reads pay input_mtok
      cache_write_mtok: 2.5       # optional; absent = cache writes pay input_mtok

An override replaces the whole price (no tiers, no per-request fee) for spans of its tenant (or of
every tenant) from ``valid_from`` on; before that the catalog price applies. Entries are numbered
from 0 in file order, in errors, in ``price_version`` (``override <file sha256[:12]> #<index>``) and in
``price_entry`` (``override:<index>``).
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from spanline.errors import ConfigError
from spanline.streams.pricing.layout import SOURCE_OVERRIDE, rate_column
from spanline.streams.pricing.resolve import Identity, ModelResolver

#: Errors quoted in a ConfigError; the rest are counted.
MAX_QUOTED_ERRORS = 5


#: A YAML number (strict: ``true`` or ``"1.5"`` is a typo, not a price), finite and >= 0.
Rate = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class PriceOverride(BaseModel):
    """One entry of the overrides file."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    provider: Name
    model: Name
    tenant: Name | None = None
    valid_from: datetime | date | None = None
    input_mtok: Rate
    output_mtok: Rate
    cache_read_mtok: Rate | None = None
    cache_write_mtok: Rate | None = None

    def starts(self) -> pd.Timestamp | None:
        """``valid_from`` as a UTC instant: a date means its midnight UTC, a naive time is UTC."""
        if self.valid_from is None:
            return None
        stamp = pd.Timestamp(self.valid_from)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


_ENTRIES = TypeAdapter(list[PriceOverride])


def read_overrides(path: Path) -> tuple[list[PriceOverride], str]:
    """The validated entries and the file's sha256 (hex); ConfigError says which entry and field."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"price overrides file {path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        document: Any = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"price overrides file {path}: not valid YAML: {exc}") from exc
    if document is None:
        document = []
    if not isinstance(document, list):
        kind = type(document).__name__
        raise ConfigError(f"price overrides file {path}: expected a YAML list of entries, got a {kind}")
    try:
        entries = _ENTRIES.validate_python(document)
    except ValidationError as exc:
        raise ConfigError(f"price overrides file {path}: {describe_errors(exc)}") from exc
    return entries, hashlib.sha256(raw).hexdigest()


def describe_errors(exc: ValidationError) -> str:
    """First error per (entry, field); a union such as ``valid_from`` reports each member, once is enough."""
    first: dict[tuple[object, object], str] = {}
    for error in exc.errors():
        index, *field = error["loc"]
        first.setdefault((index, field[0] if field else None), error["msg"])
    lines = [
        f"entry {index} (counting from 0), {f'field {field!r}' if field is not None else 'the entry'}: {msg}"
        for (index, field), msg in list(first.items())[:MAX_QUOTED_ERRORS]
    ]
    if len(first) > MAX_QUOTED_ERRORS:
        lines.append(f"… and {len(first) - MAX_QUOTED_ERRORS} more error(s)")
    return "; ".join(lines)


def override_rows(
    entries: list[PriceOverride], digest: str, resolver: ModelResolver, first_series: int
) -> tuple[pd.DataFrame, dict[tuple[Identity, str], int]]:
    """Price-table rows of the entries, and the series of each (model identity, tenant or '')."""
    series_of: dict[tuple[Identity, str], int] = {}
    seen: dict[tuple[Identity, str, pd.Timestamp | None], int] = {}
    rows = []
    for index, entry in enumerate(entries):
        identity = resolver.match(entry.provider, entry.model).identity
        tenant = entry.tenant or ""
        starts = entry.starts()
        clash = seen.setdefault((identity, tenant, starts), index)
        if clash != index:
            raise ConfigError(
                f"price overrides: entries {clash} and {index} (counting from 0) both price "
                f"{identity[0]}/{identity[1]} for {tenant or 'every tenant'} from {starts or 'the beginning'}"
            )
        series = series_of.setdefault((identity, tenant), first_series + len(series_of))
        rows.append(
            {
                "series": series,
                "provider_id": identity[0],
                "model_id": identity[1],
                "match": entry.model,
                "tenant": tenant,
                "valid_from": starts,
                "source": SOURCE_OVERRIDE,
                "version": f"{SOURCE_OVERRIDE} {digest[:12]} #{index}",
                "entry": f"{SOURCE_OVERRIDE}:{index}",
                "request_usd": 0.0,
                rate_column("input"): entry.input_mtok,
                rate_column("output"): entry.output_mtok,
                rate_column("cache_read"): entry.cache_read_mtok,
                rate_column("cache_write"): entry.cache_write_mtok,
            }
        )
    return pd.DataFrame(rows), series_of
