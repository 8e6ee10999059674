"""What the embedded log promises beyond the shared contract: durable, all-or-nothing batches."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eventlog.embedded import EmbeddedEventLog
from eventlog.port import LogUnavailableError, ProduceRecord


async def test_a_batch_is_stored_whole_or_not_at_all(tmp_path: Path) -> None:
    log = EmbeddedEventLog(tmp_path / "log.sqlite3")
    await log.start()
    await log.ensure_topics(["t"])
    await log.produce([ProduceRecord("t", b"k", b"first")])
    # A trigger makes the third insert of the next batch fail half-way through.
    raw = sqlite3.connect(tmp_path / "log.sqlite3")
    raw.execute(
        "CREATE TRIGGER fail_third BEFORE INSERT ON records WHEN NEW.value = x'626f6f6d'"
        " BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
    )
    raw.commit()
    raw.close()
    batch = [ProduceRecord("t", b"k", v) for v in (b"a", b"b", b"boom", b"c")]
    with pytest.raises(LogUnavailableError):
        await log.produce(batch)
    assert sum((await log.end_offsets("t")).values()) == 1
    await log.close()


async def test_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = EmbeddedEventLog(path)
    await log.start()
    await log.produce([ProduceRecord("t", f"k{i}".encode(), b"v") for i in range(7)])
    await log.close()
    again = EmbeddedEventLog(path)
    await again.start()
    assert sum((await again.end_offsets("t")).values()) == 7
    await again.close()


async def test_an_unusable_location_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "log.sqlite3").mkdir()  # a directory where the file should be (even root fails)
    with pytest.raises(LogUnavailableError):
        await EmbeddedEventLog(tmp_path / "log.sqlite3").start()
