"""``kimi-proxy`` as a subprocess against a database a real proxy session filled."""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest
from conftest import CHROMIUM_ARGS, chromium, wait_rows
from test_e2e import anthropic_client, openai_client
from test_e2e_compaction import tool_call, tool_output

from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e

TAG = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def recorded(fake, tmp_path_factory):
    """A proxy session: chats in two named sessions, a compaction, a refusal, an alert, memories."""
    config = tmp_path_factory.mktemp("cli-config") / "config.toml"
    config.write_text('[models."tiny"]\ncontext_window = 4000\n')
    options = {"kimi_config": str(config), "kimi_tool_budget": "2000"}
    with Mitmdump(tmp_path_factory.mktemp("cli"), upstream_port=fake.port, options=options) as proxy:
        chat = openai_client(proxy)
        history = [{"role": "user", "content": "I prefer pytest over unittest. Look at the tree."}]
        for turn in range(4):  # a growing conversation in session "alpha"
            chat.chat.completions.create(model="tiny-1", messages=history, extra_headers={"X-Kimi-Session": "alpha"})
            history = history + [{"role": "assistant", "content": f"Turn {turn} done."},
                                 {"role": "user", "content": "lorem ipsum dolor sit amet " * 60}]
        with pytest.raises(Exception, match="refused"):
            chat.chat.completions.create(model="tiny-1", extra_headers={"X-Kimi-Session": "alpha"},
                                         messages=[{"role": "user", "content": "lorem ipsum " * 3000}])
        chat.models.list(extra_headers={"X-Kimi-Session": "alpha"})  # no generation: visible, counted apart
        anthropic_client(proxy).messages.count_tokens(model="tiny-1", messages=[{"role": "user", "content": "hi"}],
                                                      extra_headers={"X-Kimi-Session": "alpha"})
        listing = tool_output(needle="needle_settings", tag=TAG)
        chat.chat.completions.create(model="gpt-4.1", extra_headers={"X-Kimi-Session": "beta"}, messages=[
            {"role": "user", "content": "Never touch the billing module. Where are the needle settings?"},
            {"role": "assistant", "content": None, "tool_calls": [tool_call()]},
            {"role": "tool", "tool_call_id": "call_0", "content": listing}])
        anthropic_client(proxy).messages.create(model="claude-opus-4-5", max_tokens=20,
                                                extra_headers={"X-Kimi-Session": "beta"},
                                                messages=[{"role": "user", "content": "Summarise."}])
        wait_rows(proxy.db, count=9)
        proxy.listing = listing
    return proxy


def kimi_proxy(proxy, *args, check=True):
    run = subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(proxy.db), *args],
                         capture_output=True, text=True, check=False)
    if check:
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
    return run


def as_json(proxy, *args):
    return json.loads(kimi_proxy(proxy, *args, "--json").stdout)


def test_sessions_with_their_tokens_refusals_compactions_and_forecast(recorded):
    rows = {r["name"]: r for r in as_json(recorded, "sessions")}
    alpha, beta = rows["alpha"], rows["beta"]
    assert (alpha["requests"], alpha["refusals"], alpha["compactions"], alpha["models"]) == (5, 1, 0, "tiny-1")
    assert alpha["other_calls"] == 2  # the model list and the token count: not LLM calls
    assert alpha["prompt_tokens"] > 0 and alpha["prompt_tokens_est"] > 0 and alpha["peak_share"] > 0.1
    # Four turns growing by about 420 tokens each, towards 95% of a 4,000-token window.
    assert 300 < alpha["growth_per_turn"] < 600 and 0 < alpha["turns_left"] < 15
    assert (beta["requests"], beta["compactions"], beta["refusals"]) == (2, 1, 0)
    assert set(beta["models"].split(",")) == {"gpt-4.1", "claude-opus-4-5"}
    table = kimi_proxy(recorded, "sessions").stdout
    assert re.search(r"alpha\s+openai\s+tiny-1\s+5\s+2\b", table) and "turns left" in table


def test_requests_of_one_session(recorded):
    rows = as_json(recorded, "requests", "--session", "alpha", "--limit", "3")
    assert len(rows) == 3 and rows[2]["action"] == "rejected" and rows[2]["status"] == 400
    assert [r["dialect"] for r in rows[:2]] == [None, None]  # the count and the list came after
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    out = kimi_proxy(recorded, "requests", "--limit", "2").stdout
    assert out.splitlines()[0].split()[:6] == ["id", "time", "agent", "conv.", "provider", "model"]
    assert len(out.splitlines()) == 4


def test_stats_per_provider_and_model(recorded):
    rows = {(r["provider"], r["model"]): r for r in as_json(recorded, "stats", "--since", "1h")}
    tiny = rows[("openai", "tiny-1")]
    assert (tiny["calls"], tiny["refusals"]) == (5, 1) and tiny["p50_ms"] > 0 and tiny["ttfb_p95_ms"] > 0
    assert rows[("openai", "gpt-4.1")]["tokens_saved"] > 20_000
    assert ("anthropic", "claude-opus-4-5") in rows
    assert as_json(recorded, "stats", "--since", "2099-01-01") == []
    assert "not counted below: 2 other calls to provider hosts" in kimi_proxy(recorded, "stats").stdout
    listed = kimi_proxy(recorded, "requests", "--session", "alpha").stdout
    assert "(GET /v1/models)" in listed and "(POST /v1/messages/count_tokens)" in listed


def test_conversations_with_their_agent_calls_and_cost(recorded):
    alpha = as_json(recorded, "conversations", "--session", "alpha")
    growing = next(c for c in alpha if c["title"].startswith("I prefer pytest over unittest"))
    assert (growing["agent"], growing["calls"], growing["model"]) == ("openai-python", 4, "tiny-1")
    assert growing["prompt_tokens"] > 0 and growing["unpriced"] == 4  # tiny-1 has no price: none is made up
    beta = as_json(recorded, "conversations", "--session", "beta")
    assert {c["agent"] for c in beta} == {"openai-python", "anthropic-python"}
    assert all(c["cost_usd"] > 0 and c["unpriced"] == 0 for c in beta)
    assert as_json(recorded, "conversations", "--agent", "codex") == []
    requests = as_json(recorded, "requests", "--conversation", growing["conversation"][:8])
    assert len(requests) == 4 and {r["conversation"] for r in requests} == {growing["conversation"]}
    table = kimi_proxy(recorded, "conversations").stdout
    assert "I prefer pytest over unittest" in table and "+4 unpriced" in table


def test_cost_by_model_agent_and_day(recorded):
    by_model = {r["group"]: r for r in as_json(recorded, "cost", "--by", "model")}
    assert by_model["gpt-4.1"]["cost_usd"] > 0 and by_model["claude-opus-4-5"]["cost_usd"] > 0
    assert by_model["tiny-1"]["unpriced"] == 4 and by_model["tiny-1"]["cost_usd"] == 0  # the refusal cost nothing
    assert by_model["gpt-4.1"]["saved_usd"] > 0  # the compacted tool result, at gpt-4.1's input price
    by_agent = {r["group"] for r in as_json(recorded, "cost", "--by", "agent")}
    assert by_agent == {"openai-python", "anthropic-python"}
    [today] = as_json(recorded, "cost", "--since", "1h")
    assert today["calls"] == 7 and today["cost_usd"] == pytest.approx(
        by_model["gpt-4.1"]["cost_usd"] + by_model["claude-opus-4-5"]["cost_usd"])
    out = kimi_proxy(recorded, "cost", "--by", "agent").stdout
    assert re.match(r"\$\d+\.\d+ in 7 LLM calls \(4 without a price, not included\); compaction saved \$", out)


def test_alerts_and_memories(recorded):
    kinds = {a["kind"] for a in as_json(recorded, "alerts")}
    assert "rejected" in kinds
    memories = as_json(recorded, "memories", "--kind", "constraint")
    assert [m["content"] for m in memories] == ["never touch the billing module"]
    assert "prefers pytest over unittest" in kimi_proxy(recorded, "memories").stdout


def test_restore_a_compacted_result(recorded):
    [row] = wait_rows(recorded.db, "model = 'gpt-4.1'")
    sent = json.loads(kimi_proxy(recorded, "show", row["id"]).stdout)["messages"][2]["content"]
    digest = re.search(r"kimi-proxy restore ([0-9a-f]{12})", sent).group(1)
    assert kimi_proxy(recorded, "restore", digest).stdout == recorded.listing


@pytest.mark.parametrize("args, message", [
    (("requests", "--session", "nosuch"), "no session matches 'nosuch'"),
    (("restore", "zz"), "is not a sha256"),
    (("restore", "abcdef123"), "no archived tool result matches"),
    (("stats", "--since", "yesterday-ish"), "--since 'yesterday-ish': write 30m, 2h, 7d"),
    (("show", "nope"), "no request matches 'nope'"),
])
def test_errors_are_one_line_and_a_non_zero_exit(recorded, args, message):
    run = kimi_proxy(recorded, *args, check=False)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and message in run.stderr and "Traceback" not in run.stderr


def test_no_database_yet(tmp_path):
    run = subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(tmp_path / "none.db"), "sessions"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1 and run.stderr.startswith("kimi-proxy: no database at ")


def test_doctor_says_what_is_wrong_and_how_to_fix_it(recorded, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")}
    bundle = tmp_path / "bundle.pem"  # other roots, then the CA: it counts
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" + recorded.ca.read_text())
    env["REQUESTS_CA_BUNDLE"] = str(bundle)
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text('[providers.x]\ndialect = "klingon"\n')
    run = subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(recorded.db), "doctor", "--json",
                          "--confdir", str(recorded.ca.parent), "--config", str(bad_config)],
                         capture_output=True, text=True, env=env, check=False)
    checks = {c["what"]: c for c in json.loads(run.stdout)}
    assert run.returncode == 1  # the config is broken
    assert checks["mitmproxy CA"]["status"] == "ok" and checks["REQUESTS_CA_BUNDLE"]["status"] == "ok"
    assert checks["NODE_EXTRA_CA_CERTS"]["fix"] == f"export NODE_EXTRA_CA_CERTS={recorded.ca}"
    assert checks["SSL_CERT_FILE"]["fix"].endswith("export SSL_CERT_FILE=~/.kimi-proxy/ca-bundle.pem")
    assert str(recorded.ca) in checks["SSL_CERT_FILE"]["fix"]
    assert checks["database"]["status"] == "ok" and "mode 0o600" in checks["database"]["detail"]
    assert checks["config"]["status"] == "problem" and "klingon" in checks["config"]["detail"]
    assert checks["tokenizers"]["detail"].startswith("offline: cl100k_base")
    missing = subprocess.run([sys.executable, "-m", "kimi_core.cli", "doctor", "--confdir", str(tmp_path)],
                             capture_output=True, text=True, env=env, check=False)
    assert "[FAIL] mitmproxy CA" in missing.stdout and "fix: start the proxy once" in missing.stdout



def test_the_report_shows_the_chart_in_a_browser(recorded, tmp_path):
    from PIL import Image

    out = tmp_path / "report.html"
    kimi_proxy(recorded, "report", "--session", "alpha", "-o", str(out))
    page = out.read_text()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "<script" not in page
    assert page.count('class="refusal"') == 1 and page.count('class="threshold"') == 3
    # Its conversations, with their agent and what they cost (tiny-1 has no price: said, not made up).
    assert page.count('class="conversation"') == 2 and "openai-python" in page and "unpriced" in page
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), "--headless", *CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'chromium'}",
                    f"--screenshot={shot}", "--window-size=1000,800", out.as_uri()],
                   capture_output=True, timeout=60, check=True)
    image = Image.open(shot).convert("RGB")
    pixels = list(image.get_flattened_data()) if hasattr(image, "get_flattened_data") else list(image.getdata())
    # The prompt line (#2563eb), the thresholds (#d98c00) and the refusal (#dc2626) are drawn.
    for colour, least in (((0x25, 0x63, 0xEB), 200), ((0xD9, 0x8C, 0x00), 100), ((0xDC, 0x26, 0x26), 40)):
        assert sum(1 for p in pixels if all(abs(a - b) < 24 for a, b in zip(p, colour, strict=True))) > least
