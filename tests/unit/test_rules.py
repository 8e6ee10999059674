"""The rule catalogue is data with permanent, unique ids."""

from __future__ import annotations

import tomllib

import pytest

from validators.rules import load_catalogue, parse_catalogue

RULE = """
[{rule_id}]
level = "{level}"
severity = "error"
since = "HST_Avtale/1"
message_nb = "nb {{x}}"
message_en = "en {{x}}"
title_nb = "Tittel"
fix_nb = "Slik rettes det."
"""


def test_duplicate_ids_are_refused() -> None:
    text = RULE.format(rule_id="X-1", level="structure") * 2
    with pytest.raises(tomllib.TOMLDecodeError):
        parse_catalogue(text)


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown level"):
        parse_catalogue(RULE.format(rule_id="X-1", level="vibes"))


def test_findings_fill_in_parameters() -> None:
    rule = parse_catalogue(RULE.format(rule_id="X-1", level="business"))["X-1"]
    finding = rule.finding("/0/a", x="42")
    assert (finding.message_nb, finding.message_en, finding.level) == ("nb 42", "en 42", "business")
    assert rule.finding("/0/a").message_en == "en {x}"  # a missing parameter stays visible


def test_every_rule_has_both_languages() -> None:
    for rule in load_catalogue().values():
        assert rule.message_nb.strip()
        assert rule.message_en.strip()
        assert rule.title_nb.strip(), rule.rule_id
        assert len(rule.title_nb) <= 60, rule.rule_id
        assert rule.fix_nb.strip(), rule.rule_id
