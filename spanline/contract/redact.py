"""Redaction of captured content, shared with the SDK (which redacts before sending): the
receiver redacts again what other clients send."""

from spanline_sdk.redact import REDACTED, redact

__all__ = ["REDACTED", "redact"]
