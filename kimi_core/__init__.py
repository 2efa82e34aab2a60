"""Kimi Proxy: see what goes to your LLM providers."""
