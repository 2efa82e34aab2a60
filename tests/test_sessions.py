import pytest

from kimi_core.sessions import SessionTracker


def test_auto_new_session_on_provider_change_and_idle_gap():
    t = SessionTracker("auto", idle_seconds=60)
    a, new_a = t.assign("openai", 0)
    b, new_b = t.assign("openai", 30)
    c, new_c = t.assign("anthropic", 40)
    d, new_d = t.assign("anthropic", 200)
    assert (new_a, new_b, new_c, new_d) == (True, False, True, True)
    assert a is b and c is not a and d is not c
    assert a.name.endswith(" openai") and c.provider == "anthropic"


def test_pinned_requests_go_to_their_named_session_and_leave_the_active_one():
    t = SessionTracker("auto")
    active, _ = t.assign("openai", 0)
    pinned, new = t.assign("anthropic", 1, pinned="refactor")
    again, new_again = t.assign("openai", 2, pinned="refactor")
    after, new_after = t.assign("openai", 3)
    assert (pinned.name, pinned.mode, new, new_again) == ("refactor", "named", True, False)
    assert again is pinned and after is active and not new_after


def test_manual_mode_changes_only_by_command_or_header():
    t = SessionTracker("manual", idle_seconds=1)
    a, _ = t.assign("openai", 0)
    b, _ = t.assign("anthropic", 100)
    assert a is b
    c = t.new(101, name="after lunch")
    d, is_new = t.assign("gemini", 102)
    assert d is c and is_new and d.provider == "gemini" and d.name == "after lunch"


def test_a_session_started_by_command_adopts_the_next_provider_in_auto_mode():
    t = SessionTracker("auto")
    s = t.new(0)
    got, is_new = t.assign("mistral", 1)
    assert got is s and is_new and s.provider == "mistral"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="session mode must be one of auto, manual"):
        SessionTracker("sometimes")


def test_proxy_credentials_kimi_name_a_session_and_others_do_not():
    import base64

    from mitmproxy import http

    from kimi_core.proxy.sessions import proxy_session

    def headers(value):
        return http.Headers(**{"proxy-authorization": value})

    basic = "Basic " + base64.b64encode(b"kimi:my%20session").decode()
    assert proxy_session(headers(basic)) == "my session"
    assert proxy_session(headers("Basic " + base64.b64encode(b"alice:secret").decode())) is None
    assert proxy_session(headers("Basic !!notbase64")) is None
    assert proxy_session(headers("Bearer xyz")) is None
    assert proxy_session(http.Headers()) is None
