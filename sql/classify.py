"""The one place that sorts ClickHouse failures into "bad data" and "retry later".

Bad data means ClickHouse (or clickhouse-connect, while serialising the block) understood the
request and refused the *values*: the same block can never succeed, so the worker
dead-letters its rows. Everything else (connection refused or reset, timeouts, too many
parts, memory limits, read-only replicas, a table a pending migration has not created yet,
errors never seen before) is retried with back-off, because stalling loses nothing while
dropping data on a transient fault does. The same rules hold for chDB and HTTP servers:
both surface the server's numeric error code on clickhouse-connect's exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from clickhouse_connect.driver.exceptions import ClickHouseError, DataError

from spanline.errors import RejectedDataError, RetryableStorageError

#: ClickHouse error codes meaning "these values cannot be stored" (names as in
#: ``errorCodeToName``; tests check them against the engine).
BAD_DATA_CODES: dict[int, str] = {
    6: "CANNOT_PARSE_TEXT",
    25: "CANNOT_PARSE_ESCAPE_SEQUENCE",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",  # on insert: a column's values do not convert to its type
    53: "TYPE_MISMATCH",
    69: "ARGUMENT_OUT_OF_BOUND",  # on insert: e.g. a decimal too big for its precision
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    128: "TOO_LARGE_ARRAY_SIZE",
    130: "CANNOT_READ_ARRAY_FROM_TEXT",
    131: "TOO_LARGE_STRING_SIZE",
    190: "SIZES_OF_ARRAYS_DONT_MATCH",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    376: "CANNOT_PARSE_UUID",
    407: "DECIMAL_OVERFLOW",
    441: "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
    467: "CANNOT_PARSE_BOOL",
    469: "VIOLATED_CONSTRAINT",
    563: "CANNOT_READ_MAP_FROM_TEXT",
    632: "UNEXPECTED_DATA_AFTER_PARSED_VALUE",
    675: "CANNOT_PARSE_IPV4",
    676: "CANNOT_PARSE_IPV6",
}

#: Modules in which Python values become a column's wire format: clickhouse-connect's, and
#: pyarrow's (the worker inserts Arrow tables). A plain ValueError/TypeError/OverflowError
#: raised there (``int('x')`` for an Int64 column, ``len(None)`` for an Array, an ArrowInvalid)
#: means a value does not fit its column.
_SERIALISERS = (
    "clickhouse_connect.datatypes",
    "clickhouse_connect.driverc",
    "clickhouse_connect.driver.transform",
    "pyarrow",
)
#: Modules whose exceptions are storage failures even when they are plain Python ones.
_STORAGE_MODULES = ("clickhouse_connect", "chdb", "urllib3", "pyarrow")
_CODE_IN_MESSAGE = re.compile(r"\bCode:\s*(\d+)")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code of ``exc``: clickhouse-connect's ``code``, else "Code: N" in the text."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE_IN_MESSAGE.search(str(exc))
    return int(match.group(1)) if match else None


def is_bad_data(exc: BaseException) -> bool:
    """True when retrying the same values can never succeed."""
    if isinstance(exc, DataError):  # clickhouse-connect refused a value before sending
        return True
    if isinstance(exc, (ValueError, TypeError, OverflowError)) and _raised_in(exc.__traceback__, _SERIALISERS):
        return True
    return error_code(exc) in BAD_DATA_CODES


def classify(exc: BaseException) -> RejectedDataError | RetryableStorageError:
    """``exc`` as RejectedDataError (bad values) or RetryableStorageError (anything else), chained."""
    code = error_code(exc)
    name = BAD_DATA_CODES.get(code) if code is not None else None
    kind = f"{name or getattr(exc, 'name', None) or 'error'} (code {code})" if code is not None else type(exc).__name__
    error_type = RejectedDataError if is_bad_data(exc) else RetryableStorageError
    wrapped = error_type(f"ClickHouse {kind}: {_first_line(exc)}")
    wrapped.__cause__ = exc
    return wrapped


@contextmanager
def storage_errors() -> Iterator[None]:
    """Re-raise storage failures in the block as RejectedDataError / RetryableStorageError.

    Storage failures are clickhouse-connect's errors and any exception raised inside
    clickhouse-connect, chDB or urllib3 (sockets, temp files, serialisation). A bug in the
    caller's own code (say a KeyError before the insert) propagates unchanged, so it is not
    retried forever as if ClickHouse were down.
    """
    try:
        yield
    except (RejectedDataError, RetryableStorageError):
        raise
    except Exception as exc:
        if isinstance(exc, ClickHouseError) or _raised_in(exc.__traceback__, _STORAGE_MODULES):
            raise classify(exc) from exc
        raise


def _raised_in(traceback: TracebackType | None, prefixes: tuple[str, ...]) -> bool:
    """True when any frame of ``traceback`` runs code from a module under one of ``prefixes``."""
    while traceback is not None:
        module = str(traceback.tb_frame.f_globals.get("__name__", ""))
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return True
        traceback = traceback.tb_next
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
