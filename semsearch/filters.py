"""Metadata filters: ``field=value``, ``field!=value``, ``field>=n`` (also ``>``, ``<=``, ``<``), ``field in a,b``.

A filter selects documents by their JSON metadata *before* ranking, so a
filtered search still returns ``k`` hits when at least ``k`` documents match.
Several filters must all hold. ``=`` / ``!=`` / ``in`` compare text, numbers
(``year=2020`` matches 2020 and "2020") and booleans (``true``/``false``);
the ordering operators need numbers on both sides.

>>> parse_filter("year>=2020")
Filter(field='year', op='>=', values=('2020',))
>>> parse_filter("lang in en, de")
Filter(field='lang', op='in', values=('en', 'de'))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .errors import BadInput

__all__ = ["Filter", "parse_filter", "parse_filters"]

_OPS = (">=", "<=", "!=", "=", ">", "<")
_IN = re.compile(r"^\s*(?P<field>[^\s=<>!]+)\s+in\s+(?P<values>.+)$", re.IGNORECASE)
_CMP = re.compile(r"^\s*(?P<field>[^\s=<>!]+)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class Filter:
    """One condition on a metadata field; ``values`` holds the raw text of the value(s)."""

    field: str
    op: str
    values: tuple[str, ...]

    def __post_init__(self):
        if self.op not in _OPS + ("in",):
            raise BadInput(f"unknown filter operator {self.op!r}; valid: {', '.join(_OPS + ('in',))}")
        if not self.values or any(v == "" for v in self.values):
            raise BadInput(f"filter on {self.field!r} has an empty value")
        if self.op in (">=", "<=", ">", "<"):
            _number(self.values[0], self)

    def sql(self) -> tuple[str, list]:
        """A SQLite condition on the ``metadata`` JSON column, and its parameters."""
        path = '$."' + self.field.replace('"', '""') + '"'
        value = "json_extract(metadata, ?)"
        if self.op in (">=", "<=", ">", "<"):
            return (f"(json_type(metadata, ?) IN ('integer', 'real') AND {value} {self.op} ?)",
                    [path, path, _number(self.values[0], self)])
        candidates: list = []
        for raw in self.values:
            candidates += _candidates(raw)
        marks = ",".join("?" * len(candidates))
        cond = f"{value} IN ({marks})"
        if self.op == "!=":
            return f"(json_type(metadata, ?) IS NULL OR NOT {cond})", [path, path, *candidates]
        return cond, [path, *candidates]


def _number(raw: str, f: Filter) -> float:
    try:
        return float(raw)
    except ValueError:
        raise BadInput(f"filter {f.field}{f.op}{raw}: {f.op} needs a number, got {raw!r}") from None


def _candidates(raw: str) -> list:
    """The SQLite values a raw filter value matches: the text itself, its number, its boolean (1/0)."""
    out: list = [raw]
    try:
        out.append(int(raw))
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
        return Filter(m["field"], "in", values)
    m = _CMP.match(expr)
    if not m:
        raise BadInput(f"cannot parse filter {expr!r}; expected field=value, field>=n or 'field in a,b'")
    return Filter(m["field"], m["op"], (m["value"],))


def parse_filters(exprs: Iterable[str | Filter] | None) -> list[Filter]:
    """Parse several filters (already-parsed :class:`Filter` objects pass through)."""
    return [f if isinstance(f, Filter) else parse_filter(f) for f in (exprs or [])]
