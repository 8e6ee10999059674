"""The rule catalogue: every rule's permanent id, level, severity and messages, loaded from data.

``rules.toml`` is the single place a rule is defined; TOML itself refuses a duplicate id, and
:func:`load_catalogue` refuses an entry with an unknown level or severity.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, get_args

from validators.findings import Finding, Level, Severity


class _SafeFormat(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    level: Level
    severity: Severity
    since: str
    message_nb: str
    message_en: str
    title_nb: str = ""  # a short name, shown beside the id wherever a rule is listed
    fix_nb: str = ""  # what usually fixes it, for quality staff and vendors
    applies_to: tuple[str, ...] = ("*",)  # "Type/version" keys, or "*" for every model

    def applies(self, model_key: str) -> bool:
        return "*" in self.applies_to or model_key in self.applies_to

    def finding(self, path: str, codelist_version: str | None = None, **params: Any) -> Finding:
        values = _SafeFormat(params)
        return Finding(
            rule_id=self.rule_id,
            severity=self.severity,
            level=self.level,
            path=path,
            message_nb=self.message_nb.format_map(values),
            message_en=self.message_en.format_map(values),
            codelist_version=codelist_version,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "level": self.level,
            "severity": self.severity,
            "since": self.since,
            "applies_to": list(self.applies_to),
            "message_nb": self.message_nb,
            "message_en": self.message_en,
            "title_nb": self.title_nb,
            "fix_nb": self.fix_nb,
        }


def parse_catalogue(text: str) -> dict[str, Rule]:
    raw = tomllib.loads(text)
    rules: dict[str, Rule] = {}
    for rule_id, entry in raw.items():
        if entry["level"] not in get_args(Level):
            raise ValueError(f"rule {rule_id}: unknown level {entry['level']!r}")
        if entry["severity"] not in get_args(Severity):
            raise ValueError(f"rule {rule_id}: unknown severity {entry['severity']!r}")
        rules[rule_id] = Rule(
            rule_id=rule_id,
            level=entry["level"],
            severity=entry["severity"],
            since=entry["since"],
            message_nb=entry["message_nb"],
            message_en=entry["message_en"],
            title_nb=entry["title_nb"],
            fix_nb=entry["fix_nb"],
            applies_to=tuple(entry.get("applies_to", ["*"])),
        )
    return rules


@cache
def load_catalogue() -> dict[str, Rule]:
    text = resources.files("validators").joinpath("rules.toml").read_text(encoding="utf-8")
    return parse_catalogue(text)


def rule(rule_id: str) -> Rule:
    return load_catalogue()[rule_id]
