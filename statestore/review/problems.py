"""Problems: rejected items grouped by what is wrong, for triage at national scale.

20,000 rejected items are usually a handful of problems: one code a vendor's release sends, one
check digit error from one software version. A problem is one rule failing on one field, with
one offending value where the value names a code, from one message model and one vendor's
software version. Each error finding of an indexed item gets its problem's id
(:func:`finding_problem`, stored in ``review_findings.problem``), so triage is one ``GROUP BY``
and a whole problem is a filter (``ReviewFilter.problem``) the workflow, exports and replay take
like any other.

The value is read from the item as kept (masked), so a person number is one masked value for
every person. Only values that name a code are part of a problem (code lists, allowed values,
SNOMED CT ids): a time in the future differs on every item and would make each its own problem.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from statestore.tables import review_findings, review_items

# Rules whose offending value is part of the problem (besides every code-list rule).
VALUE_RULES = frozenset({"STR-006", "IDN-010", "IDN-011"})
MAX_VALUE = 100  # characters of an offending value kept (longer values are cut, marked …)
OPEN_STATUSES = ("new", "in_review", "awaiting_resubmission")


@dataclass(frozen=True, slots=True)
class FindingProblem:
    field: str  # the field's path in a block, arrays as *: "avtale/*/konsultasjonType"
    value: str | None
    problem: str  # 16 hex digits


@dataclass(frozen=True, slots=True)
class ProblemRow:
    problem: str
    rule_id: str
    level: str
    field: str
    value: str | None
    message_type: str
    version: int
    vendor: str | None
    software: str | None
    software_version: str | None
    items: int
    open_items: int
    units: int
    first_seen: datetime
    last_seen: datetime
    last_7_days: int
    previous_7_days: int

    @property
    def trend(self) -> str:
        """rising, falling or steady: the last seven days against the seven before."""
        if self.last_7_days > self.previous_7_days:
            return "rising"
        if self.last_7_days < self.previous_7_days:
            return "falling"
        return "steady"


@dataclass(frozen=True, slots=True)
class ProblemPage:
    rows: list[ProblemRow]
    total: int  # problems in the filter
    items: int  # rejected items in the filter
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def finding_problem(
    finding: dict[str, Any],
    *,
    item_path: str,
    item: Any,
    block: Any,
    message_type: str,
    version: int,
    vendor: str | None,
    software: str | None,
    software_version: str | None,
) -> FindingProblem:
    path = str(finding["path"])
    parts = path.strip("/").split("/") if path.strip("/") else []
    field = "/".join("*" if p.isdigit() else p for p in parts[1:])  # without the block index
    value = None
    if finding.get("level") == "codelist" or finding["rule_id"] in VALUE_RULES:
        value = _value_at(path, item_path, item, block)
    key = "\x1f".join(
        [
            finding["rule_id"],
            field,
            value or "",
            message_type,
            str(version),
            vendor or "",
            software or "",
            software_version or "",
        ]
    )
    return FindingProblem(field[:200], value, hashlib.sha256(key.encode()).hexdigest()[:16])


def _value_at(path: str, item_path: str, item: Any, block: Any) -> str | None:
    """The (masked) value a finding points at, as text; None for none or a record."""
    block_path = "/" + item_path.strip("/").split("/")[0]
    if path == item_path or path.startswith(item_path + "/"):
        node, rest = item, path[len(item_path) :]
    elif path.startswith(block_path + "/"):
        node, rest = block, path[len(block_path) :]
    else:
        return None
    for part in rest.strip("/").split("/") if rest.strip("/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    if node is None or isinstance(node, dict | list):
        return None
    text = node if isinstance(node, str) else orjson.dumps(node).decode()
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


async def problem_page(
    conn: AsyncConnection,
    conditions: list[Any],
    *,
    today: date,
    page: int,
    page_size: int,
) -> ProblemPage:
    """The problems among the items matching ``conditions``, largest first."""
    r, f = review_items, review_findings
    week = (today - timedelta(days=6)).isoformat()
    fortnight = (today - timedelta(days=13)).isoformat()
    joined = r.join(f, f.c.item_id == r.c.item_id)
    where = [*conditions, f.c.severity == "error", f.c.problem.is_not(None)]
    items = func.count(func.distinct(r.c.item_id))
    query = (
        select(
            f.c.problem,
            func.min(f.c.rule_id).label("rule_id"),
            func.min(f.c.level).label("level"),
            func.min(f.c.field).label("field"),
            func.min(f.c.value).label("value"),
            func.min(r.c.message_type).label("message_type"),
            func.min(r.c.version).label("version"),
            func.min(r.c.vendor).label("vendor"),
            func.min(r.c.software).label("software"),
            func.min(r.c.software_version).label("software_version"),
            items.label("items"),
            func.count(func.distinct(case((r.c.status.in_(OPEN_STATUSES), r.c.item_id)))).label(
                "open_items"
            ),
            func.count(func.distinct(r.c.unit)).label("units"),
            func.min(r.c.received_at).label("first_seen"),
            func.max(r.c.received_at).label("last_seen"),
            func.count(func.distinct(case((r.c.received_day >= week, r.c.item_id)))).label(
                "last_7"
            ),
            func.count(
                func.distinct(
                    case(
                        (
                            (r.c.received_day >= fortnight) & (r.c.received_day < week),
                            r.c.item_id,
                        )
                    )
                )
            ).label("previous_7"),
        )
        .select_from(joined)
        .where(*where)
        .group_by(f.c.problem)
        .order_by(items.desc(), f.c.problem)
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    rows = [
        ProblemRow(
            problem=row.problem,
            rule_id=row.rule_id,
            level=row.level,
            field=row.field or "",
            value=row.value,
            message_type=row.message_type,
            version=int(row.version),
            vendor=row.vendor,
            software=row.software,
            software_version=row.software_version,
            items=int(row.items),
            open_items=int(row.open_items),
            units=int(row.units),
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            last_7_days=int(row.last_7),
            previous_7_days=int(row.previous_7),
        )
        for row in await conn.execute(query)
    ]
    total = (
        await conn.execute(
            select(func.count(func.distinct(f.c.problem))).select_from(joined).where(*where)
        )
    ).scalar_one()
    in_filter = (
        await conn.execute(select(func.count()).select_from(r).where(*conditions))
    ).scalar_one()
    return ProblemPage(rows, int(total), int(in_filter), page, page_size)
