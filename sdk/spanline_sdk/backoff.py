"""The back-off between tries, shared with the server's retry policy (``spanline.retrying``)."""

from __future__ import annotations

import random

#: Doublings past this cannot raise the delay further (and 2.0**n must stay a float).
_MAX_EXPONENT = 60


def jittered_delay(attempt: int, initial_s: float, max_s: float, retry_after_s: float | None = None) -> float:
    """Seconds to wait after failed try ``attempt`` (1, 2, …).

    Uniform between half the first delay and ``initial_s * 2**(attempt - 1)`` capped at
    ``max_s``: the jitter keeps many clients of one recovering service from retrying in step,
    the floor keeps a failing call from spinning. A server-given Retry-After is a minimum.
    """
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    return max(random.uniform(min(initial_s / 2, ceiling), ceiling), retry_after_s or 0.0)
