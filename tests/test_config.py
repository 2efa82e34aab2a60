import pytest

from kimi_core.config import load_config
from kimi_core.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_adds_and_overrides_providers(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOST", "llm.lab.example")
    config = load_config(write(tmp_path, """
[providers.lab]
hosts = ["${LAB_HOST}", "*.lab.internal"]
dialect = "anthropic"

[providers.openai]
hosts = ["openai.proxy.example"]

[models."kimi-k2-0905"]
provider = "moonshot"
context_window = 262144
"""))
    registry = config.registry()
    assert registry.match("llm.lab.example", 443).name == "lab"
    assert registry.match("gpu1.lab.internal", 443).dialect == "anthropic"
    assert registry.match("openai.proxy.example", 443).name == "openai"
    assert registry.match("api.openai.com", 443) is None  # replaced, not extended
    assert registry.match("api.anthropic.com", 443).name == "anthropic"
    assert config.models["kimi-k2-0905"].context_window == 262144


def test_no_file_gives_builtins():
    assert load_config(None).registry().match("api.openai.com", 443).name == "openai"


@pytest.mark.parametrize("text,match", [
    ('[providers.x]\nhosts = "api.x.com"', r"config.toml: providers.x.hosts: Input should be a valid list"),
    ('[providers.x]\ndialect = "soap"', r"providers.x.dialect: .*unknown dialect 'soap'"),
    ('[providers.x]\nhosts = ["https://api.x.com/v1"]', r"providers.x.hosts: .*is not a host name"),
    ('[models."m"]\ncontext_window = -5', r"models.m.context_window: Input should be greater than 0"),
    ('[models."m"]\nwindow = 5', r"models.m.window: Extra inputs are not permitted"),
    ('[providers.x\n', r"config.toml: not valid TOML"),
    ('[providers.x]\nhosts = ["${KIMI_TEST_UNSET_VAR}"]', r"providers.x.hosts\[0\]: environment variable KIMI_TEST_UNSET_VAR is not set"),
])
def test_bad_file_names_file_key_and_problem(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: cannot read"):
        load_config(tmp_path / "nope.toml")
