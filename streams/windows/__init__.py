"""Per-minute windows in the stream worker.

After a partition batch is stored in ClickHouse, its rows are aggregated column-wise by the
grain (tenant, service, feature, provider, model, route, kind, minute) into partials that merge
into the partition's open windows (the window contract shared with the alerting stage lives in
spanline/windows/: aggregate.py, with DDSketch bins computed with numpy in sketches.py). Each
partition has an event-time watermark (the later of latest start_time - allowed lateness and
latest trace-root start_time - grace); a window [m, m+1 min) closes when the watermark passes
m + 1 min and goes to the ``metrics`` topic as one message per (partition, minute) (state.py
here, spanline/windows/records.py). Spans for a closed minute are late: stored in ClickHouse all
the same, counted in the next record's ``late_spans`` and aggregated into the first open minute.

Exactly-once without Faust tables: a closed window is sent to Kafka (ack awaited), then
recorded in ClickHouse's ``metric_windows``, and only then is its batch acked (manager.py).
When a worker (re)starts consuming a partition at offset R, the partition's state is rebuilt
from its last ``metric_windows`` row and the raw ``spans`` rows below R with the same
aggregation function as the live path; messages from R on are redelivered and added normally,
so nothing is counted twice (changelog.py). A crash between the Kafka ack and the
``metric_windows`` row re-emits an identical record, which MinuteMerger drops by (partition,
minute) (spanline/windows/merger.py). Idle partitions advance on wall clock (manager.py);
partitions that never report stop holding the merger back after a bounded event-time lead.
"""
