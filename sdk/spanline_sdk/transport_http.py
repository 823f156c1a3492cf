"""Spans to the receiver over HTTP: canonical JSON, gzip, the tenant's API key (the default export).

One keep-alive connection per exporter thread (``http.client``, standard library). The
receiver decides the tenant from the key, hashes raw user ids with that tenant's salt, and
answers 200 (all stored in Kafka), 207 (some refused, each with its reason; the rest stored),
413 (body too large: the batch is halved and sent again), 401/403 (bad key: undeliverable),
429/5xx (retried, honouring Retry-After), or another 4xx (the batch is refused as sent).
A retry after a partial success re-sends some spans; the worker stores re-sent spans once.
"""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from spanline_sdk.config import ConfigError
from spanline_sdk.encode import Rejected, encodable, encode
from spanline_sdk.exporter import Undeliverable

SPANS_PATH = "/v1/spans"
#: gzip level 1: most of the size gain for a fraction of the CPU (the exporter shares the GIL).
GZIP_LEVEL = 1
#: Longest part of a receiver's error answer quoted in a log line.
_ERROR_CHARS = 300
#: How a keep-alive connection the receiver closed while idle fails on its next request.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class ReceiverBusy(Exception):
    """The receiver (or Kafka behind it) cannot take spans now; retry after ``retry_after_s``."""

    def __init__(self, status: int, detail: str, retry_after_s: float | None) -> None:
        super().__init__(f"receiver answered {status}: {detail}")
        self.retry_after_s = retry_after_s


def spans_url(endpoint: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of the spans endpoint for a receiver's base URL."""
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the receiver endpoint must be an http(s) URL like http://host:4318, not {endpoint!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(SPANS_PATH):
        path += SPANS_PATH
    return parts.scheme, parts.hostname, parts.port, path


class HttpTransport:
    """POSTs batches to the receiver's ``/v1/spans`` with ``Authorization: Bearer <api key>``."""

    def __init__(self, endpoint: str, api_key: str) -> None:
        self._scheme, self._host, self._port, self._path = spans_url(endpoint)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": "spanline-sdk",
        }
        self._connection: http.client.HTTPConnection | None = None

    def send(self, spans: list[dict[str, Any]], timeout_s: float) -> list[Rejected]:
        return self._send(spans, list(range(len(spans))), timeout_s)

    def close(self, timeout_s: float) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _send(self, spans: Sequence[dict[str, Any]], positions: list[int], timeout_s: float) -> list[Rejected]:
        """Send ``spans`` (at ``positions`` of the exporter's batch); the refused ones, by position."""
        try:
            body = encode(spans)
        except (TypeError, ValueError):
            kept, refused = encodable(spans)
            rejected = [Rejected(positions[r.index], r.reason) for r in refused]
            if kept:
                rejected += self._send([spans[i] for i in kept], [positions[i] for i in kept], timeout_s)
            return sorted(rejected, key=lambda r: r.index)
        status, retry_after, answer = self._post(gzip.compress(body, GZIP_LEVEL), timeout_s)
        if status == 200:
            return []
        if status == 207:
            return [Rejected(positions[e["index"]], e["reason"]) for e in json.loads(answer)["errors"]]
        detail = answer[:_ERROR_CHARS].decode(errors="replace")
        if status == 413 and len(spans) > 1:
            half = len(spans) // 2
            return self._send(spans[:half], positions[:half], timeout_s) + self._send(
                spans[half:], positions[half:], timeout_s
            )
        if status in (401, 403):
            raise Undeliverable(f"the receiver refused the API key ({status}: {detail}); check SPANLINE_SDK_API_KEY")
        if status in (408, 429) or status >= 500:
            raise ReceiverBusy(status, detail, retry_after)
        return [Rejected(p, f"receiver answered {status}: {detail}") for p in positions]

    def _post(self, body: bytes, timeout_s: float) -> tuple[int, float | None, bytes]:
        reused = self._connection is not None
        try:
            return self._post_once(body, timeout_s)
        except _STALE:
            if not reused:
                raise
            return self._post_once(body, timeout_s)  # the receiver closed an idle keep-alive connection

    def _post_once(self, body: bytes, timeout_s: float) -> tuple[int, float | None, bytes]:
        connection = self._connect(timeout_s)
        try:
            connection.request("POST", self._path, body=body, headers=self._headers)
            response = connection.getresponse()
            answer = response.read()
        except Exception:
            connection.close()  # a broken or timed-out connection is never reused
            self._connection = None
            raise
        return response.status, _seconds(response.getheader("Retry-After")), answer

    def _connect(self, timeout_s: float) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is None:
            kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            connection = self._connection = kind(self._host, self._port, timeout=timeout_s)
        else:
            connection.timeout = timeout_s
            if connection.sock is not None:
                connection.sock.settimeout(timeout_s)
        return connection


def _seconds(header: str | None) -> float | None:
    """A Retry-After given in seconds (an HTTP date is taken as no hint)."""
    try:
        return max(float(header), 0.0) if header is not None else None
    except ValueError:
        return None
