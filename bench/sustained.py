"""Sustained load: one worker fed for ``--seconds`` at ``--rate`` spans/s (or as fast as the
producer goes with ``--rate 0``); reports the rate the worker kept up, its backlog at the end
and its memory (RSS sampled every second: start, peak, end and the trend over the second
half), which must stay bounded however long the load lasts.

    python bench/sustained.py --seconds 60 --rate 0
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.embedded import bench_stack
from bench.pipeline_throughput import spans_for
from bench.report import publish
from spanline.kafka.publish import SpanPublisher

CHUNK = 5_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=0, help="spans per second; 0 = as fast as the producer goes")
    args = parser.parse_args()
    template = spans_for(100_000)
    with bench_stack() as stack:
        stack.start_workers(1)
        worker = stack.workers[0]
        assert worker.process is not None
        sent = 0
        stop = threading.Event()

        def produce() -> None:
            nonlocal sent
            publisher = SpanPublisher(stack.bootstrap_servers, stack.settings.topic_spans)
            started = time.perf_counter()
            while not stop.is_set():
                start = sent % len(template)
                chunk = template[start : start + CHUNK]
                lap = sent // len(template)
                # new traces each lap: a repeated span is stored once (streams/resends.py)
                publisher.send([{**span, "trace_id": f"{span['trace_id']}.{lap}"} for span in chunk], "bench")
                sent += len(chunk)
                if args.rate:
                    time.sleep(max(0.0, started + sent / args.rate - time.perf_counter()))
            publisher.flush()
            publisher.close()

        producer = threading.Thread(target=produce)
        began = time.perf_counter()
        producer.start()
        samples: list[tuple[float, float, int]] = []  # (elapsed s, RSS MB, stored)
        while time.perf_counter() - began < args.seconds:
            time.sleep(1.0)
            samples.append(
                (
                    time.perf_counter() - began,
                    rss_mb(worker.process.pid),
                    stack.stored_reported(),  # the stats: a count query would take the sink thread
                )
            )
        stop.set()
        producer.join()
        stats = worker.stats()
        resends = int(stats["resends"])
        if resends:
            raise SystemExit(f"the worker took {resends} spans for re-sends: the benchmark's spans are not all new")
    elapsed, rss, stored = (np.array(column) for column in zip(*samples, strict=True))
    second_half = elapsed >= elapsed[-1] / 2
    slope = np.polyfit(elapsed[second_half], rss[second_half], 1)[0] if second_half.sum() > 2 else 0.0
    publish(
        "sustained",
        {
            "seconds": round(float(elapsed[-1]), 1),
            "offered_spans_per_s": round(sent / float(elapsed[-1])),
            "stored_spans_per_s": round(float(stored[-1]) / float(elapsed[-1])),
            "backlog_spans_at_end": int(sent - stored[-1]),
            "worker_rss_mb_start": round(float(rss[0])),
            "worker_rss_mb_peak": round(float(rss.max())),
            "worker_rss_mb_end": round(float(rss[-1])),
            "worker_rss_mb_per_min_2nd_half": round(float(slope) * 60, 1),
            # held for SPANLINE_DEDUP_WINDOW_S of message time: grows for that long, then levels
            "resend_keys_mb_end": round(stats["resend_key_bytes"] / 2**20),
        },
    )


if __name__ == "__main__":
    main()
