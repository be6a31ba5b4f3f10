"""``formal_deep`` tests (long proofs' mutation checks) run only where ``MICROSCOPIQ_FORMAL_DEEP=1``:
``make formal`` sets it; ``make test`` keeps to the quick proofs."""

from __future__ import annotations

import os

import pytest

DEEP = "MICROSCOPIQ_FORMAL_DEEP"


def pytest_configure(config):
    config.addinivalue_line("markers", f"formal_deep: a long formal check, run only with {DEEP}=1 (make formal)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get(DEEP) == "1":
        return
    skip = pytest.mark.skip(reason=f"long formal check: make formal runs it ({DEEP}=1)")
    for item in items:
        if "formal_deep" in item.keywords:
            item.add_marker(skip)
