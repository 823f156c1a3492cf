"""The project's price corrections: reviewed data that adds or fixes prices on top of the catalog.

genai-prices is right most of the time, but it lacks some long-context tiers, price history
(promotions, cuts, an alias moving to another snapshot), thinking-output rates and changes that
take effect at a time of day. ``corrections.yaml`` (next to this module, package data, reviewed like
code) holds what the providers' own pages say instead; every entry carries the page's address and
the date it was checked. Layer order (:mod:`.catalog`): tenant override > every-tenant override >
correction > catalog.

An entry prices one model for one period (``valid_from`` / ``valid_until``: UTC instants, a date
meaning its midnight) or, with ``daily``, one daily UTC window inside such a period (an off-peak
discount with its own validity). It covers the whole catalog model the name resolves to, or with
``names`` only those exact names as sent (the ``gpt-4o`` alias served another snapshot before it
moved; the snapshots themselves were always priced right). Entries for the same model and names
form one price series: at any instant the latest period that has started and not ended applies,
and outside every period the catalog does.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final

import pandas as pd
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
)

from spanline.errors import ConfigError
from spanline.streams.pricing.layout import SOURCE_CORRECTION, rate_column, tier_columns
from spanline.streams.pricing.overrides import describe_errors
from spanline.streams.pricing.resolve import ModelResolver

#: The corrections shipped with Spanline.
BUNDLED: Final = Path(str(resources.files("spanline.streams.pricing") / "corrections.yaml"))

Rate = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{2,79}$")]


def _utc(value: datetime | date) -> pd.Timestamp:
    """A date means its midnight UTC; a naive time is UTC."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


Instant = Annotated[datetime | date, AfterValidator(_utc)]


class Rates(BaseModel):
    """USD per million tokens; absent cache rates mean those tokens pay the input rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_mtok: Rate
    output_mtok: Rate
    cache_read_mtok: Rate | None = None
    cache_write_mtok: Rate | None = None


class Tier(Rates):
    """The rates for every token of a span whose total input (cached included) is above ``above``."""

    above: Annotated[int, Field(gt=0)]


def _clock(value: object) -> time:
    """ "HH:MM" in quotes: YAML 1.1 reads an unquoted 16:30 as the number 990."""
    if not isinstance(value, str) or not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
        raise ValueError(f'expected a quoted UTC time of day "HH:MM", got {value!r}')
    return time.fromisoformat(value)


Clock = Annotated[time, BeforeValidator(_clock)]


class Daily(BaseModel):
    """A daily UTC window [from, until); ``until`` before ``from`` wraps past midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    begins: Clock = Field(alias="from")
    ends: Clock = Field(alias="until")


class Correction(Rates):
    """One entry of ``corrections.yaml``."""

    id: Slug
    provider: Name
    model: Name
    names: list[Name] | None = None
    valid_from: Instant | None = None
    valid_until: Instant | None = None
    daily: Daily | None = None
    output_thinking_mtok: Rate | None = None
    tiers: list[Tier] = Field(default_factory=list)
    source: HttpUrl
    also: list[HttpUrl] = Field(default_factory=list)
    checked: date
    note: Annotated[str, Field(min_length=1)]

    def starts(self) -> pd.Timestamp | None:
        return None if self.valid_from is None else pd.Timestamp(self.valid_from)

    def ends(self) -> pd.Timestamp | None:
        return None if self.valid_until is None else pd.Timestamp(self.valid_until)


_ENTRIES = TypeAdapter(list[Correction])

#: A correction series key: ("model", provider id, model id) or ("name", provider id, lower-cased name).
SeriesKey = tuple[str, str, str]


def read_corrections(path: Path = BUNDLED) -> tuple[list[Correction], str]:
    """The validated entries and the file's sha256; ConfigError names the entry and field."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"price corrections file {path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        document: Any = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"price corrections file {path}: not valid YAML: {exc}") from exc
    if not isinstance(document, list):
        raise ConfigError(f"price corrections file {path}: expected a YAML list of entries")
    try:
        entries = _ENTRIES.validate_python(document)
    except ValidationError as exc:
        raise ConfigError(f"price corrections file {path}: {describe_errors(exc)}") from exc
    _check(entries, path)
    return entries, hashlib.sha256(raw).hexdigest()


def _check(entries: list[Correction], path: Path) -> None:
    """Ids are unique, periods end after they start, tiers rise (the highest one passed applies)."""
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        clash = seen.setdefault(entry.id, index)
        if clash != index:
            raise ConfigError(f"price corrections file {path}: entries {clash} and {index} share the id {entry.id!r}")
        starts, ends = entry.starts(), entry.ends()
        if starts is not None and ends is not None and ends <= starts:
            raise ConfigError(f"price corrections file {path}: entry {entry.id!r} ends ({ends}) before it starts")
        thresholds = [tier.above for tier in entry.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ConfigError(f"price corrections file {path}: entry {entry.id!r} lists its tiers out of order")


def series_keys(entry: Correction, resolver: ModelResolver) -> list[SeriesKey]:
    """The series an entry belongs to: its catalog model, or each of its exact names."""
    provider_id, model_id = resolver.match(entry.provider, entry.model).identity
    if entry.names is None:
        return [("model", provider_id, model_id)]
    return [("name", provider_id, name.strip().lower()) for name in entry.names]


def correction_rows(
    entries: list[Correction], resolver: ModelResolver, first_series: int
) -> tuple[pd.DataFrame, dict[SeriesKey, int]]:
    """Price-table rows of the entries (one per entry and series) and each key's series number."""
    series_of: dict[SeriesKey, int] = {}
    seen: dict[tuple[SeriesKey, pd.Timestamp | None, bool], str] = {}
    rows = []
    for entry in entries:
        for key in series_keys(entry, resolver):
            clash = seen.setdefault((key, entry.starts(), entry.daily is not None), entry.id)
            if clash != entry.id and entry.daily is None:
                raise ConfigError(
                    f"price corrections: {clash!r} and {entry.id!r} both price {key[1]}/{key[2]} "
                    f"from {entry.starts() or 'the beginning'}"
                )
            series = series_of.setdefault(key, first_series + len(series_of))
            rows.append({"series": series, "provider_id": key[1], **_row(entry, key)})
    return pd.DataFrame(rows), series_of


def _row(entry: Correction, key: SeriesKey) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model_id": key[2],
        "match": entry.model if key[0] == "model" else key[2],
        "tenant": "",
        "valid_from": entry.starts(),
        "valid_until": entry.ends(),
        "source": SOURCE_CORRECTION,
        "version": f"{SOURCE_CORRECTION} {entry.id}",
        "entry": f"{SOURCE_CORRECTION}:{entry.id}",
        "request_usd": 0.0,
        "output_thinking_mtok": entry.output_thinking_mtok,
        **_rates(entry),
    }
    if entry.daily is not None:
        row["daily_from"] = _since_midnight(entry.daily.begins)
        row["daily_until"] = _since_midnight(entry.daily.ends)
    for slot, tier in enumerate(entry.tiers, start=1):
        for column, value in _rates(tier).items():
            above, rate = tier_columns(column.removesuffix("_mtok"), slot)
            row[above], row[rate] = float(tier.above), value
    return row


def _rates(rates: Rates) -> dict[str, float | None]:
    return {
        rate_column("input"): rates.input_mtok,
        rate_column("output"): rates.output_mtok,
        rate_column("cache_read"): rates.cache_read_mtok,
        rate_column("cache_write"): rates.cache_write_mtok,
    }


def _since_midnight(value: time) -> pd.Timedelta:
    return pd.Timedelta(hours=value.hour, minutes=value.minute, seconds=value.second)
