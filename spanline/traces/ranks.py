"""How traces are ranked (sql/statements/traces_ranked.sql): a light module, so the CLI's parser
can offer the rankings without importing ClickHouse's client."""

from __future__ import annotations

from typing import Literal, get_args

Rank = Literal["slowest", "costliest", "failed", "retried"]
RANKS: tuple[str, ...] = get_args(Rank)
