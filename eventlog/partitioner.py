"""Key → partition, the same way Kafka's default partitioner does it.

Using the very same function in the embedded log means an object's events land in the same
partition number whichever adapter runs, which keeps offsets stored with the state portable.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions
