"""The calendar the store answers for: a day in a query outside it is refused, since no record
lies there and date arithmetic on it (a day's end, a period's length) could overflow."""

from __future__ import annotations

from datetime import date

EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2199, 12, 31)
