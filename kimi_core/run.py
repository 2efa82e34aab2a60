"""``kimi-proxy run [--session NAME] -- COMMAND...``: a command with its LLM calls through Kimi.

It uses the proxy that is running (each mitmdump with Kimi writes where it
listens to ``proxy.json`` next to its database, and removes it when it
stops), or starts one for the command's lifetime. The command gets what
each kind of client needs to go through the proxy and trust its CA:
``HTTPS_PROXY`` and friends, ``NODE_EXTRA_CA_CERTS`` (Node: Claude Code,
Gemini CLI), ``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``
(Python, curl, Rust) and ``CODEX_CA_CERTIFICATE`` (Codex), the last ones a
bundle of the system's CAs plus mitmproxy's, made once. Its calls are in
the session ``--session`` names: the proxy credentials ``kimi:NAME`` carry
it, and Kimi reads and removes them. The exit status is the command's.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from kimi_core.errors import KimiError

STATE = "proxy.json"
DASHBOARD = "dashboard.json"  # where the proxy's dashboard listens, and its token (private, like the database)
BUNDLE = "ca-bundle.pem"
START_TIMEOUT = 60.0
ADDON = Path(__file__).resolve().parent.parent / "addons" / "kimi.py"


# -- the proxy's side: where it listens --------------------------------------------------------------


def announce(db: Path, port: int, confdir: Path, name: str = STATE, **more: Any) -> None:
    """Say where this proxy listens, next to its database (private, written whole)."""
    state = db.parent / name
    tmp = state.with_name(f".{name}.{os.getpid()}")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "port": port, "confdir": str(confdir), "db": str(db), **more}, f)
    os.replace(tmp, state)


def withdraw(db: Path, name: str = STATE) -> None:
    """This proxy stops: forget it, unless another one has taken its place."""
    state = db.parent / name
    with contextlib.suppress(OSError, ValueError):
        if json.loads(state.read_text()).get("pid") == os.getpid():
            state.unlink()


# -- the command's side ----------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        return True
    return False


def running_proxy(db: Path, name: str = STATE) -> dict[str, Any] | None:
    """The proxy writing to ``db``, if one runs and answers (``DASHBOARD``: its dashboard)."""
    try:
        state = json.loads((db.parent / name).read_text())
        pid, port = int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid) or not _listening(port):
        return None
    return state


def dashboard_url(db: Path) -> str | None:
    """The address (token included) of the dashboard of the proxy writing to ``db``, if it serves one."""
    state = running_proxy(db, DASHBOARD)
    return f"{state['url']}?token={state['token']}" if state and state.get("url") and state.get("token") else None


def wait_for_dashboard(db: Path, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while (url := dashboard_url(db)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return url


def start_proxy(db: Path, confdir: Path, log: Path,
                extra: list[str] | None = None) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """A mitmdump with Kimi for the command's lifetime, once it listens."""
    if not ADDON.exists():
        raise KimiError(f"cannot start a proxy: {ADDON} is missing (run kimi-proxy from a checkout of Kimi Proxy)")
    mitmdump = Path(sys.executable).with_name("mitmdump")
    if not mitmdump.exists():
        raise KimiError(f"cannot start a proxy: no mitmdump next to {sys.executable}")
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    before = running_proxy(db)
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(mitmdump), "-s", str(ADDON), "--listen-host", "127.0.0.1", "--listen-port", "0",
                                 "--set", f"confdir={confdir}", "--set", f"kimi_db={db}", *(extra or [])],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = running_proxy(db)
        if state is not None and state != before and state["pid"] == proc.pid:
            return proc, state
        if proc.poll() is not None:
            raise KimiError(f"the proxy stopped at start (exit {proc.returncode}); its log: {log}")
        time.sleep(0.05)
    stop_proxy(proc)
    raise KimiError(f"the proxy did not start within {START_TIMEOUT:.0f} s; its log: {log}")


def stop_proxy(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def system_cas() -> bytes:
    """The system's trusted CAs, as PEM."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile,
                      "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"):
        if candidate and Path(candidate).is_file():
            with contextlib.suppress(OSError):
                return Path(candidate).read_bytes()
    with contextlib.suppress(ImportError, OSError):
        import certifi
        return Path(certifi.where()).read_bytes()
    return b""


def bundle(ca: Path, folder: Path) -> Path:
    """The system's CAs plus mitmproxy's, for clients that trust one file (made again when the CA changes)."""
    out = folder / BUNDLE
    if out.exists() and out.stat().st_mtime >= ca.stat().st_mtime:
        return out
    tmp = out.with_name(f".{BUNDLE}.{os.getpid()}")
    tmp.write_bytes(system_cas().rstrip(b"\n") + b"\n" + ca.read_bytes())
    os.replace(tmp, out)
    return out


def environment(base: dict[str, str], port: int, ca: Path, ca_bundle: Path, session: str) -> dict[str, str]:
    """The command's environment: through the proxy, trusting its CA, its calls in ``session``."""
    url = f"http://kimi:{urllib.parse.quote(session, safe='')}@127.0.0.1:{port}"
    no_proxy = ",".join(dict.fromkeys(filter(None, [*(base.get("NO_PROXY") or base.get("no_proxy") or "").split(","),
                                                   "localhost", "127.0.0.1", "::1"])))
    return {
        **base,
        "HTTPS_PROXY": url, "HTTP_PROXY": url, "https_proxy": url, "http_proxy": url, "ALL_PROXY": url,
        "NO_PROXY": no_proxy, "no_proxy": no_proxy,
        "NODE_EXTRA_CA_CERTS": str(ca),  # Node (Claude Code, Gemini CLI): added to its own roots
        "NODE_USE_ENV_PROXY": "1",  # Node 24+: fetch() follows HTTPS_PROXY
        "SSL_CERT_FILE": str(ca_bundle),  # OpenSSL, Python, Rust (Codex)
        "REQUESTS_CA_BUNDLE": str(ca_bundle),
        "CURL_CA_BUNDLE": str(ca_bundle),
        "CODEX_CA_CERTIFICATE": str(ca_bundle),
        "KIMI_PROXY_SESSION": session,
    }


def run(command: list[str], db: Path, confdir: Path, session: str | None, proxy_args: list[str] | None = None) -> int:
    if not command:
        raise KimiError("nothing to run: kimi-proxy run [--session NAME] -- COMMAND [ARGS...]")
    db, confdir = db.expanduser().resolve(), confdir.expanduser().resolve()
    name = session or f"{Path(command[0]).name} {datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}"
    proc = None
    state = running_proxy(db)
    if state is None:
        log = db.parent / f"run-proxy-{os.getpid()}.log"
        proc, state = start_proxy(db, confdir, log, proxy_args)
        print(f"kimi-proxy: started a proxy on 127.0.0.1:{state['port']} for this command (log: {log})",
              file=sys.stderr)
    try:
        ca = Path(state.get("confdir") or confdir) / "mitmproxy-ca-cert.pem"
        if not ca.exists():
            raise KimiError(f"no CA at {ca}: has the proxy started with that confdir?")
        env = environment(dict(os.environ), int(state["port"]), ca, bundle(ca, db.parent), name)
        print(f"kimi-proxy: {' '.join(command)} → Kimi on 127.0.0.1:{state['port']}, session {name!r}",
              file=sys.stderr)
        if dashboard := wait_for_dashboard(db, 0.5):
            print(f"kimi-proxy: dashboard on {dashboard}", file=sys.stderr)
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as e:
            raise KimiError(f"cannot run {command[0]}: {e.strerror or e}") from None
        while True:
            try:
                code = child.wait()
            except KeyboardInterrupt:  # the command has it too (same terminal): let it finish
                continue
            return 128 - code if code < 0 else code  # killed by a signal: as a shell says it
    finally:
        if proc is not None:
            stop_proxy(proc)
