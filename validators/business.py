"""Model-specific business rules: cross-field checks that no annotation expresses.

Each rule is a pure function of one valid item, returning ``(rule id, path, parameters)`` for
every violation; the engine turns them into findings. Generic rules (dates in the future, end
before start, the reporting window, persons without national identity) live in the engine and are
driven by the schema's annotations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Violation = tuple[str, str, dict[str, Any]]  # rule id, path inside the item, message parameters
ItemRule = Callable[[dict[str, Any]], list[Violation]]


def npr_one_main_condition(item: dict[str, Any]) -> list[Violation]:
    """A full report (N, M) of a contact with conditions names exactly one main condition;
    a supplement (T) may add secondary ones, an annulment (C) is not judged."""
    conditions = item.get("tilstand") or []
    if not conditions or item.get("statusNotifikasjon") in ("T", "C"):
        return []
    main = sum(1 for c in conditions if isinstance(c, dict) and c.get("hovedtilstand"))
    return [] if main == 1 else [("BUS-101", "/tilstand", {"count": main})]


MODEL_RULES: dict[str, list[ItemRule]] = {
    "NPR_Kontakt": [npr_one_main_condition],
}
