"""A provider outage at a low request rate pages once, critical, within 2 minutes, and stays
paged until it ends.

At 1 request/s a model takes a few dozen calls per 15 minutes and a handful per 2 minutes. The
rule's ``min_traffic`` is a question about the scope (does this model carry enough traffic to
page about?), so it is asked of the slowest tier's window; asked of the critical tier's 2 minutes
it held that tier back, and the high tier's page resolved mid-outage whenever a quiet 2 minutes
won, then paged again (two pages for one outage). The independent traffic model goes through
``process_batch``, the windows' ``aggregate``, the real evaluator and the real dispatcher
(``spanline.alert_evaluation.pages_of``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from spanline.alert_evaluation import WEEK_START, pages_of
from spanline.alert_replay import replay
from spanline.simulator.traffic_model import TrafficModel
from spanline.simulator.traffic_overlays import Overlay
from spanline.streams.pricing import PriceCatalog

pytestmark = pytest.mark.scenarios

LEARNT_HOURS = 1
OUTAGE = Overlay(
    name="outage",
    start=WEEK_START + timedelta(hours=LEARNT_HOURS, minutes=20),
    duration=timedelta(minutes=20),
    provider="anthropic",
    knobs={"server_error": 0.85},
)


def test_a_low_rate_outage_pages_once_critical_within_two_minutes_and_stays_paged() -> None:
    model = TrafficModel(start=WEEK_START, requests_per_s=1.0, overlays=(OUTAGE,))
    days = (LEARNT_HOURS * 60 + 45) / 1440  # the outage and 5 minutes after it
    events = replay(model, days, PriceCatalog.load(), warmup_hours=LEARNT_HOURS).events
    listing = "\n".join(f"{e.at:%H:%M} {e.state} {e.severity} {e.rule} {e.scope}" for e in events)

    pages = pages_of(events)
    assert [page.rule for page in pages] == ["error_rate"], listing
    assert OUTAGE.start < pages[0].at <= OUTAGE.start + timedelta(minutes=2, seconds=30), listing
    at_page = [e for e in events if e.rule == "error_rate" and e.state == "firing" and e.at <= pages[0].at]
    assert "critical" in {e.severity for e in at_page}, listing
    paged = {e.dedup_key for e in at_page if e.severity == "critical"}
    resolved_early = [e for e in events if e.dedup_key in paged and e.state == "resolved" and e.at < OUTAGE.end]
    assert resolved_early == [], listing
