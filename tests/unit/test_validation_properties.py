"""Property-based: no input makes validation raise, and every finding is a catalogued rule."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalogue import MessageModel, load_catalogue
from tests.unit.test_rule_cases import CONTEXT
from validators.engine import ModelValidator
from validators.rules import load_catalogue as load_rules

MODELS = list(load_catalogue())
VALIDATORS = {m.key: ModelValidator(m) for m in MODELS}
RULES = set(load_rules())

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _check(model: MessageModel, message: Any) -> None:
    result = VALIDATORS[model.key].validate(message, CONTEXT)
    findings = list(result.message_findings)
    for item in result.items:
        findings += item.findings
        if item.value is None:
            assert any(f.severity == "error" for f in item.findings)
    assert {f.rule_id for f in findings} <= RULES


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), message=json_values)
def test_any_json_is_judged_without_raising(model: MessageModel, message: Any) -> None:
    _check(model, message)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), model=st.sampled_from(MODELS))
def test_any_value_anywhere_in_a_valid_message_is_judged(
    data: st.DataObject, model: MessageModel
) -> None:
    example = next(e for e in model.examples if e.valid)
    message = copy.deepcopy(example.message)
    path = data.draw(st.sampled_from(_paths(message)))
    node: Any = message
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = data.draw(json_values)
    _check(model, message)
