"""Kimi Proxy's exceptions: one root, a few named children."""


class KimiError(Exception):
    """Root of every error Kimi Proxy raises on purpose."""


class ConfigError(KimiError):
    """The configuration file or an option is invalid; the message names the culprit."""


class BodyError(KimiError):
    """A request or response body could not be read as the dialect it claims to be."""


class StoreError(KimiError):
    """The SQLite store could not be opened or migrated."""
