"""Logical topics and their physical names (the prefix comes from settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    def accepted(self, message_type: str, version: int) -> str:
        """Accepted events of one message type and major version."""
        return f"{self.prefix}.accepted.{message_type}.v{version}"

    @property
    def quarantine(self) -> str:
        """Rejected items with their findings."""
        return f"{self.prefix}.quarantine"

    @property
    def receipts(self) -> str:
        """Receipt updates."""
        return f"{self.prefix}.receipts"
