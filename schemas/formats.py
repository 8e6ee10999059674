"""What the string annotations of a model mean, written once for the structure check
(:mod:`validators.structure`) and the published JSON Schema (:mod:`schemas.jsonschema`), so the
two agree on every value.

Patterns are ECMA-262 regular expressions, as JSON Schema defines ``pattern``: ``^``/``$`` anchor
at the ends of the whole string, ``[0-9]`` is ASCII. Python's ``re`` differs in two ways that
matter here — ``$`` also matches before a final newline, and ``\\d`` matches any Unicode digit —
so :func:`python_pattern` compiles a pattern with those differences taken out.
"""

from __future__ import annotations

import re

# x-format date-time: RFC 3339's date-time (ISO 8601 with seconds and a required offset), its
# date and time also real ones (checked apart from the pattern).
DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
# x-format date: RFC 3339's full-date, a real date.
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def digits_pattern(count: int) -> str:
    """x-digits N: exactly N ASCII digits."""
    return f"^[0-9]{{{count}}}$"


def python_pattern(ecma: str) -> re.Pattern[str]:
    """``ecma`` compiled to match in Python what it matches in ECMA-262 (use ``.search``): a
    final ``$`` matches only at the very end, and ``\\d``/``\\w``/``\\s`` are ASCII."""
    if ecma.endswith("$") and not ecma.endswith("\\$"):
        ecma = ecma[:-1] + r"\Z"
    return re.compile(ecma, re.ASCII)
