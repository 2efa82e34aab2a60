"""A mitmproxy addon for tests and benchmarks: send every upstream connection to a fake provider.

Load it after Kimi (``-s addons/kimi.py -s kimi_core/testing/redirect.py``) with
``--set kimi_fake_upstream=127.0.0.1:PORT`` and ``--set connection_strategy=lazy``:
the client still talks to ``api.openai.com`` (Host header, SNI and
``flow.request.host`` stay as sent), only the TCP connection goes to loopback.
"""

from mitmproxy import ctx


class FakeUpstream:
    def load(self, loader) -> None:
        loader.add_option("kimi_fake_upstream", str, "", "host:port to send all upstream connections to")

    def server_connect(self, data) -> None:
        target = ctx.options.kimi_fake_upstream
        if target:
            host, _, port = target.rpartition(":")
            data.server.address = (host, int(port))


addons = [FakeUpstream()]
