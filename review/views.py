"""What reviewers see, shared by the review pages and the review API: the filter read from a
query, masked summaries and details of rejected items, statistics and CSV.

Nothing here shows an unmasked personal identifier: revealing one is its own logged request.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from review.errors import InvalidQuery
from review.masking import item_prefix, mask, mask_text, personal_fields
from schemas.catalogue import MessageModel
from schemas.events import CARE_TIMEZONE
from statestore.days import EARLIEST_DAY, LATEST_DAY
from statestore.review import (
    SORTS,
    STATUSES,
    Page,
    ProblemPage,
    ReviewFilter,
    ReviewRepository,
    ReviewRow,
    Statistics,
    UnitDays,
)
from validators.rules import load_catalogue as load_rules
from wiring.runtime import Runtime

LEVELS = ("structure", "identifier", "codelist", "business")
STATUS_LABELS = {
    "new": "Ny",
    "in_review": "Under behandling",
    "resolved": "Løst",
    "wont_fix": "Rettes ikke",
    "awaiting_resubmission": "Venter på ny innsending",
}
RECEIPT_STATUS_LABELS = {
    "received": "Mottatt, ikke validert ennå",
    "rejected": "Avvist",
    "accepted": "Godtatt, lagres",
    "applied": "Lagret",
    "partially_accepted": "Delvis godtatt, lagres",
    "partially_applied": "Delvis lagret (noe avvist)",
}
LEVEL_LABELS = {
    "structure": "Struktur",
    "identifier": "Identifikator",
    "codelist": "Kodeverk",
    "business": "Forretningsregel",
    "integrity": "Integritet",
}
MAX_PERIOD_DAYS = 366


def read_filter(query: Mapping[str, str]) -> ReviewFilter:
    """The filter named in a query string; empty fields (from a form) mean no filter."""

    def text(name: str, limit: int = 200) -> str | None:
        value = query.get(name, "").strip()
        return value[:limit] or None

    version = text("version")
    if version is not None and not (version.isdigit() and len(version) <= 4):
        raise _bad("version", "a whole number")
    status = text("status")
    if status is not None and status not in STATUSES:
        raise _bad("status", "one of " + ", ".join(STATUSES))
    level = text("level")
    if level is not None and level not in LEVEL_LABELS:
        raise _bad("level", "one of " + ", ".join(LEVEL_LABELS))
    day_from, day_to = _day(query, "from"), _day(query, "to")
    if day_from and day_to and day_from > day_to:
        raise _bad("from", "a day before 'to'")
    problem = text("problem", 16)
    if problem is not None and not (
        len(problem) == 16 and all(c in "0123456789abcdef" for c in problem)
    ):
        raise _bad("problem", "a problem id (16 hexadecimal digits)")
    return ReviewFilter(
        unit=text("unit", 9),
        vendor=text("vendor"),
        software=text("software"),
        message_type=text("message_type", 64),
        version=int(version) if version else None,
        rule_id=text("rule_id", 20),
        level=level,
        status=status,
        day_from=day_from,
        day_to=day_to,
        problem=problem,
    )


def filter_query(flt: ReviewFilter) -> dict[str, str]:
    """The filter as the query parameters :func:`read_filter` reads."""
    out = flt.as_query()
    for ours, theirs in (("day_from", "from"), ("day_to", "to")):
        if ours in out:
            out[theirs] = out.pop(ours)
    return out


def period(flt: ReviewFilter, *, default_days: int = 30) -> tuple[ReviewFilter, date, date]:
    """The filter with its day range completed (default: the last ``default_days`` days), and
    that range's first and last day."""
    last = flt.day_to or datetime.now(CARE_TIMEZONE).date()
    first = flt.day_from or last - timedelta(days=default_days - 1)
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise InvalidQuery(
            "invalid_period",
            "Invalid period",
            f"'from' and 'to' may be at most {MAX_PERIOD_DAYS} days apart.",
        )
    return ReviewFilter(**{**_fields(flt), "day_from": first, "day_to": last}), first, last


def read_sort(query: Mapping[str, str]) -> tuple[str, bool]:
    sort = query.get("sort", "received") or "received"
    if sort not in SORTS:
        raise _bad("sort", "one of " + ", ".join(SORTS))
    order = query.get("order", "desc") or "desc"
    if order not in ("asc", "desc"):
        raise _bad("order", "asc or desc")
    return sort, order == "desc"


async def search(review: ReviewRepository, query: Mapping[str, str]) -> tuple[Page, str, bool]:
    """The page of items a list query asks for (filter, sort, order, page, page_size), with
    the sort column and direction used."""
    sort, descending = read_sort(query)
    page = await review.search(
        read_filter(query),
        sort=sort,
        descending=descending,
        page=read_int(query, "page", 1, 1_000_000),
        page_size=read_int(query, "page_size", 50, 500),
    )
    return page, sort, descending


def read_int(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = query.get(name, "") or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise _bad(name, f"a whole number from 1 to {maximum}")
    return int(raw)


# -- items ----------------------------------------------------------------------------------------


def summary(row: ReviewRow) -> dict[str, Any]:
    return {
        "item_id": row.item_id,
        "received_at": row.received_at.isoformat(),
        "unit": row.unit,
        "vendor": row.vendor,
        "software": row.software,
        "software_version": row.software_version,
        "message_type": row.message_type,
        "version": row.version,
        "object_id": mask_text(row.object_id) if row.object_id else None,
        "status": row.status,
        "assignee": row.assignee,
        "rule_ids": row.rule_ids,
        "levels": sorted({f["level"] for f in row.findings}),
        "receipt_id": row.receipt_id,
        "item_index": row.item_index,
        "replay_event_id": row.replay_event_id,
    }


def detail(runtime: Runtime, row: ReviewRow) -> dict[str, Any]:
    """The item and its block, masked, with every finding explained and the code lists used."""
    model = runtime.catalogue.get(row.message_type, row.version)
    personal = personal_fields(model) if model else frozenset()
    item = mask(row.item, personal, item_prefix(row.path))
    block = mask(row.block, personal, ("*",))
    rules = load_rules()
    findings = []
    for f in row.findings:
        rule = rules.get(f["rule_id"])
        findings.append(
            {
                **f,
                "message_nb": mask_text(f["message_nb"]),
                "message_en": mask_text(f["message_en"]),
                "item_pointer": _relative(f["path"], row.path),
                "rule_text_nb": rule.message_nb if rule else None,
                "level_nb": LEVEL_LABELS.get(f["level"], f["level"]),
            }
        )
    return {
        **summary(row),
        "path": row.path,
        "replayed_at": row.replayed_at.isoformat() if row.replayed_at else None,
        "item": item.value,
        "masked_paths": list(item.masked_paths),
        "block": block.value,
        "findings": findings,
        "codelists": codelists_used(runtime, model, row.findings),
    }


def codelists_used(
    runtime: Runtime, model: MessageModel | None, findings: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The model's code lists: the version each finding named, and the versions known now."""
    named: dict[str, set[str]] = {}
    for f in findings:
        if f.get("codelist_version"):
            label = str(f["codelist_version"])
            named.setdefault(label.split("@")[0], set()).add(label)
    ids = sorted({b["codelist"] for b in (model.codelist_bindings if model else ())} | set(named))
    out = []
    for codelist_id in ids:
        known = runtime.codelists.registry.get(codelist_id)
        out.append(
            {
                "codelist": codelist_id,
                "used_in_findings": sorted(named.get(codelist_id, ())),
                "versions_now": [v.isoformat() for v in known.versions] if known else [],
                "sample": known.sample if known else None,
            }
        )
    return out


def _relative(finding_path: str, item_path: str) -> str | None:
    """A finding's path inside the item (``""`` for the item itself), None when outside it."""
    if finding_path == item_path:
        return ""
    if finding_path.startswith(item_path + "/"):
        return finding_path[len(item_path) :]
    return None


# -- statistics -----------------------------------------------------------------------------------


def statistics_view(stats: Statistics) -> dict[str, Any]:
    return {
        "days": stats.days,
        "rejected_by_day": [{"day": d, "rejected": stats.by_day.get(d, 0)} for d in stats.days],
        "received_by_day": [
            {"day": d, "items": stats.received_by_day.get(d, 0)} for d in stats.days
        ],
        "by_rule": [
            {
                "rule_id": rule,
                "title": rule_title(rule),
                "total": sum(per_day.values()),
                "by_day": [per_day.get(d, 0) for d in stats.days],
            }
            for rule, per_day in sorted(
                stats.by_day_rule.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])
            )
        ],
        "by_unit": [{"unit": u, "rejected": n} for u, n in stats.by_unit],
        "by_vendor": [{"vendor": v or None, "rejected": n} for v, n in stats.by_vendor],
        "top_rules": [
            {"rule_id": r, "title": rule_title(r), "rejected": n} for r, n in stats.top_rules
        ],
        "counts": {
            "by_rule": "rejected items per day with an error of the rule (an item with errors "
            "of two rules counts once for each)",
            "rejected_by_day": "rejected items per day",
            "received_by_day": "items received per day (accepted and rejected)",
        },
    }


def problems_view(found: ProblemPage) -> dict[str, Any]:
    return {
        "problems": [
            {
                "problem": p.problem,
                "rule_id": p.rule_id,
                "title": rule_title(p.rule_id),
                "fix": rule_fixes().get(p.rule_id, ""),
                "level": p.level,
                "field": p.field,
                "value": p.value,
                "message_type": p.message_type,
                "version": p.version,
                "vendor": p.vendor,
                "software": p.software,
                "software_version": p.software_version,
                "items": p.items,
                "open_items": p.open_items,
                "units": p.units,
                "first_seen": p.first_seen.isoformat(),
                "last_seen": p.last_seen.isoformat(),
                "last_7_days": p.last_7_days,
                "previous_7_days": p.previous_7_days,
                "trend": p.trend,
            }
            for p in found.rows
        ],
        "total": found.total,
        "items": found.items,
        "page": found.page,
        "pages": found.pages,
        "page_size": found.page_size,
    }


# -- the access log -------------------------------------------------------------------------------

ACCESS_ACTIONS = {
    "list": "Liste",
    "view": "Visning",
    "reveal": "Avmaskering",
    "export": "Eksport",
    "replay": "Ny validering",
}
ACCESS_PAGE_SIZE = 100
_QUERY_LABELS = {
    "unit": "enhet",
    "vendor": "leverandør",
    "software": "programvare",
    "message_type": "meldingstype",
    "version": "versjon",
    "rule_id": "regel",
    "level": "nivå",
    "status": "status",
    "problem": "problem",
    "from": "fra",
    "to": "til",
    "page": "side",
    "sort": "sortering",
}


async def access_page(review: ReviewRepository, query: Mapping[str, str]) -> dict[str, Any]:
    """A page of the access log, newest first, filtered by item, person and action."""
    item_id = query.get("item_id", "").strip()[:36] or None
    actor = query.get("actor", "").strip()[:200] or None
    action = query.get("action", "").strip() or None
    if action is not None and action not in ACCESS_ACTIONS:
        raise _bad("action", "one of " + ", ".join(ACCESS_ACTIONS))
    page = read_int(query, "page", 1, 1_000_000)
    total = await review.access_count(item_id=item_id, actor=actor, action=action)
    entries = await review.access_log(
        item_id=item_id,
        actor=actor,
        action=action,
        limit=ACCESS_PAGE_SIZE,
        offset=(page - 1) * ACCESS_PAGE_SIZE,
    )
    return {
        "entries": entries,
        "total": total,
        "page": page,
        "pages": max(1, -(-total // ACCESS_PAGE_SIZE)),
        "item_id": item_id,
        "actor": actor,
        "action": action,
    }


def describe_access(path: str | None) -> str:
    """What a list or export was of, in words: "regel KOD-001, leverandør DIPS"."""
    if not path:
        return ""
    if ":" in path and "=" not in path:  # a revealed field: item:/person/fodselsNr
        return "felt " + path.split(":", 1)[1]
    parts = []
    for name, value in parse_qsl(path):
        if not value or name in ("page_size", "desc"):
            continue
        if name == "status":
            value = STATUS_LABELS.get(value, value)
        elif name == "level":
            value = LEVEL_LABELS.get(value, value)
        elif name in ("from", "to") and _is_day(value):
            value = day_text(value)
        parts.append(f"{_QUERY_LABELS.get(name, name)} {value}")
    return ", ".join(parts) or "alle"


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def completeness_view(units: Sequence[UnitDays], days: Sequence[str]) -> dict[str, Any]:
    return {
        "days": list(days),
        "units": [
            {
                "unit": u.unit,
                "messages": [u.messages_by_day.get(d, 0) for d in days],
                "silent_days": [d for d in days if not u.messages_by_day.get(d)],
                "last_delivery": u.last_delivery,
            }
            for u in units
        ],
    }


def day_list(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


# -- CSV ------------------------------------------------------------------------------------------


# Review exports are read in Norwegian Excel, which splits a CSV on semicolons and reads it as
# UTF-8 only after a byte order mark: so every review CSV is semicolon-separated with a BOM,
# Norwegian headers, and times as dd.mm.yyyy HH:MM (docs/review.md).
CSV_BOM = "\ufeff"


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document: the BOM, the header, then each row's cells as :func:`_cell` writes them."""
    return CSV_BOM + "".join(csv_lines([header])) + "".join(csv_lines(rows))


def csv_lines(rows: Iterable[Sequence[Any]]) -> Iterable[str]:
    """CSV lines, one per row (for streaming an export chunk by chunk)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value)
    text = str(value)
    # A cell a spreadsheet would run as a formula is written as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


SUMMARY_HEADERS = (
    "Element-id",
    "Mottatt",
    "Enhet",
    "Enhetsnavn",
    "Leverandør",
    "Programvare",
    "Programvareversjon",
    "Meldingstype",
    "Versjon",
    "Objekt-id",
    "Status",
    "Saksbehandler",
    "Regler",
    "Feil",
    "Kvittering",
    "Element nr.",
)


def summary_rows(
    rows: Iterable[ReviewRow], unit_names: Mapping[str, str] | None = None
) -> Iterable[list[Any]]:
    """The export's rows, in :data:`SUMMARY_HEADERS` order (with each unit's name from the
    directory of reporting units, where it has one)."""
    names = unit_names or {}
    for row in rows:
        s = summary(row)
        yield [
            s["item_id"],
            when(row.received_at),
            s["unit"],
            names.get(row.unit, ""),
            s["vendor"],
            s["software"],
            s["software_version"],
            s["message_type"],
            s["version"],
            s["object_id"],
            STATUS_LABELS.get(row.status, row.status),
            s["assignee"],
            s["rule_ids"],
            "; ".join(rule_title(r) for r in row.rule_ids),
            s["receipt_id"],
            s["item_index"],
        ]


def when(instant: datetime | str) -> str:
    """An instant as people in Norway read it: 23.11.2026 14:05 (the one format of every page
    and export)."""
    if isinstance(instant, str):
        instant = datetime.fromisoformat(instant)
    return instant.astimezone(CARE_TIMEZONE).strftime("%d.%m.%Y %H:%M")


def day_text(day: date | str) -> str:
    """A day as people in Norway read it: 23.11.2026."""
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return day.strftime("%d.%m.%Y")


# -- helpers --------------------------------------------------------------------------------------


def _day(query: Mapping[str, str], name: str) -> date | None:
    """A day as a form sends it (dd.mm.yyyy, as Norwegians write it) or as links carry it
    (yyyy-mm-dd)."""
    raw = query.get(name, "").strip()
    if not raw:
        return None
    try:
        day = datetime.strptime(raw, "%d.%m.%Y").date() if "." in raw else date.fromisoformat(raw)
    except ValueError:
        raise _bad(name, "a date (dd.mm.yyyy or yyyy-mm-dd)") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise InvalidQuery(
            "invalid_date",
            "Date out of range",
            f"{name} must lie between {EARLIEST_DAY} and {LATEST_DAY}.",
        )
    return day


def _bad(name: str, expected: str) -> InvalidQuery:
    return InvalidQuery("invalid_query", "Invalid query parameter", f"'{name}' must be {expected}.")


def _fields(flt: ReviewFilter) -> dict[str, Any]:
    return {name: getattr(flt, name) for name in flt.__slots__}


@cache
def rule_ids() -> list[str]:
    return sorted(load_rules())


@cache
def rule_titles() -> dict[str, str]:
    """Each rule's Norwegian title (validators/rules.toml)."""
    return {rule_id: rule.title_nb for rule_id, rule in load_rules().items()}


def rule_title(rule_id: str) -> str:
    return rule_titles().get(rule_id, "")


@cache
def rule_fixes() -> dict[str, str]:
    return {rule_id: rule.fix_nb for rule_id, rule in load_rules().items()}
