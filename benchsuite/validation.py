"""The one set of rules for the values a user gives, shared by grid keys and command-line options.

A grid file's ``retries = -1`` and the command line's ``--retries -1`` break the same ``Number``
rule and get the same words; only the place named differs (a key path such as ``budget.lr``, or an
option such as ``--lr``). A number must be finite where a number is meant (``nan`` and ``inf`` are
refused everywhere), and ranges read as ``0 < x ≤ 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def range_text(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    """A range in words a reader parses at a glance: ``0 < x ≤ 1``, ``x ≥ 1``, ``x < 1``."""
    left = f"{low:g} {'<' if low_open else '≤'} " if low is not None else ""
    right = f" {'<' if high_open else '≤'} {high:g}" if high is not None else ""
    if low is not None and high is None:
        return f"x {'>' if low_open else '≥'} {low:g}"
    return f"{left}x{right}"


@dataclass(frozen=True)
class Number:
    """A finite int or float in a range; ``unit`` names what it counts (``seconds``)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    unit: str = ""

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        if self.unit:
            noun += f" of {self.unit}"
        bounds = range_text(self.low, self.high, self.low_open, self.high_open)
        return f"{noun}, {bounds}" if bounds != "x" else noun

    def problem(self, value: Any) -> str | None:
        """Why ``value`` breaks the rule (``must be ...``), or None when it keeps it."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {self.describe()}"
        if self.kind is int and not isinstance(value, int):
            return f"must be {self.describe()}"
        if not math.isfinite(value) or not self.within(value):
            return f"must be {self.describe()}"
        return None

    def within(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def coerce(self, value: Any) -> int | float:
        return int(value) if self.kind is int else float(value)

    def parse(self, text: str) -> int | float:
        """A value typed on the command line, or ``ValueError`` saying why it is not one."""
        try:
            value = int(text) if self.kind is int else float(text)
        except ValueError:
            raise ValueError(f"{text!r} must be {self.describe()}") from None
        if (why := self.problem(value)) is not None:
            raise ValueError(f"{text!r} {why}")
        return value


#: The rule of each grid key that holds a number, by its key path (budget keys: ``budget_rule``).
RULES: dict[str, Number] = {
    "seed": Number(int, low=0),
    "rate": Number(float, 0, 1),
    "retries": Number(int, low=0),
    "cell_timeout": Number(float, low=0, low_open=True, unit="seconds"),
    "val_fraction": Number(float, 0, 1, high_open=True),
    "eval_ema": Number(float, 0, 1, low_open=True, high_open=True),
}


def budget_rule(key: str, kind: type) -> Number:
    """The rule of a recipe override: counts are ≥ 1, the learning rate > 0, weight decay ≥ 0."""
    if kind is int:
        return Number(int, low=1)
    return Number(float, low=0, low_open=key != "weight_decay")


def check(rule: Number, value: Any, where: str, problems: list[str]) -> Any:
    """``value`` coerced to the rule's type, or None after adding ``where: value must be ...``."""
    if (why := rule.problem(value)) is not None:
        problems.append(f"{where}: {value!r} {why}")
        return None
    return rule.coerce(value)


def parse_list(text: str, rule: Number) -> list[int | float]:
    """A comma-separated list typed on the command line (``0,1,2``), each item under ``rule``;
    ``ValueError`` names the item and its position."""
    items = text.split(",")
    values = []
    for i, item in enumerate(items):
        try:
            values.append(rule.parse(item.strip()))
        except ValueError as exc:
            raise ValueError(f"{exc}" + (f" (item {i + 1} of {text!r})" if len(items) > 1 else "")) from None
    return values
