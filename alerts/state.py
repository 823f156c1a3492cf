"""The evaluator's state file: baselines, key history, alert lifecycle and last minute as JSON.

A versioned JSON document (``{"format": "spanline-alert-state", "version": 1, ...}``) rather
than a pickle: it names no classes or modules, so a later release (or pandas, numpy, ddsketch)
still reads it, an operator can inspect it, and loading it never runs code. Layout of version 1:

- datetimes are ISO 8601 text with their UTC offset;
- a data frame is ``{"index": column | {"range": [start, stop, step]}, "columns": [column]}``
  with ``column = {"name", "dtype", "values"}`` (pandas dtype name; datetime64 values as ISO
  text, other values as below);
- other values are JSON scalars and lists, except tagged objects for what JSON lacks:
  ``{"float": "nan" | "inf" | "-inf"}``, ``{"datetime": iso}``, ``{"timestamp": iso, "unit"}``,
  ``{"timedelta": seconds}``, ``{"tuple": [...]}``, ``{"dict": [[key, value], ...]}`` and
  ``{"ddsketch": ...}``;
- a DDSketch is its relative accuracy, zero count, count, sum, min, max and, per store
  (``positive``, ``negative``), the bin counts from key ``offset`` on and their total.
- ``unrecorded`` lists the alert events paged but not yet written to the ``alerts`` table
  (optional: a file without it has none).

A file that cannot be used (unreadable, not this format, another version, missing or odd
fields, a pickle from an earlier release) is moved aside with one error log, and the caller
rebuilds its baselines from ClickHouse.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from ddsketch import DDSketch
from ddsketch.store import DenseStore

from spanline.alerts.baselines import SKETCH_ACCURACY, BaselineStore, Family, KeyHistory, Series
from spanline.alerts.events import AlertEvent
from spanline.alerts.metrics import METRICS

log = logging.getLogger(__name__)
FORMAT = "spanline-alert-state"
VERSION = 1
#: Alert lifecycle states that are saved (resolved alerts are dropped from the evaluator).
STATES = ("pending", "firing")
#: Scope values of one alert, in its rule's scope order (pandas index labels, text when restored).
Scope = tuple[object, ...]
#: One alert of the evaluator: the rule's name and the scope.
AlertKey = tuple[str, Scope]


class StateError(Exception):
    """A state file that cannot be restored; the message says why."""


@dataclass
class ActiveAlert:
    """A pending or firing alert of one rule on one scope."""

    state: str
    since: datetime
    last_true: datetime
    event: AlertEvent | None = None


@dataclass
class SavedState:
    """What the evaluator saves (not its diagnosis frames: they refill from ClickHouse)."""

    store: BaselineStore
    keys: dict[Family, KeyHistory]
    active: dict[AlertKey, ActiveAlert]
    last_minute: datetime | None
    #: State changes already handed to the pager whose ``alerts`` history rows are not written yet.
    unrecorded: list[AlertEvent] = field(default_factory=list)


# --- the file
def write_state(path: Path, state: SavedState) -> None:
    """Replace ``path`` atomically (a crash leaves the old or the new file, never half of one);
    the file is private (0o600) from its creation, as it holds tenants' traffic figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode(state)
    temporary = path.with_name(f"{path.name}.tmp")
    temporary.unlink(missing_ok=True)  # O_EXCL below: never reuse a file with other permissions
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power loss
    finally:
        os.close(directory)


def read_state(path: Path) -> SavedState | None:
    """The state saved at ``path``; None when there is none or it cannot be used. An unusable
    file is logged once and moved aside (kept for inspection, not read again)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = f"unreadable: {exc}"
    else:
        try:
            return decode(data)
        except StateError as exc:
            reason = str(exc)
    try:
        moved = f"moved to {_set_aside(path)}"
    except OSError as exc:
        moved = f"could not be moved aside ({exc})"
    log.error("alert state %s cannot be restored (%s); %s; baselines are rebuilt from ClickHouse", path, reason, moved)
    return None


def _set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt-<UTC time>`` (a new name if that exists); returns it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    attempt = 1
    while target.exists():
        attempt += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{attempt}")
    path.rename(target)
    return target


# --- the document
def encode(state: SavedState) -> bytes:
    store = state.store
    return orjson.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "saved_at": datetime.now(UTC).isoformat(),
            "last_minute": _time_text(state.last_minute),
            "store": {
                "minute_retention": _value(store.minute_retention),
                "hour_retention": _value(store.hour_retention),
                "families": [
                    {
                        "family": _family(family),
                        "folded_until": _time_text(series.folded_until),
                        "observed_from": _time_text(series.observed_from),
                        "minutes": _frame(series.minutes),
                        "hours": _frame(series.hours),
                    }
                    for family, series in store.series.items()
                ],
            },
            "key_history": [
                {
                    "family": _family(family),
                    "settle": _value(history.settle),
                    "keys": None if history.keys is None else _frame(history.keys),
                    "scopes": [[list(map(_value, scope)), seen.isoformat()] for scope, seen in history.scopes.items()],
                }
                for family, history in state.keys.items()
            ],
            "active": [
                {
                    "rule": rule,
                    "scope": list(map(_value, scope)),
                    "state": active.state,
                    "since": active.since.isoformat(),
                    "last_true": active.last_true.isoformat(),
                    "event": None if active.event is None else _event(active.event),
                }
                for (rule, scope), active in state.active.items()
            ],
            "unrecorded": [_event(event) for event in state.unrecorded],
        }
    )


def decode(data: bytes) -> SavedState:
    """The state in ``data``; StateError (with the reason) for anything but a valid document."""
    if data[:1] == b"\x80":  # pickle protocol 2+ opcode
        raise StateError("a pickle from an earlier release; this release reads only its JSON format")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateError(f"not a {FORMAT} document")
    if document.get("version") != VERSION:
        raise StateError(f"format version {document.get('version')!r}; this release reads version {VERSION}")
    try:
        return _state(document)
    except StateError:
        raise
    except Exception as exc:  # any other failure to rebuild the objects is a bad file too
        raise StateError(f"invalid content ({type(exc).__name__}: {exc})") from exc


def _state(document: dict[str, Any]) -> SavedState:
    saved = _get(document, "store", dict)
    store = BaselineStore(
        minute_retention=_timedelta(saved, "minute_retention"), hour_retention=_timedelta(saved, "hour_retention")
    )
    for entry in _get(saved, "families", list):
        family = _family_of(_get(entry, "family", dict))
        series = Series(
            minutes=_frame_of(_get(entry, "minutes", dict)),
            hours=_frame_of(_get(entry, "hours", dict)),
            folded_until=_optional_time_of(entry, "folded_until"),
            # absent in files saved before it existed: history_start() then falls back to the rows
            observed_from=_optional_time_of(entry, "observed_from") if "observed_from" in entry else None,
        )
        sketches = ["sketch"] if family.metric in METRICS and family.percentile and len(series.minutes) else []
        _check_frame(series.minutes, f"{family} minutes", family.dims, ["num", "den"], ["minute"], sketches)
        _check_frame(series.hours, f"{family} hours", family.dims, ["num", "den", "value"], ["hour"])
        store.series[family] = series
    keys: dict[Family, KeyHistory] = {}
    for entry in _get(document, "key_history", list):
        family = _family_of(_get(entry, "family", dict))
        frame = None if _get(entry, "keys", (dict, type(None))) is None else _frame_of(entry["keys"])
        if frame is not None:
            _check_frame(frame, f"{family} keys", (*family.dims, "key"), ["calls"], ["first_seen", "last_seen"])
        scopes = {
            _scope(scope): _aware(datetime.fromisoformat(seen), "a scope's first minute")
            for scope, seen in _get(entry, "scopes", list)
        }
        keys[family] = KeyHistory(settle=_timedelta(entry, "settle"), keys=frame, scopes=scopes)
    active: dict[AlertKey, ActiveAlert] = {}
    for entry in _get(document, "active", list):
        state = _get(entry, "state", str)
        if state not in STATES:
            raise StateError(f"alert state {state!r} is none of {STATES}")
        event = None if _get(entry, "event", (dict, type(None))) is None else _event_of(entry["event"])
        if state == "firing" and event is None:
            raise StateError("a firing alert without its event")
        active[_get(entry, "rule", str), _scope(_get(entry, "scope", list))] = ActiveAlert(
            state, since=_time_of(entry, "since"), last_true=_time_of(entry, "last_true"), event=event
        )
    # absent in files saved before it existed: nothing was left unrecorded then
    unrecorded = [_event_of(entry) for entry in _get(document, "unrecorded", list)] if "unrecorded" in document else []
    return SavedState(store, keys, active, _optional_time_of(document, "last_minute"), unrecorded)


def _get(data: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(data, dict):
        raise StateError(f"expected an object with {name!r}, found a {type(data).__name__}")
    if name not in data:
        raise StateError(f"missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind):
        raise StateError(f"field {name!r} is a {type(value).__name__}")
    return value


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise StateError(f"{what} has no UTC offset")
    return value


def _time_text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_of(data: dict[str, Any], name: str) -> datetime:
    return _aware(datetime.fromisoformat(_get(data, name, str)), f"field {name!r}")


def _optional_time_of(data: dict[str, Any], name: str) -> datetime | None:
    return None if _get(data, name, (str, type(None))) is None else _time_of(data, name)


def _timedelta(data: dict[str, Any], name: str) -> timedelta:
    value = _decoded(_get(data, name, dict))
    if not isinstance(value, timedelta):
        raise StateError(f"field {name!r} is not a duration")
    return value


def _family(family: Family) -> dict[str, Any]:
    return {"metric": family.metric, "key": family.key, "dims": list(family.dims)}


def _family_of(data: dict[str, Any]) -> Family:
    dims = _get(data, "dims", list)
    if not all(isinstance(d, str) for d in dims):
        raise StateError("a family's dimensions are not all text")
    return Family(_get(data, "metric", str), _get(data, "key", (str, type(None))), tuple(dims))


def _scope(values: list[Any]) -> Scope:
    return tuple(_decoded(v) for v in values)


def _check_frame(
    frame: pd.DataFrame,
    what: str,
    labels: tuple[str, ...],
    numbers: list[str],
    times: list[str],
    sketches: list[str] | None = None,
) -> None:
    """Columns the evaluator reads, with values it can compute with (else it would fail on
    every minute instead of starting from ClickHouse)."""
    sketches = sketches or []
    missing = [c for c in (*labels, *numbers, *times, *sketches) if c not in frame.columns]
    if missing:
        raise StateError(f"{what} lack the columns {missing}")
    checks: list[tuple[list[str], str, Callable[[object], bool]]] = [
        (numbers, "numbers", lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))),
        (times, "UTC times", lambda v: isinstance(v, datetime) and v.tzinfo is not None),
        (sketches, "sketches", lambda v: v is None or isinstance(v, DDSketch)),
    ]
    for columns, kind, valid in checks:
        for column in columns:
            if not all(valid(v) for v in frame[column]):
                raise StateError(f"{what}: column {column!r} holds values that are not {kind}")


# --- events
def _event(event: AlertEvent) -> dict[str, Any]:
    return {f.name: _value(getattr(event, f.name)) for f in fields(AlertEvent)}


#: AlertEvent fields and the type each must decode to (checked: the dispatcher trusts them).
_EVENT_TYPES: dict[str, type] = {
    "at": datetime,
    "started_at": datetime,
    "scope": dict,
    "group": dict,
    "value": float,
    "threshold": float,
    "excess": float,
    "diagnosis": dict,
}


#: Event fields a state file from an earlier version may lack, and their value then.
_EVENT_ADDED: dict[str, Any] = {"example_trace_ids": ()}


def _event_of(data: dict[str, Any]) -> AlertEvent:
    values: dict[str, Any] = {}
    for spec in fields(AlertEvent):
        name = spec.name
        if name in _EVENT_ADDED:
            values[name] = _text_tuple(name, _decoded(data.get(name, _EVENT_ADDED[name])))
            continue
        if name not in data and spec.default is not MISSING:  # a field added since the state was saved
            continue
        value = _decoded(_get(data, name, object))
        kind = _EVENT_TYPES.get(name, str)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            raise StateError(f"event field {name!r} is a {type(value).__name__}")
        values[name] = value
    for name in ("scope", "group"):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values[name].items()):
            raise StateError(f"event field {name!r} is not text to text")
    _aware(values["at"], "an event's time")
    _aware(values["started_at"], "an event's start")
    return AlertEvent(**values)


def _text_tuple(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise StateError(f"event field {name!r} is not a list of text")
    return tuple(value)


# --- frames
def _frame(frame: pd.DataFrame) -> dict[str, Any]:
    index = frame.index
    encoded_index = (
        {"range": [index.start, index.stop, index.step]} if isinstance(index, pd.RangeIndex) else _column(index)
    )
    return {"index": encoded_index, "columns": [{"name": name, **_column(frame[name])} for name in frame.columns]}


def _column(values: pd.Series | pd.Index) -> dict[str, Any]:
    if isinstance(values.dtype, pd.DatetimeTZDtype) or values.dtype.kind == "M":
        encoded = [None if pd.isna(v) else v.isoformat() for v in values]
    else:
        encoded = [_value(v) for v in values.tolist()]
    return {"dtype": str(values.dtype), "values": encoded}


def _frame_of(data: dict[str, Any]) -> pd.DataFrame:
    index_data = _get(data, "index", dict)
    if "range" in index_data:
        start, stop, step = _get(index_data, "range", list)
        index: pd.Index = pd.RangeIndex(int(start), int(stop), int(step))
    else:
        index = pd.Index(_column_of(index_data))
    columns = {}
    for column in _get(data, "columns", list):
        name = _get(column, "name", str)
        values = _column_of(column)
        if len(values) != len(index):
            raise StateError(f"column {name!r} has {len(values)} values for {len(index)} rows")
        columns[name] = values.set_axis(index)
    if not columns:
        return pd.DataFrame(index=index)
    return pd.DataFrame(columns, index=index)


def _column_of(data: dict[str, Any]) -> pd.Series:
    dtype = pd.api.types.pandas_dtype(_get(data, "dtype", str))
    values = _get(data, "values", list)
    if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
        times = pd.to_datetime(
            pd.Series(values, dtype=object), format="ISO8601", utc=isinstance(dtype, pd.DatetimeTZDtype)
        )
        return times.astype(dtype)
    return pd.Series([_decoded(v) for v in values], dtype=object).astype(dtype)


# --- values
def _value(value: Any) -> Any:
    """One value as JSON (see the module docstring); TypeError for a type the state never holds."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else {"float": str(float(value))}
    if value is pd.NaT:
        return {"timestamp": "NaT", "unit": "ns"}
    if isinstance(value, pd.Timestamp):
        return {"timestamp": value.isoformat(), "unit": value.unit}
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, timedelta):
        return {"timedelta": value.total_seconds()}
    if isinstance(value, tuple):
        return {"tuple": [_value(v) for v in value]}
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {"dict": [[_value(k), _value(v)] for k, v in value.items()]}
    if isinstance(value, DDSketch):
        return {"ddsketch": _sketch(value)}
    raise TypeError(f"the alert state cannot hold a {type(value).__name__}")


def _decoded(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    if isinstance(value, dict) and value.keys() == {"timestamp", "unit"}:
        return pd.Timestamp(value["timestamp"]).as_unit(value["unit"])
    if not isinstance(value, dict) or len(value) != 1:
        raise StateError(f"unexpected value {str(value)[:80]}")
    tag, content = next(iter(value.items()))
    if tag == "float" and content in ("nan", "inf", "-inf"):
        return float(content)
    if tag == "datetime":
        return datetime.fromisoformat(content)
    if tag == "timedelta":
        return timedelta(seconds=content)
    if tag == "tuple":
        return tuple(_decoded(v) for v in content)
    if tag == "dict":
        return {_decoded(k): _decoded(v) for k, v in content}
    if tag == "ddsketch":
        return _sketch_of(content)
    raise StateError(f"unexpected value {str(value)[:80]}")


# --- sketches
# ddsketch has no public accessors for its bins, and its protobuf form (ddsketch.pb) drops min,
# max and sum; so the dense stores are written and rebuilt field by field.
def _sketch(sketch: DDSketch) -> dict[str, Any]:
    if type(sketch) is not DDSketch:
        raise TypeError(f"the alert state holds plain DDSketch objects, not {type(sketch).__name__}")
    return {
        "relative_accuracy": sketch._relative_accuracy,
        **{name: _value(getattr(sketch, f"_{name}")) for name in ("zero_count", "count", "sum", "min", "max")},
        "positive": _bins(sketch._store),
        "negative": _bins(sketch._negative_store),
    }


def _bins(store: DenseStore) -> dict[str, Any]:
    if not store.bins or store.min_key > store.max_key:
        return {"offset": 0, "counts": [], "count": _value(store.count)}
    first, last = store.min_key - store.offset, store.max_key - store.offset
    return {
        "offset": store.min_key,
        "counts": [float(c) for c in store.bins[first : last + 1]],
        "count": _value(store.count),
    }


def _sketch_of(data: dict[str, Any]) -> DDSketch:
    accuracy = _number(data, "relative_accuracy")
    if accuracy != SKETCH_ACCURACY:  # it could not be merged with the evaluator's sketches
        raise StateError(f"a sketch of relative accuracy {accuracy}, not {SKETCH_ACCURACY}")
    sketch = DDSketch(accuracy)
    for store, name in ((sketch._store, "positive"), (sketch._negative_store, "negative")):
        saved = _get(data, name, dict)
        counts = [_finite(c) for c in _get(saved, "counts", list)]
        if counts:
            store.bins, store.offset = counts, _get(saved, "offset", int)
            store.min_key, store.max_key = store.offset, store.offset + len(counts) - 1
        store.count = _number(saved, "count")
    for name in ("zero_count", "count", "sum", "min", "max"):
        setattr(sketch, f"_{name}", _number(data, name))
    return sketch


def _number(data: dict[str, Any], name: str) -> float:
    value = _decoded(_get(data, name, (int, float, dict)))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"field {name!r} is not a number")
    return float(value)


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StateError(f"a sketch bin count is {value!r}")
    return float(value)
