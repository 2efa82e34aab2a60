"""Recognise LLM traffic: which flows are calls to a provider, in which dialect.

Also owns what the proxy exposes at all:

- it listens on loopback: mitmproxy's default ``listen_host`` is every
  interface, an open proxy on a laptop's Wi-Fi. A ``listen_host`` the user
  sets (``--listen-host 0.0.0.0``) is left as it is.
- by default mitmproxy's ``allow_hosts`` is set to the provider hosts, so TLS
  to every other host is tunnelled untouched. ``kimi_intercept_all`` lifts
  that; a user's own ``allow_hosts`` / ``ignore_hosts`` are left as they are.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import mode_specs

from kimi_core.config import load_config
from kimi_core.errors import ConfigError
from kimi_core.providers import route_for
from kimi_core.proxy.context import HTTP, TRANSPORT, KimiContext, LLMCall
from kimi_core.redact import redact_path
from kimi_core.run import announce, withdraw

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def reverse_targets(modes: list[str]) -> list[str]:
    """``allow_hosts`` patterns for the targets of reverse modes."""
    patterns = []
    for spec in modes:
        try:
            mode = mode_specs.ProxyMode.parse(spec)
        except ValueError:
            continue
        if isinstance(mode, mode_specs.ReverseMode):
            host, port = mode.address
            patterns.append(f"^{re.escape(host)}:{port}$")
    return patterns


def _wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


async def _restart(proxyserver) -> None:
    """Stop the proxy's servers and start them again, so that they read ``listen_host`` anew."""
    modes = [mode_specs.ProxyMode.parse(m) for m in ctx.options.mode]
    await proxyserver.servers.update([])
    if await proxyserver.servers.update(modes):
        logger.info("kimi: listening on %s only (--listen-host 0.0.0.0 to accept other machines)", LOOPBACK)
    else:
        logger.error("kimi: could not listen on %s again: see the errors above", LOOPBACK)


class KimiTraffic:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self._our_allow: list[str] | None = None
        self._loopback = False  # listen_host was left to its default: Kimi set it to loopback
        self._announcing: asyncio.Task | None = None
        self._announced: Path | None = None  # the database next to which proxy.json was written

    def load(self, loader) -> None:
        loader.add_option(
            "kimi_config", str, "",
            "Kimi Proxy's TOML configuration file (extra providers and models). "
            "Default: ~/.kimi-proxy/config.toml when it exists.",
        )
        loader.add_option(
            "kimi_intercept_all", bool, False,
            "Decrypt all TLS traffic, not only the LLM provider hosts Kimi knows. "
            "Non-provider flows still pass untouched.",
        )

    def configure(self, updated: set[str]) -> None:
        if "listen_host" in updated and not ctx.options.listen_host:
            self._loopback = True
            ctx.options.update(listen_host=LOOPBACK)
        if "kimi_config" in updated:
            try:
                self.kimi.config = load_config(ctx.options.kimi_config or None)
            except ConfigError as e:
                raise exceptions.OptionsError(str(e)) from e
            self.kimi.registry = self.kimi.config.registry()
            self.kimi.prices.own = self.kimi.config.prices()
        if updated & {"kimi_config", "kimi_intercept_all", "mode", "allow_hosts", "ignore_hosts"}:
            self._set_allow_hosts()

    def running(self) -> None:
        # mitmproxy loads scripts in a task that races with the start of its
        # servers: those that started before ``configure`` set the loopback
        # address listen on every interface. Start them again, on loopback.
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is None:
            return
        loop = asyncio.get_running_loop()
        if self._loopback and any(_wildcard(addr[0]) for server in proxyserver.servers
                                  for addr in server.listen_addrs if server.mode.custom_listen_host is None):
            loop.create_task(_restart(proxyserver))
        self._announcing = loop.create_task(self._announce(proxyserver))

    async def _announce(self, proxyserver) -> None:
        """Once the proxy listens where it will stay: say where, for ``kimi-proxy run``."""
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            ports = [addr[1] for server in proxyserver.servers if isinstance(server.mode, mode_specs.RegularMode)
                     for addr in server.listen_addrs
                     if addr[0] in ("127.0.0.1", "::1", "localhost") or (not self._loopback and _wildcard(addr[0]))]
            if ports and not (self._loopback and any(_wildcard(a[0]) for s in proxyserver.servers
                                                     for a in s.listen_addrs)):
                try:
                    self._announced = Path(ctx.options.kimi_db).expanduser()
                    announce(self._announced, ports[0], Path(ctx.options.confdir).expanduser())
                except OSError as e:
                    logger.warning("kimi: cannot say where the proxy listens (kimi-proxy run will start its own): %s",
                                   e)
                return
            await asyncio.sleep(0.05)

    def done(self) -> None:
        if self._announced is not None:
            withdraw(self._announced)

    def _set_allow_hosts(self) -> None:
        current = list(ctx.options.allow_hosts)
        ours = self._our_allow
        if ctx.options.kimi_intercept_all:
            wanted: list[str] = []
        else:
            wanted = self.kimi.registry.allow_patterns() + reverse_targets(list(ctx.options.mode))
        if (current and current != ours) or ctx.options.ignore_hosts:
            if ours is None:
                logger.info("kimi: allow_hosts/ignore_hosts set by you; Kimi leaves them alone")
                self._our_allow = []
            return
        if current != wanted:
            self._our_allow = wanted
            ctx.options.update(allow_hosts=wanted)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """What Kimi decrypts but does not read passes as it comes, unbuffered (chatgpt.com's web app
        streams its answers too): mitmproxy would hold each response until its end."""
        if flow.response is None or flow.response.stream or ctx.options.kimi_intercept_all:
            return
        call = self.kimi.call(flow)
        if call is not None and call.dialect is not None:
            return  # an LLM call: metered, and streamed by the meter if it is a stream
        if call is None and self.kimi.registry.match(flow.request.host, flow.request.port) is None:
            return  # not decrypted because of Kimi
        flow.response.stream = True

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return  # answered by another addon, or replayed
        provider = self.kimi.registry.match(flow.request.host, flow.request.port)
        if provider is None or not provider.serves(flow.request.path):
            return
        path = redact_path(flow.request.path)
        route = route_for(flow.request.path, flow.request.method, provider)
        call = LLMCall(
            provider=provider.name,
            dialect=route.dialect if route else None,
            host=flow.request.host,
            path=path,
            transport=flow.metadata.get(TRANSPORT, HTTP),
            route=route,
        )
        self.kimi.calls[flow] = call
        flow.metadata["kimi"] = {"provider": provider.name, "dialect": call.dialect}
