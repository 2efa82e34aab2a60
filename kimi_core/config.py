"""The user's configuration file: extra providers and models.

```toml
[providers.mylab]
hosts = ["llm.mylab.example", "*.mylab.internal"]
dialect = "openai-chat"

[models."kimi-k2-0905"]
provider = "moonshot"
context_window = 262144
input_per_mtok = 0.60        # US dollars per million tokens (optional; prices
output_per_mtok = 2.50       # otherwise come from genai-prices)
cache_read_per_mtok = 0.15
```

String values may use ``${ENV_VAR}``. The file is validated with pydantic; a bad
file raises ``ConfigError`` naming the file, the key and the problem.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pydantic

from kimi_core.cost import OwnPrice
from kimi_core.errors import ConfigError
from kimi_core.providers import DIALECTS, Provider, Registry

DEFAULT_CONFIG = Path("~/.kimi-proxy/config.toml")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ProviderConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    hosts: list[str] = []
    dialect: str | None = None

    @pydantic.field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for h in hosts:
            if not h or "/" in h or " " in h:
                raise ValueError(f"{h!r} is not a host name (write 'api.example.com' or '*.example.com')")
        return hosts

    @pydantic.field_validator("dialect")
    @classmethod
    def _dialect(cls, dialect: str | None) -> str | None:
        if dialect is not None and dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; use one of {', '.join(DIALECTS)}")
        return dialect


class ModelConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    provider: str | None = None
    context_window: pydantic.PositiveInt | None = None
    # US dollars per million tokens, for a model the price database lacks (or to override it).
    input_per_mtok: pydantic.NonNegativeFloat | None = None
    output_per_mtok: pydantic.NonNegativeFloat | None = None
    cache_read_per_mtok: pydantic.NonNegativeFloat | None = None
    cache_write_per_mtok: pydantic.NonNegativeFloat | None = None

    @pydantic.model_validator(mode="after")
    def _price(self) -> ModelConfig:
        others = (self.output_per_mtok, self.cache_read_per_mtok, self.cache_write_per_mtok)
        if self.input_per_mtok is None and any(v is not None for v in others):
            raise ValueError("a price needs input_per_mtok (and output_per_mtok)")
        return self


class Config(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}

    def prices(self) -> dict[str, OwnPrice]:
        """The prices this file sets, by model."""
        return {name: OwnPrice(m.input_per_mtok, m.output_per_mtok or 0.0, m.cache_read_per_mtok,
                               m.cache_write_per_mtok)
                for name, m in self.models.items() if m.input_per_mtok is not None}

    def registry(self) -> Registry:
        """The built-in providers with this file's additions and overrides."""
        registry = Registry()
        for name, pc in self.providers.items():
            base = registry.get(name)
            hosts = tuple(pc.hosts) or (base.hosts if base else ())
            dialect = pc.dialect or (base.dialect if base else "openai-chat")
            registry.add(Provider(name, hosts, dialect))
        return registry


def expand_env(value: Any, where: str = "") -> Any:
    """Replace ``${VAR}`` in every string of a TOML document."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")
            return os.environ[m.group(1)]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_config(path: str | Path | None) -> Config:
    """Read the file at ``path``; no path (or the default, absent) gives the built-ins."""
    if path is None or str(path) == "":
        path = DEFAULT_CONFIG.expanduser()
        if not path.exists():
            return Config()
    path = Path(path).expanduser()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    try:
        return Config.model_validate(expand_env(raw))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{path}: {problems}") from e
