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
