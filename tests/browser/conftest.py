"""Real headless Chromium (Debian's, installed by `make browser`) driven by
Playwright, against the whole system started as `make run` starts it
(tools/stack.py: NATS, the SMTP sink writing .eml files, every service).

Screenshots of each page, at 360 px and 1280 px wide, go to
test-artifacts/screenshots/ (git-ignored), named <page>-<width>.png."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tools.stack import Ports, Stack, StackConfig

SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google's
# hosts, which this closed network refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def chromium():
    """Module scope: Playwright's sync API keeps an event loop running in
    this thread while it lives, which would break every later asyncio test."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make browser` installs it", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    cfg = StackConfig(var=tmp_path_factory.mktemp("browser") / "var", ports=Ports.free(), log_format="json")
    with Stack(cfg) as running:
        yield running


@pytest.fixture(scope="session")
def shots() -> Path:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return SHOTS
