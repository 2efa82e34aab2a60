import json
import subprocess
import sys

import pytest

from kimi_core.store import RequestRecord, Store

BODY = {"model": "gpt-4o", "api_key": "hunter2", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "kimi.db"
    store = Store(path)
    store.open()
    store.start()
    store.submit(RequestRecord({"id": "abc123", "ts": "2026-11-21T00:00:00", "dialect": "openai-chat"},
                               BODY, "messages", b'{"choices": []}'))
    store.submit(RequestRecord({"id": "abd456", "ts": "2026-11-21T00:00:01", "dialect": "openai-chat"}))
    store.close()
    return path


def kimi_proxy(*args):
    return subprocess.run([sys.executable, "-m", "kimi_core.cli", *args], capture_output=True, text=True, check=False)


def test_show_prints_the_request_as_sent_without_credentials(db):
    out = kimi_proxy("show", "abc", "--db", str(db))
    assert out.returncode == 0
    assert json.loads(out.stdout) == {**BODY, "api_key": "[REDACTED]"}


def test_show_response(db):
    out = kimi_proxy("--db", str(db), "show", "abc123", "--response")
    assert (out.returncode, json.loads(out.stdout)) == (0, {"choices": []})


@pytest.mark.parametrize("args,message", [
    (("show", "ab"), "kimi-proxy: more than one request matches 'ab'\n"),
    (("show", "zzz"), "kimi-proxy: no request matches 'zzz'\n"),
    (("show", "abd456"), "kimi-proxy: the body of abd456 is not stored (retention, or kimi_store_bodies=false)\n"),
])
def test_errors_are_one_line_and_a_non_zero_exit(db, args, message):
    out = kimi_proxy(*args, "--db", str(db))
    assert (out.returncode, out.stderr, out.stdout) == (1, message, "")


def test_no_database(tmp_path):
    out = kimi_proxy("show", "x", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 1 and out.stderr.startswith("kimi-proxy: no database at ")


ORIGINAL = "résultat de l'outil\x1b[31m rouge\x1b[0m\r\n" + "ligne\n" * 1000 + "fin sans retour"


@pytest.fixture(scope="module")
def archived(tmp_path_factory):
    from kimi_core.store import ArchiveRecord
    path = tmp_path_factory.mktemp("archive") / "kimi.db"
    store = Store(path)
    store.open()
    store.start()
    store.submit(ArchiveRecord(ORIGINAL, 3000, 200, "r1", "read_file"))
    store.submit(ArchiveRecord("another", 1, 1, "r2", "ls"))
    store.close()
    return path


def test_restore_prints_the_original_byte_for_byte(archived):
    import hashlib
    digest = hashlib.sha256(ORIGINAL.encode()).hexdigest()
    for key in (digest, digest[:12], digest[:12].upper()):
        out = subprocess.run([sys.executable, "-m", "kimi_core.cli", "restore", key, "--db", str(archived)],
                             capture_output=True, check=False)
        assert (out.returncode, out.stdout, out.stderr) == (0, ORIGINAL.encode(), b"")


@pytest.mark.parametrize("key,message", [
    ("0000", "kimi-proxy: no archived tool result matches 0000\n"),
    ("xyz!", "kimi-proxy: 'xyz!' is not a sha256 or a prefix of one (4 to 64 hex digits)\n"),
])
def test_restore_errors(archived, key, message):
    out = kimi_proxy("restore", key, "--db", str(archived))
    assert (out.returncode, out.stderr) == (1, message)


@pytest.mark.parametrize("args,message", [
    (("requests", "--limit", "99999999999999999999"), "is not between 1 and 1,000,000"),
    (("requests", "--limit", "ten"), "is not a whole number"),
    (("sessions", "--reject-at", "nan"), "is not between 0 and 100%"),
    (("show", ""), "give a request id"),
])
def test_bad_arguments_are_one_line_not_a_traceback(db, args, message):
    out = kimi_proxy("--db", str(db), *args)
    assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr


def test_a_huge_since_reads_everything(db):
    out = kimi_proxy("--db", str(db), "stats", "--since", "99999999999d", "--json")
    assert out.returncode == 0 and "Traceback" not in out.stderr


def test_the_report_is_private(db, tmp_path):
    import stat
    out = tmp_path / "report.html"
    out.write_text("old")
    out.chmod(0o644)
    assert kimi_proxy("--db", str(db), "report", "-o", str(out)).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "<html" in out.read_text().lower()


def test_memories_are_listed_by_project_and_forgotten_by_id(tmp_path):
    from kimi_core.store import MemoryRecord

    path = tmp_path / "kimi.db"
    store = Store(path)
    store.open()
    store.start()
    store.submit(MemoryRecord("s", "anthropic", "constraint", "never push to main", "Never push to main.", 0.9,
                              "/src/shop"))
    store.submit(MemoryRecord("s", "anthropic", "preference", "prefers httpx over requests", "I prefer httpx.", 0.9))
    store.close()
    listed = json.loads(kimi_proxy("--db", str(path), "memories", "--json").stdout)
    ids = {m["content"]: m["id"] for m in listed}
    assert {m["content"]: m["project"] for m in listed} == {"never push to main": "/src/shop",
                                                           "prefers httpx over requests": ""}
    shop = json.loads(kimi_proxy("--db", str(path), "memories", "--project", "/src/shop/", "--json").stdout)
    assert [m["content"] for m in shop] == ["never push to main"]
    out = kimi_proxy("--db", str(path), "memories", "forget", str(ids["never push to main"]))
    assert out.returncode == 0 and "forgotten" in out.stdout
    left = json.loads(kimi_proxy("--db", str(path), "memories", "--json").stdout)
    assert [m["content"] for m in left] == ["prefers httpx over requests"]
    missing = kimi_proxy("--db", str(path), "memories", "forget", "999")
    assert missing.returncode == 1 and "no memory 999" in missing.stderr


@pytest.fixture(scope="module")
def two_proxies(tmp_path_factory):
    """Two proxies' databases, as two instances behind a load balancer write them: alice on one, bob on both."""
    from kimi_core.store import ArchiveRecord, SessionRecord

    paths = []
    for n, calls in enumerate([[("alice", 0.25), ("bob", 0.5)], [("bob", 1.0), ("bob", 2.0)]]):
        path = tmp_path_factory.mktemp(f"instance{n}") / "kimi.db"
        store = Store(path)
        store.open()
        store.start()
        for i, (user, cost) in enumerate(calls):
            session = f"s{n}{user}"
            store.submit(SessionRecord(session, f"{user} 2026-12-02", "openai", "2026-12-02T10:00:00", "auto", user))
            store.submit(RequestRecord({"id": f"r{n}{i}{user}", "ts": f"2026-12-02T10:0{n}:0{i}",
                                        "session_id": session, "provider": "openai", "dialect": "openai-chat",
                                        "model": "gpt-4o", "user": user, "cost_usd": cost, "prompt_tokens": 100},
                                       {**BODY, "api_key": None, "n": n}, "messages"))
        store.submit(ArchiveRecord(f"original on instance {n}", 10, 1, f"r{n}0", "ls"))
        store.close()
        paths.append(path)
    return paths


def test_several_databases_read_as_one(two_proxies):
    dbs = [a for p in two_proxies for a in ("--db", str(p))]
    by_user = {r["group"]: (r["calls"], r["cost_usd"])
               for r in json.loads(kimi_proxy(*dbs, "cost", "--by", "user", "--json").stdout)}
    assert by_user == {"alice": (1, 0.25), "bob": (3, 3.5)}
    listed = json.loads(kimi_proxy(*dbs, "requests", "--user", "bob", "--json").stdout)
    assert [r["id"] for r in listed] == ["r11bob", "r10bob", "r01bob"]  # newest first, across both
    sessions = json.loads(kimi_proxy(*dbs, "sessions", "--json").stdout)
    assert sorted((s["session"], s["requests"]) for s in sessions) == [("s0alice", 1), ("s0bob", 1), ("s1bob", 2)]
    # The subcommand's --db adds to the first one's; a body and an archive are found in whichever holds them.
    shown = kimi_proxy("--db", str(two_proxies[0]), "show", "r11bob", "--db", str(two_proxies[1]))
    assert shown.returncode == 0 and json.loads(shown.stdout)["n"] == 1
    import hashlib
    digest = hashlib.sha256(b"original on instance 1").hexdigest()
    assert kimi_proxy(*dbs, "restore", digest[:12]).stdout == "original on instance 1"


@pytest.mark.parametrize("args", [("memories", "forget", "1"), ("doctor",), ("dashboard",)])
def test_what_writes_or_serves_takes_one_database(two_proxies, args):
    out = kimi_proxy("--db", str(two_proxies[0]), "--db", str(two_proxies[1]), *args)
    assert out.returncode == 1 and "one --db" in out.stderr and "Traceback" not in out.stderr


def test_more_databases_than_sqlite_attaches_is_one_clear_line(two_proxies):
    out = kimi_proxy(*[a for _ in range(6) for p in two_proxies for a in ("--db", str(p))], "cost")
    assert out.returncode == 1 and "at most 10 at once" in out.stderr
