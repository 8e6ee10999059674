"""The partitioner must place keys exactly where Kafka's default partitioner does."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from eventlog.partitioner import murmur2, partition_for


def test_murmur2_matches_aiokafka_for_every_length_and_byte() -> None:
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(0, 70) for _ in range(20)]
    keys += [bytes([b]) * n for b in (0, 0x7F, 0x80, 0xFF) for n in range(1, 9)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key), key


@pytest.mark.parametrize(
    ("key", "expected"),
    # Values from Kafka's own UtilsTest.testMurmur2 (signed Java ints).
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected & 0xFFFFFFFF


def test_partition_is_stable_and_in_range() -> None:
    keys = [f"974600951\x1fobject-{i}".encode() for i in range(2000)]
    spread = {partition_for(k, 6) for k in keys}
    assert spread == set(range(6))
    assert [partition_for(k, 6) for k in keys] == [
        (aiokafka_murmur2(k) & 0x7FFFFFFF) % 6 for k in keys
    ]
