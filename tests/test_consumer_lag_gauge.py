"""The consumer-lag gauge survives a rebalance that revokes a partition while it is being read.

aiokafka's consumer runs on Faust's consumer thread, so a partition listed by ``assignment()``
can be revoked before ``highwater()`` is asked about it; aiokafka then asserts. A timer that
raised would crash the worker (seen in tests/faults/test_rebalance.py), so the gauge skips it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from spanline.metrics import WORKER_CONSUMER_LAG
from spanline.streams.app import _record_consumer_lag
from spanline.streams.commit import StoredOffsets

TOPIC = "spans-lag-gauge"


class RebalancingConsumer:
    """Partition 0 is revoked between ``assignment()`` and ``highwater()``; partition 1 stays."""

    def assignment(self) -> set[TP]:
        return {TP(TOPIC, 0), TP(TOPIC, 1)}

    def highwater(self, tp: TP) -> int:
        assert tp.partition == 1, "Partition is not assigned"
        return 120


def test_a_partition_revoked_mid_read_is_left_out_and_the_others_are_reported() -> None:
    stored = StoredOffsets(TOPIC)
    stored.start(1, 100)
    asyncio.run(_record_consumer_lag(SimpleNamespace(consumer=RebalancingConsumer()), stored))  # type: ignore[arg-type]
    assert WORKER_CONSUMER_LAG.labels(TOPIC, "1")._value.get() == 20
    assert (TOPIC, "0") not in {labels for labels in WORKER_CONSUMER_LAG._metrics}
