"""Receivers of notifications: PagerDuty Events API v2, Slack incoming webhook, a generic JSON
webhook, and stdout/log. Each turns a :class:`Notification` into one HTTP request (aiohttp)
and classifies failures as retryable (network, 429, 5xx) or permanent (other 4xx: a bad key
or payload that retrying cannot fix). The dispatcher does the retrying.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TextIO

import aiohttp
from pydantic import SecretStr

from spanline.alerts.events import AlertEvent
from spanline.traces.links import grafana_trace_url, trace_command

log = logging.getLogger(__name__)
Action = Literal["trigger", "resolve"]
#: Our severities (docs/requirements.md §5) onto PagerDuty's (critical, error, warning, info).
PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_LIMIT = 1024  # PagerDuty payload.summary
SLACK_TEXT_LIMIT = 3000  # Slack section text
SLACK_HEADER_LIMIT = 150  # Slack header block (plain_text)
TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class Notification:
    """One message about one group: a trigger (new, updated or repeated) or a resolve.

    ``events`` are the group's firing members (a trigger) or the last resolved ones (a resolve);
    the first is the lead: its summary, runbook and diagnosis head the message.
    """

    group_key: str
    action: Action
    events: tuple[AlertEvent, ...]
    runbook_url: str
    repeat: bool = False
    grafana_url: str = ""  # base URL of the trace links; '' = commands only

    @property
    def example_traces(self) -> list[dict[str, str]]:
        """The lead alert's example traces, each with the command and the Grafana link that open it."""
        return [
            {"trace_id": trace_id, "command": trace_command(trace_id)}
            | ({"grafana": grafana_trace_url(self.grafana_url, trace_id)} if self.grafana_url else {})
            for trace_id in self.lead.example_trace_ids
        ]

    @property
    def lead(self) -> AlertEvent:
        return self.events[0]

    @property
    def summary(self) -> str:
        more = len(self.events) - 1
        text = self.lead.summary + (f" (+{more} more: {', '.join(self.scopes[1:4])})" if more > 0 else "")
        if more > 3:
            text = text[:-1] + ", …)"
        return text if self.action == "trigger" or text.startswith("resolved") else f"resolved: {text}"

    @property
    def scopes(self) -> list[str]:
        """Each member's scope as ``[severity] dim=value, …``, in the group's order (worst first)."""
        return [
            f"[{e.severity}] " + (", ".join(f"{k}={v}" for k, v in e.scope.items()) or "pipeline") for e in self.events
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_key": self.group_key,
            "action": self.action,
            "repeat": self.repeat,
            "summary": self.summary,
            "severity": self.lead.severity,
            "runbook": self.lead.runbook,
            "runbook_url": self.runbook_url,
            "runbook_branch": self.lead.runbook_branch,
            "example_traces": self.example_traces,
            "scopes": self.scopes,
            "alerts": [event.to_dict() for event in self.events],
        }


class DeliveryError(Exception):
    """A failed delivery; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Receiver(Protocol):
    name: str

    async def send(self, session: aiohttp.ClientSession, notification: Notification) -> None: ...


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    accepted: tuple[int, ...],
    headers: dict[str, str] | None = None,
) -> str:
    """POST JSON; returns the body text on an accepted status, else raises DeliveryError."""
    try:
        async with session.post(url, json=body, headers=headers, timeout=TIMEOUT) as response:
            text = await response.text()
            if response.status in accepted:
                return text
            retry_after = response.headers.get("Retry-After")
            retryable = response.status == 429 or response.status >= 500
            raise DeliveryError(
                f"HTTP {response.status}: {text[:200]}",
                retryable,
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc


def _custom_details(notification: Notification) -> dict[str, Any]:
    lead = notification.lead
    return {
        "rule": lead.rule,
        "scope": lead.scope,
        "value": lead.value,
        "threshold": lead.threshold,
        "started_at": lead.started_at.isoformat(),
        "runbook": lead.runbook,
        "runbook_branch": lead.runbook_branch,
        "diagnosis": lead.diagnosis,
        "example_traces": notification.example_traces,
        "alerts_in_group": [  # worst first
            {"dedup_key": e.dedup_key, "severity": e.severity, "scope": e.scope, "value": e.value}
            for e in notification.events
        ],
    }


@dataclass
class PagerDutyReceiver:
    """Events API v2: trigger/resolve keyed by the group's stable dedup_key (one incident)."""

    routing_key: SecretStr
    url: str = PAGERDUTY_EVENTS_URL
    source: str = "spanline"
    name: str = "pagerduty"

    def body(self, notification: Notification) -> dict[str, Any]:
        key = self.routing_key.get_secret_value()
        if notification.action == "resolve":
            return {"routing_key": key, "event_action": "resolve", "dedup_key": notification.group_key}
        lead = notification.lead
        return {
            "routing_key": key,
            "event_action": "trigger",
            "dedup_key": notification.group_key,
            "payload": {
                "summary": notification.summary[:SUMMARY_LIMIT],
                "source": self.source,
                "severity": PAGERDUTY_SEVERITY[lead.severity],
                "timestamp": lead.at.isoformat(),
                "component": lead.rule,
                "group": ",".join(f"{k}={v}" for k, v in lead.group.items()) or "pipeline",
                "class": lead.runbook_branch or lead.rule,
                "custom_details": _custom_details(notification),
            },
            "links": [{"href": notification.runbook_url, "text": f"Runbook: {lead.runbook} ({lead.runbook_branch})"}]
            + [
                {"href": example["grafana"], "text": f"Example trace {example['trace_id']}"}
                for example in notification.example_traces
                if "grafana" in example
            ],
            "client": "Spanline",
        }

    async def send(self, session: aiohttp.ClientSession, notification: Notification) -> None:
        await _post(session, self.url, self.body(notification), accepted=(200, 201, 202))


@dataclass
class SlackReceiver:
    """Incoming webhook with Block Kit blocks; ``text`` is the notification fallback."""

    url: SecretStr
    name: str = "slack"

    def body(self, notification: Notification) -> dict[str, Any]:
        lead = notification.lead
        icon = ":rotating_light:" if notification.action == "trigger" else ":white_check_mark:"
        state = "FIRING" if notification.action == "trigger" else "RESOLVED"
        header = f"{state} [{lead.severity}] {lead.rule}"[:SLACK_HEADER_LIMIT]
        diagnosis = json.dumps(lead.diagnosis, indent=1, default=str)
        scope = ", ".join(f"{k}={v}" for k, v in lead.scope.items()) or "pipeline"
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{icon} {notification.summary}"[:SLACK_TEXT_LIMIT]},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Scope*\n{scope}"},
                    {"type": "mrkdwn", "text": f"*Value / threshold*\n{lead.value:.4g} / {lead.threshold:.4g}"},
                    {"type": "mrkdwn", "text": f"*Runbook branch*\n{lead.runbook_branch or '-'}"},
                    {"type": "mrkdwn", "text": f"*Alerts in group*\n{len(notification.events)}"},
                ],
            },
        ]
        if len(notification.events) > 1:
            listing = "\n".join(f"• {scope}" for scope in notification.scopes)
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*Scopes, worst first*\n{listing}"[:SLACK_TEXT_LIMIT]},
                }
            )
        if notification.action == "trigger":
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*Diagnosis*\n```{diagnosis[: SLACK_TEXT_LIMIT - 20]}```"},
                }
            )
            examples = [
                f"`{example['command']}`" + (f" · <{example['grafana']}|Grafana>" if "grafana" in example else "")
                for example in notification.example_traces
            ]
            if examples:
                text = "*Example traces*\n" + "\n".join(examples)
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:SLACK_TEXT_LIMIT]}})
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"<{notification.runbook_url}|Runbook: {lead.runbook}> · `{notification.group_key}`",
                    }
                ],
            }
        )
        return {"text": f"{state}: {notification.summary}", "blocks": blocks}

    async def send(self, session: aiohttp.ClientSession, notification: Notification) -> None:
        await _post(session, self.url.get_secret_value(), self.body(notification), accepted=(200,))


@dataclass
class WebhookReceiver:
    """Any HTTP endpoint taking the notification as JSON (2xx = delivered)."""

    url: SecretStr
    name: str = "webhook"

    async def send(self, session: aiohttp.ClientSession, notification: Notification) -> None:
        await _post(session, self.url.get_secret_value(), notification.to_dict(), accepted=tuple(range(200, 300)))


@dataclass
class LogReceiver:
    """One JSON line per notification on ``stream`` (stdout) and a log record: always available."""

    stream: TextIO = field(default_factory=lambda: sys.stdout)
    name: str = "log"

    async def send(self, session: aiohttp.ClientSession, notification: Notification) -> None:
        log.warning("alert %s: %s", notification.action, notification.summary)
        print(json.dumps(notification.to_dict(), default=_json_default), file=self.stream, flush=True)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
