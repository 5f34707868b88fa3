"""Every module-level regular expression of the project stays linear on hostile input.

A pattern with nested or adjacent unbounded repeats (``\\s*(.{1,80}?)\\s*``, ``[a-z]+@…`` with a
look-behind that lets a match start inside a run) backtracks quadratically or worse; on a request
field at its cap that holds the event loop for seconds to hours (issue #19). Each pattern here
runs over 32,000-character runs of the characters such patterns trade (whitespace, commas, dots,
braces, ``%a``, ``@``, digits, words), behind the prefixes that open them, within a budget that a
linear scan meets a hundred times over and a quadratic one misses by far.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time

import pytest

PACKAGES = ("apps", "kg", "models", "retrieval", "kgnlp")
CAP = 32_000  # the largest text field (an OpenAI message)
RUNS = (" ", "\n", ",", ".", "-", "{{", "{{\n", "%a", "a", "1", "1,", "a.", "a@", "a-", "A1-", "Aa ", "order ")
PREFIXES = ("", "order number is ", "x@", "$", "{{", "my name is ", "invoice ")
BUDGET_S = 0.25


def _patterns() -> dict[str, re.Pattern[str]]:
    found: dict[str, re.Pattern[str]] = {}
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            try:
                module = importlib.import_module(info.name)
            except ImportError:  # an optional extra that is not installed (e.g. neo4j, llama_cpp)
                continue
            for name, value in vars(module).items():
                if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                    found.setdefault(f"{module.__name__}.{name}", value)
    return found


PATTERNS = _patterns()


def test_the_scan_finds_the_patterns_that_parse_request_text() -> None:
    for name in (
        "apps.core.pii._EMAIL",
        "apps.customer_service.slots._ORDER",
        "apps.customer_service.slots._AMOUNT",
        "apps.customer_service.profile.PLACEHOLDER",
        "kg.linking._WORD",
    ):
        assert name in PATTERNS, name


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_is_linear_on_cap_sized_runs(name: str) -> None:
    pattern = PATTERNS[name]
    for prefix in PREFIXES:
        for run in RUNS:
            text = prefix + run * (CAP // len(run)) + "!"
            start = time.perf_counter()
            for _ in pattern.finditer(text):
                pass
            took = time.perf_counter() - start
            assert took < BUDGET_S, f"{name} took {took:.2f} s on {prefix!r} + {run!r} × {CAP // len(run)}"
