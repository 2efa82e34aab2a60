import sqlite3
import time

import pytest

from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump


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
