"""Helpers to exercise Kimi Proxy for real: a fake provider and a proxy runner."""
