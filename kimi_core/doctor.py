"""``kimi-proxy doctor``: is everything in place, and if not, what to do about it."""

from __future__ import annotations

import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from kimi_core import tokens
from kimi_core.config import DEFAULT_CONFIG, load_config
from kimi_core.errors import ConfigError
from kimi_core.store.store import unsafe_location

OK, WARN, PROBLEM = "ok", "warning", "problem"
CA_FILE = "mitmproxy-ca-cert.pem"


@dataclass(frozen=True, slots=True)
class Check:
    what: str
    status: str  # ok, warning, problem
    detail: str
    fix: str = ""


def _holds(bundle: Path, ca: Path) -> bool:
    """Is ``ca`` the file ``bundle``, or one of the certificates in it?"""
    try:
        return bundle.resolve() == ca.resolve() or ca.read_text().strip() in bundle.read_text(errors="replace")
    except OSError:
        return False


def _trust_fix(var: str, ca: Path) -> str:
    if var == "NODE_EXTRA_CA_CERTS":  # added to Node's own roots
        return f"export {var}={ca}"
    # Python replaces its roots with the file: a bundle keeps every other site working.
    return (f"cat /etc/ssl/certs/ca-certificates.crt {ca} > ~/.kimi-proxy/ca-bundle.pem && "
            f"export {var}=~/.kimi-proxy/ca-bundle.pem")


def _ca(confdir: Path) -> list[Check]:
    ca = confdir / CA_FILE
    if not ca.exists():
        return [Check("mitmproxy CA", PROBLEM, f"no {ca} yet",
                      "start the proxy once (scripts/run mitmdump -s addons/kimi.py); it creates its CA there")]
    out = [Check("mitmproxy CA", OK, str(ca))]
    system = "sudo cp {ca} /usr/local/share/ca-certificates/mitmproxy.crt && sudo update-ca-certificates"
    if sys.platform == "darwin":
        system = "sudo security add-trusted-cert -d -p ssl -k /Library/Keychains/System.keychain {ca}"
    trusted = Path("/etc/ssl/certs/mitmproxy.pem").exists() or Path(
        "/usr/local/share/ca-certificates/mitmproxy.crt").exists()
    out.append(Check("system trust", OK if trusted else WARN,
                     "the CA is in the system store" if trusted else "the CA is not in the system store",
                     "" if trusted else system.format(ca=ca)))
    for var, who in (("SSL_CERT_FILE", "Python (httpx, openai, anthropic)"),
                     ("REQUESTS_CA_BUNDLE", "Python requests"), ("NODE_EXTRA_CA_CERTS", "Node agents")):
        value = os.environ.get(var)
        if value and _holds(Path(value).expanduser(), ca):
            out.append(Check(f"{var}", OK, f"{who} trust the CA ({value})"))
        elif value:
            out.append(Check(f"{var}", WARN, f"set to {value}, which does not hold the mitmproxy CA: {who} will "
                                             "not trust Kimi", _trust_fix(var, ca)))
        else:
            out.append(Check(f"{var}", WARN, f"not set: {who} may not trust Kimi", _trust_fix(var, ca)))
    return out


def _proxy_env() -> Check:
    found = {v: os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy") if v in os.environ}
    if found:
        return Check("proxy variables", OK, ", ".join(f"{k}={v}" for k, v in found.items()))
    return Check("proxy variables", WARN, "HTTPS_PROXY is not set in this shell",
                 "scripts/run kimi-proxy run -- YOUR_AGENT sets it (and the CA variables) for one command; "
                 "or export HTTPS_PROXY=http://127.0.0.1:8080 HTTP_PROXY=http://127.0.0.1:8080")


def _database(path: Path) -> Check:
    if path.parent.exists() and (problem := unsafe_location(path)):
        return Check("database", PROBLEM, problem, "use a private folder: --set kimi_db=~/.kimi-proxy/kimi.db")
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and os.access(parent, os.W_OK):
            return Check("database", WARN, f"no {path} yet (created when the proxy starts)",
                         "start the proxy, or pass --db")
        return Check("database", PROBLEM, f"cannot create {path}: {parent} is not writable",
                     "choose another place with --set kimi_db=PATH")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return Check("database", PROBLEM, f"{path} is not writable", f"chmod u+w {path} {path.parent}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        applied = [n for (n,) in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
        conn.close()
    except sqlite3.Error as e:
        return Check("database", PROBLEM, f"{path}: {e}", "move it aside; the proxy creates a new one")
    if result != "ok":
        return Check("database", PROBLEM, f"{path}: integrity check says {result}",
                     f"sqlite3 {path} '.recover' | sqlite3 recovered.db, then use recovered.db")
    mode = oct(path.stat().st_mode & 0o777)
    private = path.stat().st_mode & 0o077 == 0
    return Check("database", OK if private else WARN,
                 f"{path}, writable, {len(applied)} migrations, mode {mode}",
                 "" if private else f"chmod 600 {path}")


def _config(path: str | None) -> Check:
    shown = path or str(DEFAULT_CONFIG)
    if not path and not DEFAULT_CONFIG.expanduser().exists():
        return Check("config", OK, f"no {shown}: built-in providers and models")
    try:
        config = load_config(path)
    except ConfigError as e:
        return Check("config", PROBLEM, str(e), f"fix {shown}, then restart the proxy")
    return Check("config", OK, f"{shown}: {len(config.providers)} providers, {len(config.models)} models")


def _encodings() -> Check:
    have = [n for n in ("cl100k_base", "o200k_base") if tokens.available_offline(n)]
    if "o200k_base" in have:
        return Check("tokenizers", OK, f"offline: {', '.join(have)}")
    return Check("tokenizers", WARN, f"offline: {', '.join(have) or 'none'}; o200k_base (gpt-4o, gpt-4.1, gpt-5, o-series) "
                 "is approximated with cl100k_base",
                 "on a machine with internet: python -c \"import tiktoken; tiktoken.get_encoding('o200k_base')\" "
                 "with TIKTOKEN_CACHE_DIR set, then copy that directory here and set TIKTOKEN_CACHE_DIR")


def checks(db: Path, confdir: Path, config: str | None) -> list[Check]:
    return [*_ca(confdir), _proxy_env(), _database(db), _config(config), _encodings()]
