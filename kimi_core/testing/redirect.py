"""A mitmproxy addon for tests and benchmarks: send every upstream connection to a fake provider.

Load it after Kimi (``-s addons/kimi.py -s kimi_core/testing/redirect.py``) with
``--set kimi_fake_upstream=127.0.0.1:PORT`` and ``--set connection_strategy=lazy``:
the client still talks to ``api.openai.com`` (Host header, SNI and
``flow.request.host`` stay as sent), only the TCP connection goes to loopback.

Once connected, the server's address is put back to the name the client asked
for: mitmproxy reuses an upstream connection only for the same address, and
without this every request would open (and leave open) a new connection.
"""

from mitmproxy import ctx


class FakeUpstream:
    def __init__(self) -> None:
        self._asked: dict[str, tuple[str, int]] = {}

    def load(self, loader) -> None:
        loader.add_option("kimi_fake_upstream", str, "", "host:port to send all upstream connections to")

    def server_connect(self, data) -> None:
        target = ctx.options.kimi_fake_upstream
        if target and data.server.address:
            host, _, port = target.rpartition(":")
            self._asked[data.server.id] = data.server.address
            data.server.address = (host, int(port))

    def server_connected(self, data) -> None:
        asked = self._asked.pop(data.server.id, None)
        if asked is not None:
            # Server.__setattr__ refuses address changes on an open connection.
            data.server.__dict__["address"] = asked

    def server_connect_error(self, data) -> None:
        self._asked.pop(data.server.id, None)


addons = [FakeUpstream()]
