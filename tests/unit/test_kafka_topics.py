"""Topics the Kafka adapter creates: their replicas follow the settings, and with more than one
replica acks=all survives one broker down."""

from __future__ import annotations

from pathlib import Path

from eventlog.kafka import KafkaEventLog
from wiring.runtime import build_event_log
from wiring.settings import Settings


def test_replicas_and_min_insync_follow_the_setting(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        event_log="kafka",
        kafka_bootstrap="127.0.0.1:9",
        topic_replication_factor=3,
    )
    log = build_event_log(settings)
    assert isinstance(log, KafkaEventLog)
    configs = log._topic_configs()
    assert configs["min.insync.replicas"] == "2"
    assert int(configs["max.message.bytes"]) > 15 * 1024 * 1024

    single = KafkaEventLog("127.0.0.1:9")
    assert "min.insync.replicas" not in single._topic_configs()
