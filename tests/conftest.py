"""Test set-up shared by the whole suite, kept small: every test starts from an environment
without CNI_*, SHIV_*, AWS_* or CNIVPC_* variables (restored afterwards), and tests that need
root say so with the ``require_root`` fixture or the ``netns`` marker (skipped otherwise).

Fixtures that belong to one area live in that directory's conftest.py. Imports nothing of
cnivpc.
"""

from __future__ import annotations

import os

import pytest

# The variables that change what a plugin, shiv or botocore does.
CLEARED_PREFIXES = ("CNI_", "SHIV_", "AWS_", "CNIVPC_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name: clean_environ. Scope: function (autouse). Depends: monkeypatch (restores)."""
    for key in list(os.environ):
        if key.startswith(CLEARED_PREFIXES):
            monkeypatch.delenv(key)


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def require_root() -> None:
    """Name: require_root. Scope: function. Skips the test unless it runs as root."""
    if not is_root():
        pytest.skip("needs root")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Kernel tests (marker netns) need root for namespaces; say so instead of failing.
    skip = pytest.mark.skip(reason="netns tests need root")
    for item in items:
        if item.get_closest_marker("netns") and not is_root():
            item.add_marker(skip)
