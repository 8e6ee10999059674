"""The event-log port (topics, partitions, keys, offsets, consumer groups) and its adapters."""

from eventlog.port import (
    ConsumedRecord,
    EventLog,
    LogConsumer,
    LogUnavailableError,
    OnAssign,
    ProduceRecord,
    TopicPartition,
)

__all__ = [
    "ConsumedRecord",
    "EventLog",
    "LogConsumer",
    "LogUnavailableError",
    "OnAssign",
    "ProduceRecord",
    "TopicPartition",
]
