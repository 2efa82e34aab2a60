"""The ``kimi-proxy`` command: read what the proxy recorded.

    kimi-proxy show REQUEST_ID [--response] [--db PATH]
    kimi-proxy restore SHA256_OR_PREFIX [--db PATH]

``show`` prints a stored request body (rebuilt from its content-addressed
parts) or its response; ``restore`` prints the original of a compacted tool
result, byte for byte. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from kimi_core.errors import KimiError
from kimi_core.store.read import load_archive, load_request_body, load_response_body

DEFAULT_DB = "~/.kimi-proxy/kimi.db"


def connect(path: str) -> sqlite3.Connection:
    db = Path(path).expanduser()
    if not db.exists():
        raise KimiError(f"no database at {db} (start the proxy first, or pass --db)")
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def show(args: argparse.Namespace) -> int:
    conn = connect(args.db)
    matches = [r for (r,) in conn.execute("SELECT id FROM requests WHERE id LIKE ? || '%' LIMIT 2",
                                         (args.request_id,))]
    if len(matches) != 1:
        raise KimiError(f"{'no' if not matches else 'more than one'} request matches {args.request_id!r}")
    if args.response:
        body = load_response_body(conn, matches[0])
    else:
        body = load_request_body(conn, matches[0])
    if body is None:
        raise KimiError(f"the body of {matches[0]} is not stored (retention, or kimi_store_bodies=false)")
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            sys.stdout.buffer.write(body)
            return 0
    json.dump(body, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def restore(args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(load_archive(connect(args.db), args.sha))
    sys.stdout.buffer.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kimi-proxy", description="Read what Kimi Proxy recorded.")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"the database (default {DEFAULT_DB})")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("show", help="print a stored request body (or its response)")
    p.add_argument("request_id", help="a request id, or the start of one")
    p.add_argument("--response", action="store_true", help="the response instead of the request")
    p.add_argument("--db", default=argparse.SUPPRESS, help="the database")
    p.set_defaults(func=show)
    p = sub.add_parser("restore", help="print the original of a compacted tool result, byte for byte")
    p.add_argument("sha", help="its sha256 (as the marker in the compacted text gives it), or a prefix")
    p.add_argument("--db", default=argparse.SUPPRESS, help="the database")
    p.set_defaults(func=restore)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (KimiError, sqlite3.Error) as e:
        print(f"kimi-proxy: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
