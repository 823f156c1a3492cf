"""Batch cutting: a redelivery re-forms recorded batches at the same offsets."""

from __future__ import annotations

from spanline.streams.batcher import Message, PartitionBatcher


def messages(partition: int, offsets: range) -> list[Message]:
    return [Message(partition, offset, b"[]", "test") for offset in offsets]


def bounds(batcher: PartitionBatcher) -> list[tuple[int, int, int, bool]]:
    return [(b.partition, b.first_offset, b.last_offset, b.replayed) for b in batcher.cut()]


def test_fresh_partitions_are_cut_at_whatever_arrived() -> None:
    batcher = PartitionBatcher()
    incoming = messages(0, range(0, 5)) + messages(1, range(10, 12))
    assert batcher.new_positions(incoming) == {0: 0, 1: 10}
    for partition in (0, 1):
        batcher.resync(partition, [])
    batcher.add(incoming)
    assert bounds(batcher) == [(0, 0, 4, False), (1, 10, 11, False)]
    assert batcher.new_positions(messages(0, range(5, 7))) == {}


def test_redelivery_waits_for_the_whole_recorded_batch_and_reuses_its_bounds() -> None:
    batcher = PartitionBatcher()
    first = messages(0, range(100, 130))
    assert batcher.new_positions(first) == {0: 100}
    batcher.resync(0, [(100, 149), (150, 159)])
    batcher.add(first)
    assert bounds(batcher) == []  # 130..149 still missing
    batcher.add(messages(0, range(130, 175)))
    assert bounds(batcher) == [(0, 100, 149, True), (0, 150, 159, True), (0, 160, 174, False)]


def test_redelivery_starting_inside_a_recorded_batch_keeps_its_token() -> None:
    batcher = PartitionBatcher()
    batcher.resync(0, [(100, 149)])
    batcher.add(messages(0, range(120, 150)))
    [batch] = batcher.cut()
    assert (batch.first_offset, batch.last_offset, len(batch.messages)) == (100, 149, 30)
    assert batch.token("spans", "id1") == "spans:id1:0:100-149"


def test_free_batch_stops_before_a_recorded_one() -> None:
    batcher = PartitionBatcher()
    batcher.resync(0, [(50, 59)])
    batcher.add(messages(0, range(40, 55)))
    assert bounds(batcher) == [(0, 40, 49, False)]


def test_rewind_is_a_new_position_and_revoked_partitions_are_forgotten() -> None:
    batcher = PartitionBatcher()
    batcher.resync(0, [])
    batcher.add(messages(0, range(0, 10)))
    assert batcher.new_positions(messages(0, range(3, 5))) == {0: 3}
    batcher.forget({0})
    assert bounds(batcher) == []


def test_under_a_backlog_only_full_batches_are_cut_and_the_rest_waits() -> None:
    batcher = PartitionBatcher(max_messages=10)
    batcher.resync(0, [])
    batcher.resync(1, [])
    batcher.add(messages(0, range(0, 25)) + messages(1, range(0, 4)))
    assert [(b.partition, b.first_offset, b.last_offset) for b in batcher.cut_full()] == [(0, 0, 9), (0, 10, 19)]
    assert batcher.pending() == 9  # 5 of partition 0, 4 of partition 1
    assert batcher.cut_waiting(at_least_s=60) == []  # nothing waited a minute
    assert bounds(batcher) == [(0, 20, 24, False), (1, 0, 3, False)]  # caught up: everything


def test_messages_that_waited_long_enough_are_cut_whatever_their_number() -> None:
    batcher = PartitionBatcher(max_messages=10)
    batcher.resync(0, [])
    batcher.add(messages(0, range(0, 3)))
    assert [(b.first_offset, b.last_offset) for b in batcher.cut_waiting(at_least_s=0)] == [(0, 2)]
    assert batcher.pending() == 0


def test_recorded_batches_are_replayed_whole_even_under_a_backlog() -> None:
    batcher = PartitionBatcher(max_messages=10)
    batcher.resync(0, [(0, 29)])
    batcher.add(messages(0, range(0, 33)))
    assert [(b.first_offset, b.last_offset, b.replayed) for b in batcher.cut_full()] == [(0, 29, True)]
    assert batcher.pending() == 3
