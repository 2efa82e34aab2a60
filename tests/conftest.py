import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump, free_port

SMALL_WINDOW = '[models."small"]\ncontext_window = 2000\n'  # a model whose window a test fills at once


@pytest.fixture(scope="session")
def fake():
    with FakeProvider(tls=True) as provider:
        yield provider


@pytest.fixture(scope="module")
def proxy(fake, tmp_path_factory):
    with Mitmdump(tmp_path_factory.mktemp("proxy"), upstream_port=fake.port) as running:
        yield running


def wait_rows(db, where="1", params=(), count=1, timeout=15.0):
    """Rows of ``requests`` matching ``where``, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = sqlite3.connect(db)
            conn.row_factory = sqlite3.Row
            rows = [dict(r) for r in conn.execute(f"SELECT * FROM requests WHERE {where} ORDER BY ts", params)]
            conn.close()
        except sqlite3.OperationalError:
            rows = []
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


class Served(NamedTuple):
    """A proxy serving its dashboard: its address and token."""

    proxy: Mitmdump
    url: str
    token: str


@contextlib.contextmanager
def dashboard_proxy(fake, workdir: Path) -> Iterator[Served]:
    """A mitmdump with Kimi serving its dashboard on a free port, ``small`` a 2,000-token model."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.toml").write_text(SMALL_WINDOW)
    options = {"kimi_web_port": str(free_port()), "kimi_config": str(workdir / "config.toml")}
    with Mitmdump(workdir, upstream_port=fake.port, options=options) as running:
        url, token = running.dashboard()
        yield Served(running, url, token)


# Headless, offline: without the background-networking flags Chromium spends 25 s at each start
# on connections this closed machine refuses (the report's screenshot took 27 s, 0.9 s with them).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium() -> str:
    """Debian's Chromium: the tests that need it fail without it in CI (KIMI_REQUIRE_CHROMIUM), else skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("KIMI_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required (Debian: apt-get install chromium)")
        pytest.skip("no chromium here (Debian: apt-get install chromium)")
    return found
