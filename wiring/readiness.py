"""The readiness rule behind ``GET /readyz`` and ``intake_ready``.

Checks, each probed on every request to ``/readyz``:

* ``event_log``: the log answers (a metadata request to Kafka; a read of the embedded log), and
  this process's last produce did not fail — a failed produce with none succeeding since, in the
  last :data:`PRODUCE_MEMORY_SECONDS`, is what senders see as 503;
* ``store``: the store takes a write (``statestore.health``: this process's row of
  ``readiness_probes``; on SQLite also that the database file is still the one opened);
* ``consumer:<name>``: each consumer this process runs is running.

A probe that fails outright (an error) makes its check ``unavailable`` at once. A probe that
gets no answer within ``INTAKE_READINESS_TIMEOUT_SECONDS`` is ``slow``: one slow probe (a garbage
collection, a leader election, a checkpoint) leaves the process ready; two in a row make the
check ``unavailable``. The process is ready when no check is ``unavailable``, ``vanished`` or
``starting``. ``docs/operations.md`` says the same for operators.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from statestore.health import StoreFileGone, StoreProbe
from wiring.metrics import HasHealth
from wiring.runtime import Runtime

PRODUCE_MEMORY_SECONDS = 30.0
NOT_READY = frozenset({"unavailable", "vanished", "starting"})


@dataclass
class _Probe:
    """One check's probe and how its last ones went."""

    run: Callable[[], Awaitable[None]]
    slow_in_a_row: int = 0


@dataclass
class Readiness:
    runtime: Runtime
    consumers: Mapping[str, HasHealth]
    _probes: dict[str, _Probe] = field(default_factory=dict)

    def __post_init__(self) -> None:
        settings = self.runtime.settings
        url = make_url(settings.resolved_database_url)
        sqlite_file = (
            Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None
        )
        store = StoreProbe(
            self.runtime.engines, f"{socket.gethostname()}:{os.getpid()}", sqlite_file
        )
        self._probes = {
            "event_log": _Probe(lambda: self.runtime.event_log.ping()),
            "store": _Probe(store.write),
        }

    async def evaluate(self) -> dict[str, str]:
        """Every check's state (see the module's rule)."""
        names = list(self._probes)
        results = await asyncio.gather(*(self._probe(n) for n in names))
        checks = dict(zip(names, results, strict=True))
        if checks["event_log"] == "ok" and self._last_produce_failed():
            checks["event_log"] = "unavailable"
        for name, consumer in self.consumers.items():
            checks[f"consumer:{name}"] = "ok" if consumer.healthy else "starting"
        self.runtime.metrics.record_readiness(checks)
        return checks

    @staticmethod
    def ready(checks: Mapping[str, str]) -> bool:
        return not NOT_READY.intersection(checks.values())

    async def _probe(self, name: str) -> str:
        probe = self._probes[name]
        timeout = self.runtime.settings.readiness_timeout_seconds
        try:
            await asyncio.wait_for(probe.run(), timeout)
        except TimeoutError:
            probe.slow_in_a_row += 1
            return "slow" if probe.slow_in_a_row < 2 else "unavailable"
        except StoreFileGone:
            probe.slow_in_a_row = 0
            return "vanished"
        except Exception:  # any failure to answer means "not ready", whatever its type
            probe.slow_in_a_row = 0
            if name == "store":
                self.runtime.metrics.store_errors.labels("gateway").inc()
            return "unavailable"
        probe.slow_in_a_row = 0
        return "ok"

    def _last_produce_failed(self) -> bool:
        outcomes = self.runtime.produce_outcomes
        failed, succeeded = outcomes.last_failure, outcomes.last_success
        return (
            failed is not None
            and failed > (succeeded or 0.0)
            and (time.monotonic() - failed < PRODUCE_MEMORY_SECONDS)
        )
