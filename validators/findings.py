"""A finding is one rule's verdict on one place in a message; receipts carry them verbatim."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["structure", "identifier", "codelist", "business", "integrity"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    severity: Severity
    level: Level
    path: str
    message_nb: str
    message_en: str
    codelist_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity,
            "level": self.level,
            "path": self.path,
            "message_nb": self.message_nb,
            "message_en": self.message_en,
            "codelist_version": self.codelist_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            rule_id=data["rule_id"],
            severity=data["severity"],
            level=data["level"],
            path=data["path"],
            message_nb=data["message_nb"],
            message_en=data["message_en"],
            codelist_version=data.get("codelist_version"),
        )


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
