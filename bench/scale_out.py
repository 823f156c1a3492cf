"""Scale-out: spans/s with 1 and with 2 workers in one consumer group on the same partitions.

For each worker count, the workers join one consumer group on a fresh embedded broker, then
N spans (the simulator's workload, 500 per Kafka message) are produced to ``--partitions``
partitions; the clock runs from the first send to "every span stored". Each worker has its own
chDB (chDB admits one process per path; with a ClickHouse server they would share one), so
the figure is the processing capacity of the group on this machine, broker included.

    python bench/scale_out.py --spans 200000 --partitions 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.embedded import bench_stack
from bench.pipeline_throughput import spans_for
from bench.report import publish
from spanline.kafka.publish import SpanPublisher


def spans_per_second(spans: list[dict[str, object]], workers: int, partitions: int) -> float:
    with bench_stack(partitions=partitions) as stack:
        stack.start_workers(workers)
        time.sleep(3.0)  # let the group settle: joins on tansu take about a session timeout / 2
        started = time.perf_counter()
        publisher = SpanPublisher(stack.bootstrap_servers, stack.settings.topic_spans)
        for start in range(0, len(spans), 50_000):
            publisher.send(spans[start : start + 50_000], "bench")
        publisher.flush()
        publisher.close()
        while stack.stored() < len(spans):
            time.sleep(0.2)
        return len(spans) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    spans = spans_for(args.spans)
    one = spans_per_second(spans, 1, args.partitions)
    two = spans_per_second(spans, 2, args.partitions)
    publish(
        "scale_out",
        {
            "spans": len(spans),
            "partitions": args.partitions,
            "one_worker_spans_per_s": round(one),
            "two_workers_spans_per_s": round(two),
            "speedup": round(two / one, 2),
        },
    )


if __name__ == "__main__":
    main()
