"""Redaction of captured content: personal data and secrets never leave the process.

Runs on the SDK's background thread, only when content capture is on. Patterns err on the
side of redacting: a long mixed letters-and-digits token is treated as a secret, and any
13–19 digit run that passes the Luhn check as a card number.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

_SECRET = re.compile(
    r"""
    \bBearer\s+[A-Za-z0-9._~+/-]+=*                          # Authorization headers
    | \beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+  # JWTs
    | \b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}                      # OpenAI / Anthropic / Stripe style
    | \bAKIA[0-9A-Z]{16}\b                                   # AWS access key ids
    | \bgh[pousr]_[A-Za-z0-9]{30,}\b                         # GitHub tokens
    | \bAIza[0-9A-Za-z_-]{35}                                # Google API keys
    | \bxox[abprs]-[A-Za-z0-9-]{10,}                         # Slack tokens
    | \b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}\b  # long mixed tokens
    """,
    re.VERBOSE,
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"""
    (?<![\w+])\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){2,4}(?!\w)  # international
    | (?<![\w(])(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b                           # North American
    """,
    re.VERBOSE,
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return REDACTED if _luhn_ok(digits) else match.group()


def redact(text: str) -> str:
    """``text`` with secrets, emails, card numbers and phone numbers replaced by [REDACTED]."""
    text = _SECRET.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(REDACTED, text)
