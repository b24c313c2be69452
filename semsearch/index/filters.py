"""Metadata filters: ``field=value``, ``field!=value``, ``field>=n`` (also ``>``, ``<=``, ``<``), ``field in a,b``.

A filter selects documents by their JSON metadata *before* ranking, so a
filtered search still returns ``k`` hits when at least ``k`` documents match.
Several filters must all hold. ``=`` / ``!=`` / ``in`` compare text, numbers
(``year=2020`` matches 2020 and "2020") and booleans (``true``/``false``); on a
list they test membership (``tag=a`` matches ``["a", "b"]``). The ordering
operators need a number and compare numbers, and text that reads as one (CSV/TSV
metadata is text). A field name with spaces goes in quotes (``"unit price"<=10``).

>>> parse_filter("year>=2020")
Filter(field='year', op='>=', values=('2020',))
>>> parse_filter("lang in en, de")
Filter(field='lang', op='in', values=('en', 'de'))
>>> parse_filter('"unit price"<=9.5')
Filter(field='unit price', op='<=', values=('9.5',))
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

from ..errors import BadInput

__all__ = ["Filter", "parse_filter", "parse_filters"]

_OPS = (">=", "<=", "!=", "=", ">", "<")
#: a field: a bare name, or one in double or single quotes (a CSV header with spaces: "unit price">=5)
_FIELD = r"""(?:"(?P<dq>[^"]+)"|'(?P<sq>[^']+)'|(?P<field>[^\s=<>!"'][^\s=<>!]*))"""
_IN = re.compile(rf"^\s*{_FIELD}\s+in\s+(?P<values>.+)$", re.IGNORECASE)
_CMP = re.compile(rf"^\s*{_FIELD}\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class Filter:
    """One condition on a metadata field; ``values`` holds the raw text of the value(s)."""

    field: str
    op: str
    values: tuple[str, ...]

    def __post_init__(self):
        if '"' in self.field:
            raise BadInput(f"cannot filter on the field {self.field!r}: SQLite's JSON paths cannot name a field "
                           "with a '\"' in it")
        if self.op not in _OPS + ("in",):
            raise BadInput(f"unknown filter operator {self.op!r}; valid: {', '.join(_OPS + ('in',))}")
        if not self.values or any(v == "" for v in self.values):
            raise BadInput(f"filter on {self.field!r} has an empty value")
        if any(v[0] in "=<>!" for v in self.values):
            raise BadInput(f"filter on {self.field!r}: a value cannot start with {self.values[0][0]!r} "
                           "(use one operator: =, !=, >=, <=, >, <)")
        if self.op in (">=", "<=", ">", "<"):
            _number(self.values[0], self)

    @property
    def path(self) -> str:
        """The field as a SQLite JSON path."""
        return '$."' + self.field + '"'

    def sql(self) -> tuple[str, list]:
        """A SQLite condition on the ``metadata`` JSON column, and its parameters."""
        path = self.path
        if self.op in (">=", "<=", ">", "<"):
            return (f"semsearch_number(json_extract(metadata, ?)) {self.op} ?", [path, _number(self.values[0], self)])
        candidates: list = []
        for raw in self.values:
            candidates += _candidates(raw)
        marks = ",".join("?" * len(candidates))
        # json_each yields a scalar itself, or each element of an array: `tag=a` matches "a" and ["a", "b"]
        cond = f"EXISTS (SELECT 1 FROM json_each(docs.metadata, ?) WHERE json_each.value IN ({marks}))"
        return (f"NOT {cond}" if self.op == "!=" else cond), [path, *candidates]


def _number(raw: str, f: Filter) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadInput(f"filter {f.field}{f.op}{raw}: {f.op} needs a number, got {raw!r}")
    return value


def as_number(value) -> float | None:
    """A metadata value as a number for the ordering operators: numbers, and text that reads as one
    (CSV/TSV metadata is text); ``None`` otherwise. Registered in SQLite as ``semsearch_number``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _candidates(raw: str) -> list:
    """The SQLite values a raw filter value matches: the text itself, its number, its boolean (1/0)."""
    out: list = [raw]
    try:
        number = int(raw)
        out.append(number if -2**63 <= number < 2**63 else float(number))  # SQLite integers are 64-bit
    except ValueError:
        try:
            out.append(float(raw))
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        out.append(1 if raw.lower() == "true" else 0)
    return out


def parse_filter(expr: str) -> Filter:
    """Parse one filter expression; :class:`BadInput` says what is wrong with it."""
    if not isinstance(expr, str) or not expr.strip():
        raise BadInput("empty filter; expected field=value, field>=n or 'field in a,b'")
    m = _IN.match(expr)
    if m:
        values = tuple(v.strip() for v in m["values"].split(","))
        return Filter(_field(m), "in", values)
    m = _CMP.match(expr)
    if not m:
        raise BadInput(f"cannot parse filter {expr!r}; expected field=value, field>=n or 'field in a,b'")
    return Filter(_field(m), m["op"], (m["value"],))


def _field(m: re.Match) -> str:
    return m["dq"] or m["sq"] or m["field"]


def parse_filters(exprs: Iterable[str | Filter] | None) -> list[Filter]:
    """Parse several filters (already-parsed :class:`Filter` objects pass through; one string is one filter)."""
    if isinstance(exprs, (str, Filter)):
        exprs = [exprs]
    return [f if isinstance(f, Filter) else parse_filter(f) for f in (exprs or [])]
