"""`spanline report`: the dashboards' panels as one self-contained HTML file, rendered by
headless Chromium (Debian's `chromium`) to check the charts really draw.

Spans from the real pipeline (generator -> process_batch) are stored in the chDB path of a
Spanline home; the CLI runs as a separate process against that home, as a user would run it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from spanline.contracts import load_contracts
from spanline.dashboards.catalog import build_dashboards
from spanline.dashboards.formatting import format_value
from tests.support.chdb import migrated_chdb
from tests.support.stack import clean_env
from tests.test_dashboard_queries import seed, seeded_spans

PANELS = [p for d in build_dashboards(load_contracts()) for p in d.panels]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    home = tmp_path_factory.mktemp("report-home")
    spans = seeded_spans(start=datetime.now(UTC) - timedelta(minutes=45), minutes=40, rate=3)
    with migrated_chdb(home / "clickhouse", "spanline") as client:  # closed: the CLI process opens this path next
        seed(client, "spanline", spans)
    return home, spans


@pytest.fixture(scope="module")
def report(home: tuple[Path, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    env = clean_env() | {"SPANLINE_HOME": str(home[0])}
    done = subprocess.run(
        [sys.executable, "-m", "spanline.cli", "report", "--since", "1h", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote {len(PANELS)} panels and " in done.stdout
    return out


def test_report_is_self_contained_and_shows_every_panel(report: Path, home: tuple[Path, pd.DataFrame]) -> None:
    html = report.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the report must not fetch anything"
    for panel in PANELS:
        assert f">{panel.title.replace('&', '&amp;')}</h3>" in html, panel.title
    assert "query failed" not in html and "No data in this window" not in html
    charts = sum(p.kind in ("timeseries", "bargauge") for p in PANELS)
    assert html.count("<svg") == charts + html.count('<svg class="waterfall"')
    assert html.count("<polyline") >= sum(p.kind == "timeseries" for p in PANELS)
    spend = home[1]["cost_usd"].sum()
    assert f'>{format_value(spend, "currencyUSD")}</span><span class="label">spend_usd<' in html
    assert 'class="marker"' in html  # alert history and the model version change drawn on the charts


def test_report_draws_the_waterfalls_of_the_top_traces(report: Path, home: tuple[Path, pd.DataFrame]) -> None:
    html = report.read_text(encoding="utf-8")
    spans = home[1]
    window = spans[spans["start_time"] >= pd.Timestamp(datetime.now(UTC) - timedelta(hours=1))]
    grouped = window.groupby("trace_id")
    slowest = (grouped["end_time"].max() - grouped["start_time"].min()).sort_values(ascending=False).index[:3]
    costliest = grouped["cost_usd"].sum().sort_values(ascending=False).index[0]
    sections = re.findall(r'<article class="panel trace" id="trace-(\w+)".*?</article>', html, flags=re.S)
    assert sections[:3] == list(slowest) and costliest in sections
    for trace_id in sections:
        card = re.search(rf'id="trace-{trace_id}".*?</article>', html, flags=re.S)
        assert card is not None and "spanline trace " + trace_id in card.group(0)
        bars = card.group(0).count("<rect ")
        assert bars == int(spans["trace_id"].eq(trace_id).sum()), trace_id  # one bar per span
        assert 'stroke="#161719"' in card.group(0)  # the critical path is outlined
    assert f'<a href="#trace-{slowest[0]}">{slowest[0]}</a>' in html  # the trace tables link to the waterfall


def test_chromium_renders_the_charts(report: Path, tmp_path: Path, chromium: str) -> None:
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1400,2600", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 2600)
    colors = image.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200, "the screenshot is (nearly) blank"
    palette_pixels = sum(n for n, rgb in colors if rgb in {(0x32, 0x74, 0xD9), (0xFF, 0x98, 0x30), (0x56, 0xA6, 0x4B)})
    assert palette_pixels > 2000, "no chart lines or bars in the series colours"

    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for panel in PANELS:
        assert panel.title.replace("&", "&amp;") in dom.stdout, panel.title
    assert dom.stdout.count("<polyline") >= sum(p.kind == "timeseries" for p in PANELS)
