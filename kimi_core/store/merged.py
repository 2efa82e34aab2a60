"""Several Kimi databases read as one: one proxy per core or machine, one view for ``kimi-proxy``.

Each database is attached read-only to an in-memory connection, and each of
its tables is shadowed by a temporary view of the same name that reads them
all (``UNION ALL``), so every query written for one database reads the
merged whole unchanged. Ids are random (UUIDs, flow ids), so rows from two
proxies never collide; a table keyed by something else (a model's
calibration) keeps one row per key. Columns are those every database has.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kimi_core.errors import KimiError

# One row per key in the merged view. Bodies and archives are content-addressed: the same key is the same
# bytes, and a lookup takes the first it finds.
KEYS = {"sessions": "id", "conversations": "id", "calibration": "model", "learned_windows": "model"}
SKIP = {"_kimi_migrations", "_sqlite_migrations"}


def _tables(conn: sqlite3.Connection, schema: str) -> dict[str, list[str]]:
    names = [n for (n,) in conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%'") if n not in SKIP]
    return {n: [row[1] for row in conn.execute(f'PRAGMA {schema}.table_info("{n}")')] for n in names}


def open_merged(paths: list[Path]) -> sqlite3.Connection:
    """One read-only connection over ``paths`` (each already checked to be a Kimi database)."""
    conn = sqlite3.connect("file::memory:", uri=True)
    most = conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED)
    if len(paths) > most:
        raise KimiError(f"{len(paths)} databases: SQLite reads at most {most} at once (merge fewer, or copy "
                        "some into one with sqlite-utils)")
    schemas = []
    for i, path in enumerate(paths):
        schema = f"kimi{i}"
        conn.execute("ATTACH DATABASE ? AS " + schema, (f"file:{path}?mode=ro",))
        schemas.append(_tables(conn, schema))
    for table, columns in schemas[0].items():
        if not all(table in s for s in schemas[1:]):
            continue
        shared = [c for c in columns if all(c in s[table] for s in schemas[1:])]
        select = ", ".join(f'"{c}"' for c in shared)
        union = " UNION ALL ".join(f'SELECT {select} FROM kimi{i}."{table}"' for i in range(len(paths)))
        key = KEYS.get(table)
        if key in shared:
            union = f'SELECT * FROM ({union}) GROUP BY "{key}"'
        conn.execute(f'CREATE TEMP VIEW "{table}" AS {union}')
    return conn
