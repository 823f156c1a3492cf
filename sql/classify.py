"""The one place that sorts ClickHouse failures into "retry later" and "bad data" (like Vector).

Bad data is refused *values*: retrying the same block can never succeed, so its rows go to
the dead-letter topic. Everything else (connection refused, timeouts, too many parts, memory
limits, read-only replicas, unknown errors) is retried with back-off, because dropping data
on a transient fault is worse than waiting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver.exceptions import ClickHouseError, DataError, ProgrammingError

from spanline.errors import RejectedDataError, RetryableStorageError

#: ClickHouse error codes meaning "these values are wrong".
BAD_DATA_CODES = {
    6: "CANNOT_PARSE_TEXT",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    53: "TYPE_MISMATCH",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    128: "TOO_LARGE_ARRAY_SIZE",
    131: "TOO_LARGE_STRING_SIZE",
    190: "SIZES_OF_ARRAYS_DONT_MATCH",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    377: "CANNOT_PARSE_BOOL",
}

_CODE = re.compile(r"Code: (\d+)")


def error_code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def classify(exc: BaseException) -> RejectedDataError | RetryableStorageError:
    """Wrap a failure as RejectedDataError or RetryableStorageError (original as __cause__)."""
    code = error_code(exc)
    # DataError / ValueError / TypeError: clickhouse-connect could not serialise the values
    # into the column types before anything was sent.
    rejected = isinstance(exc, (DataError, ValueError, TypeError)) or code in BAD_DATA_CODES
    if isinstance(exc, ProgrammingError) and code is None:
        rejected = True  # e.g. a frame whose columns do not fit the table, raised before sending
    label = BAD_DATA_CODES.get(code or -1, type(exc).__name__)
    wrapped = (RejectedDataError if rejected else RetryableStorageError)(f"{label}: {str(exc)[:500]}")
    wrapped.__cause__ = exc
    return wrapped


@contextmanager
def storage_errors() -> Iterator[None]:
    """Re-raise any ClickHouse or connection failure inside the block as a classified error."""
    try:
        yield
    except (RejectedDataError, RetryableStorageError):
        raise
    except (ClickHouseError, OSError, ValueError, TypeError) as exc:
        raise classify(exc) from exc
