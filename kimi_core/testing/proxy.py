"""Start a real ``mitmdump`` (with or without Kimi) on loopback, for tests and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[2]
KIMI_SCRIPT = ROOT / "addons" / "kimi.py"
REDIRECT_SCRIPT = Path(__file__).with_name("redirect.py")
_LISTENING = re.compile(r"listening at (\S+):(\d+)\.")


_DASHBOARD = re.compile(r"kimi: dashboard on (http://\S+/)\?token=(\S+)")


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mitmdump:
    """``with Mitmdump(workdir, upstream_port=fake.port) as proxy: proxy.url, proxy.ca``."""

    def __init__(self, workdir: Path, upstream_port: int | None = None, kimi: bool = True,
                 options: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 listen_host: str | None = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.confdir = self.workdir / "mitmproxy-conf"
        self.db = Path((options or {}).get("kimi_db") or self.workdir / "kimi.db")
        self.log_path = self.workdir / f"mitmdump-{os.getpid()}-{time.monotonic_ns()}.log"
        cmd = [str(Path(sys.executable).with_name("mitmdump")), "--listen-port", "0",
               "--set", f"confdir={self.confdir}"]
        if listen_host is not None:  # None: mitmproxy's default, which Kimi turns into loopback
            cmd += ["--listen-host", listen_host]
        if kimi:
            cmd += ["-s", str(KIMI_SCRIPT), "--set", f"kimi_db={self.db}"]
            if "kimi_web_port" not in (options or {}):  # many proxies at once: no dashboard unless asked
                cmd += ["--set", "kimi_web_port=0"]
        if upstream_port is not None:
            cmd += ["-s", str(REDIRECT_SCRIPT), "--set", f"kimi_fake_upstream=127.0.0.1:{upstream_port}",
                    "--set", "connection_strategy=lazy", "--set", "ssl_insecure=true"]
        for key, value in (options or {}).items():
            if key != "kimi_db":
                cmd += ["--set", f"{key}={value}"]
        self.cmd = cmd + list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def dashboard(self, timeout: float = 15.0) -> tuple[str, str]:
        """The dashboard's address and token, as the proxy logged them at start-up."""
        deadline = time.monotonic() + timeout
        while True:
            found = _DASHBOARD.findall(self.log())
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 30.0) -> Mitmdump:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Without --listen-host, Kimi starts the server again on loopback: wait for that one.
            found = [m for m in _LISTENING.finditer(self.log()) if m.group(1) != "*" or "--listen-host" in self.cmd]
            if found:
                self.port = int(found[-1].group(2))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mitmdump did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
