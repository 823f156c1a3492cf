"""The few exceptions Spanline raises on purpose; everything else is a bug."""


class SpanlineError(Exception):
    """Base of Spanline's own errors: the message says what to do."""


class ConfigError(SpanlineError):
    """Settings or a config file are wrong."""


class RetryableStorageError(SpanlineError):
    """ClickHouse could not take the write now (down, overloaded, timeout): retry later."""


class RejectedDataError(SpanlineError):
    """ClickHouse refused the data itself: retrying will not help, dead-letter it."""
