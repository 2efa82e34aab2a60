"""Provider and client faults through a real mitmdump: the client gets what the provider sent, the row says what happened."""

import json
import threading
import time
import uuid

import httpx
import pytest
from conftest import wait_rows
from test_e2e import trust

pytestmark = pytest.mark.e2e

URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC = "https://api.anthropic.com/v1/messages"  # its first event carries the prompt's usage


def body(tag, stream=True):
    return json.dumps({"model": tag, "stream": stream, "stream_options": {"include_usage": True}, "max_tokens": 50,
                       "messages": [{"role": "user", "content": "Say hello."}]}).encode()


def fetch(client, url, content, headers, timeout=10.0):
    """Status, the raw bytes received (not decoded), and the error that ended the read, if any."""
    raw, error = bytearray(), None
    try:
        with client.stream("POST", url, content=content, timeout=timeout,
                           headers={"content-type": "application/json", "authorization": "Bearer sk-test", **headers}) as r:
            try:
                for chunk in r.iter_raw():
                    raw += chunk
            except httpx.HTTPError as e:
                error = type(e).__name__
            return r.status_code, bytes(raw), error
    except httpx.HTTPError as e:
        return None, bytes(raw), type(e).__name__


def via_proxy_and_direct(proxy, fake, content, headers, timeout=10.0, url=URL):
    with httpx.Client(proxy=proxy.url, verify=trust(proxy)) as through, httpx.Client(verify=False) as direct:
        got = fetch(through, url, content, headers, timeout)
        sent = fetch(direct, f"https://127.0.0.1:{fake.port}/{url.split('/', 3)[3]}", content, headers, timeout)
    return got, sent


@pytest.mark.parametrize("fault, error", [
    ("malformed", "unreadable stream"),
    ("truncated", None),
    ("gzip", None),
])
def test_odd_streams_reach_the_client_byte_for_byte(proxy, fake, fault, error):
    tag = f"fault-{fault}-{uuid.uuid4().hex[:6]}"
    got, sent = via_proxy_and_direct(proxy, fake, body(tag), {"x-fake-fault": fault})
    assert got == sent and got[0] == 200 and got[1]
    [row] = wait_rows(proxy.db, "model = ?", (tag,))
    assert row["status_code"] == 200 and row["streamed"] == 1
    assert row["prompt_tokens"] is not None  # the usage that arrived is kept
    if error:
        assert error in (row["error"] or "")
    if fault == "gzip":
        assert row["completion_tokens"] == 5 and row["error"] is None  # read through the compression


def test_a_connection_dropped_mid_stream(proxy, fake):
    tag = f"fault-close-{uuid.uuid4().hex[:6]}"
    got, sent = via_proxy_and_direct(proxy, fake, body(tag), {"x-fake-fault": "close"}, url=ANTHROPIC)
    assert got[0] == sent[0] == 200 and got[1] == sent[1] and got[2] is not None  # the same bytes, then an error
    [row] = wait_rows(proxy.db, "model = ?", (tag,))
    assert row["error"] and row["prompt_tokens"] is not None  # the usage of the first event
    log = proxy.log()
    assert "Traceback" not in log


@pytest.mark.parametrize("status", [429, 500, 503, 529])
@pytest.mark.parametrize("empty", [False, True])
def test_error_statuses_pass_as_they_are(proxy, fake, status, empty):
    tag = f"fault-{status}-{uuid.uuid4().hex[:6]}"
    headers = {"x-fake-status": str(status), **({"x-fake-fault": "empty"} if empty else {})}
    got, sent = via_proxy_and_direct(proxy, fake, body(tag, stream=False), headers)
    assert got == sent and got[0] == status and (got[1] == b"") == empty
    [row] = wait_rows(proxy.db, "model = ?", (tag,))
    assert row["status_code"] == status
    assert empty or "fake failure" in row["error"]


def test_a_stream_that_never_finishes_and_a_client_that_gives_up(proxy, fake):
    tag = f"fault-hang-{uuid.uuid4().hex[:6]}"
    with httpx.Client(proxy=proxy.url, verify=trust(proxy)) as client:
        status, raw, error = fetch(client, ANTHROPIC, body(tag), {"x-fake-fault": "hang"}, timeout=1.5)
    assert status == 200 and error == "ReadTimeout" and b"message_start" in raw
    [row] = wait_rows(proxy.db, "model = ?", (tag,), timeout=20)
    assert row["error"] and row["streamed"] == 1 and row["prompt_tokens"] is not None


def test_a_slow_client_body_does_not_hold_up_other_flows(proxy, fake):
    tag = f"slow-{uuid.uuid4().hex[:6]}"
    content = body(tag, stream=False)

    def trickle():
        for i in range(0, len(content), 10):
            yield content[i:i + 10]
            time.sleep(0.5)

    slow = threading.Thread(target=lambda: httpx.Client(proxy=proxy.url, verify=trust(proxy)).post(
        URL, content=trickle(), headers={"content-type": "application/json"}, timeout=60))
    slow.start()
    time.sleep(0.5)
    with httpx.Client(proxy=proxy.url, verify=trust(proxy)) as client:
        for _ in range(5):
            client.post(URL, content=body(f"quick-{tag}", stream=False), headers={"content-type": "application/json"})
    assert slow.is_alive()  # the others were answered while the slow body was still coming in
    slow.join(60)
    assert len(wait_rows(proxy.db, "model IN (?, ?)", (tag, f"quick-{tag}"), count=6)) == 6
