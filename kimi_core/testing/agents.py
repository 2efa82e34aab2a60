"""The coding agents our users run, installed from the npm registry for tests.

Pinned versions go into a cache folder (``$KIMI_AGENTS_CACHE``, else
``~/.cache/kimi-proxy/agents``), one folder per set of versions, installed
once (about 20 s and 900 MB) and reused by later runs. ``environment`` gives
an agent what a user would set to put it behind Kimi: the proxy, the CA in
the form each runtime reads, a fresh home so no user configuration leaks in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

AGENTS = {
    "claude": ("@anthropic-ai/claude-code", "2.1.332"),
    "codex": ("@openai/codex", "0.171.0"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
}
INSTALL_TIMEOUT = 600


class AgentsUnavailable(RuntimeError):
    """The agents cannot be installed here (no npm, no registry)."""


def cache_dir() -> Path:
    root = os.environ.get("KIMI_AGENTS_CACHE") or Path.home() / ".cache" / "kimi-proxy" / "agents"
    pins = " ".join(f"{package}@{version}" for package, version in sorted(AGENTS.values()))
    return Path(root) / hashlib.sha256(pins.encode()).hexdigest()[:12]


def install() -> Path:
    """The folder of the agents' executables, installing them first if needed."""
    npm = shutil.which("npm")
    if npm is None:
        raise AgentsUnavailable("npm is not installed (Debian: apt-get install npm)")
    folder = cache_dir()
    bin_dir = folder / "node_modules" / ".bin"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time, whoever asks
        if all((bin_dir / name).exists() for name in AGENTS) and (folder / ".installed").exists():
            return bin_dir
        packages = [f"{package}@{version}" for package, version in AGENTS.values()]
        try:
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(folder),
                            *packages], check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except subprocess.CalledProcessError as e:
            raise AgentsUnavailable(f"npm install failed: {e.stderr.strip()[-500:]}") from e
        except subprocess.TimeoutExpired as e:
            raise AgentsUnavailable(f"npm install took over {INSTALL_TIMEOUT} s") from e
        (folder / ".installed").write_text("\n".join(packages) + "\n")
    return bin_dir


def environment(home: Path, proxy_url: str, ca: Path, bundle: Path, **extra: str) -> dict[str, str]:
    """What a user sets to run an agent behind Kimi, in a home of its own."""
    home.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TERM", "TMPDIR")}
    return {
        **keep,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "HTTPS_PROXY": proxy_url, "HTTP_PROXY": proxy_url, "https_proxy": proxy_url, "http_proxy": proxy_url,
        "NO_PROXY": "", "no_proxy": "",
        "NODE_EXTRA_CA_CERTS": str(ca),  # Claude Code, Gemini CLI (Node)
        "SSL_CERT_FILE": str(bundle),  # Codex (Rust) and Python
        "CODEX_CA_CERTIFICATE": str(bundle),
        "DISABLE_AUTOUPDATER": "1",
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        **extra,
    }
