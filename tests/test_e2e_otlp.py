"""OpenTelemetry export end to end: a real mitmdump with Kimi exporting over OTLP/HTTP to a receiver on
loopback that decodes the protobuf payloads (opentelemetry-proto), the official SDKs for traffic."""

import time
import uuid

import httpx
import pytest
from conftest import wait_rows
from test_e2e import anthropic_client, openai_client

from kimi_core.testing.otlp import OTLPReceiver
from kimi_core.testing.proxy import Mitmdump, free_port

pytestmark = pytest.mark.e2e

CONFIG = """
[models."small"]
context_window = 2000
"""


def wait_spans(receiver, model, count=1, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in receiver.spans() if s["attributes"].get("gen_ai.request.model") == model]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def tag():
    return f"otlp-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def exporting(fake, tmp_path_factory):
    work = tmp_path_factory.mktemp("otlp")
    (work / "config.toml").write_text(CONFIG)
    with OTLPReceiver() as receiver:
        options = {"kimi_otlp_endpoint": receiver.url, "kimi_otlp_headers": "x-team=kimi-e2e,x-tenant=laptops",
                   "kimi_config": str(work / "config.toml")}
        with Mitmdump(work, upstream_port=fake.port, options=options) as proxy:
            yield proxy, receiver


def test_each_call_is_a_span_with_the_rows_figures(exporting):
    proxy, receiver = exporting
    chat, messages = tag(), tag()
    secret_words = f"the launch code is {uuid.uuid4().hex}"
    openai_client(proxy).chat.completions.create(model=chat, messages=[{"role": "user", "content": secret_words}])
    anthropic_client(proxy).messages.create(model=messages, max_tokens=50,
                                            messages=[{"role": "user", "content": "hello"}])
    for model, provider in ((chat, "openai"), (messages, "anthropic")):
        [row] = wait_rows(proxy.db, "model = ?", (model,))
        [span] = wait_spans(receiver, model)
        a = span["attributes"]
        assert span["name"] == f"chat {model}" and span["kind"] == 3  # SPAN_KIND_CLIENT
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == provider
        assert a["gen_ai.usage.input_tokens"] == row["prompt_tokens"]
        assert a["gen_ai.usage.output_tokens"] == row["completion_tokens"]
        assert a["gen_ai.conversation.id"] == row["conversation_id"]
        assert a["kimi.request.id"] == row["id"] and a["kimi.session.id"] == row["session_id"]
        assert a["kimi.window"] == row["context_window"] and a["kimi.prompt.estimate"] == row["prompt_tokens_est"]
        assert a["kimi.agent"] == row["agent"] and a["kimi.action"] == "passed"
        assert abs((span["end"] - span["start"]) / 1e6 - row["duration_ms"]) < 1
        assert span["resource"]["service.name"] == "kimi-proxy"
    # No prompt or completion text unless asked (kimi_otlp_content), and the headers given reached it.
    assert not any(secret_words in str(s) for s in receiver.spans())
    assert all(h.get("x-team") == "kimi-e2e" and h.get("x-tenant") == "laptops" for h in receiver.headers)


def test_a_refusal_is_a_span_event(exporting):
    proxy, receiver = exporting
    with pytest.raises(Exception):  # noqa: B017  (the SDK's BadRequestError)
        openai_client(proxy).chat.completions.create(
            model="small", messages=[{"role": "user", "content": f"{tag()} " + "lorem ipsum " * 2000}])
    [row] = wait_rows(proxy.db, "model = 'small' AND action = 'rejected'")
    [span] = [s for s in wait_spans(receiver, "small") if s["attributes"]["kimi.request.id"] == row["id"]]
    assert span["attributes"]["kimi.action"] == "rejected" and span["attributes"]["error.type"] == "400"
    [(name, event)] = span["events"]
    assert name == "kimi.refusal" and event["kimi.alert.kind"] == "rejected" and "2,000" in event["kimi.alert.message"]
    assert span["status"] == 2  # STATUS_CODE_ERROR


def test_metrics_go_too_and_the_last_ones_at_exit(fake, tmp_path):
    with OTLPReceiver() as receiver:
        with Mitmdump(tmp_path, upstream_port=fake.port, options={"kimi_otlp_endpoint": receiver.url}) as proxy:
            openai_client(proxy).chat.completions.create(model=tag(), messages=[{"role": "user", "content": "hi"}])
            wait_rows(proxy.db)
        assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= receiver.metric_names()


def test_every_prometheus_metric_goes_too(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")  # the SDK's own setting (a minute by default)
    served = {"kimi_requests", "kimi_request_duration_seconds_count", "kimi_db_records_written"}
    with OTLPReceiver() as receiver, \
            Mitmdump(tmp_path, upstream_port=fake.port, options={"kimi_otlp_endpoint": receiver.url}) as proxy:
        openai_client(proxy).chat.completions.create(model=tag(), messages=[{"role": "user", "content": "hi"}])
        wait_rows(proxy.db)
        # With its labels and value, as Prometheus reads it.
        deadline = time.monotonic() + 30
        while not served <= receiver.metric_names() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served <= receiver.metric_names()
        [calls] = [p for p in receiver.points("kimi_requests") if p["attributes"].get("action") == "passed"]
        assert calls["value"] == 1 and calls["attributes"]["provider"] == "openai"


def test_content_only_when_asked_and_without_credentials(fake, tmp_path):
    key = "sk-proj-" + uuid.uuid4().hex + uuid.uuid4().hex
    with OTLPReceiver() as receiver:
        options = {"kimi_otlp_endpoint": receiver.url, "kimi_otlp_content": "true"}
        with Mitmdump(tmp_path, upstream_port=fake.port, options=options) as proxy:
            model = tag()
            openai_client(proxy).chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"Deploy with the key {key} please"}])
            [span] = wait_spans(receiver, model)
    assert "Deploy with the key" in span["attributes"]["gen_ai.input.messages"]
    assert key not in str(receiver.spans())
    assert span["attributes"]["gen_ai.output.messages"]


@pytest.mark.parametrize("collector", ["down", "answering after 10 s"])
def test_a_collector_down_or_slow_costs_the_traffic_nothing(fake, tmp_path, collector):
    receiver = OTLPReceiver(delay=10.0) if collector != "down" else None
    url = receiver.start().url if receiver else f"http://127.0.0.1:{free_port()}"  # down: nothing listens there
    metrics_port = free_port()
    options = {"kimi_otlp_endpoint": url, "kimi_metrics_port": str(metrics_port), "kimi_otlp_timeout": "2"}
    try:
        with Mitmdump(tmp_path, upstream_port=fake.port, options=options) as proxy:
            model = tag()
            client = openai_client(proxy)
            took = []
            for _ in range(20):
                started = time.monotonic()
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
                took.append(time.monotonic() - started)
            rows = wait_rows(proxy.db, "model = ?", (model,), count=20)
            assert len(rows) == 20
            # Half the collector's delay: a call that waited for it would take all of it.
            assert max(took) < 5 and max(r["duration_ms"] for r in rows) < 5000

            def spans(outcome):
                text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", trust_env=False).text
                return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("kimi_otlp_spans_total") and f'outcome="{outcome}"' in line)

            assert spans("created") == 20
            if collector == "down":  # the SDK's retries give up: counted, not hidden
                deadline = time.monotonic() + 30
                while spans("failed") < 20 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert spans("failed") == 20
            assert proxy.stop() == 0  # stopped by itself, not killed: it never waits on the collector
    finally:
        if receiver is not None:
            receiver.stop()
