"""No API key, token or password reaches W&B: secret-looking names and key-shaped values
are replaced by `[redacted]`."""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_NAME = re.compile(r"key|token|secret|passw|credential", re.IGNORECASE)
SECRET_VALUE = re.compile(r"\b[0-9a-f]{40}\b|\b(?:local|v1)-[0-9A-Za-z_-]{30,}")  # W&B key shapes
REDACTED = "[redacted]"


def scrub(config: dict[str, Any]) -> dict[str, Any]:
    """Drop values under secret-looking names; redact values that look like API keys."""
    return {
        key: REDACTED if SECRET_NAME.search(key.rsplit(".", 1)[-1]) else scrub_value(value)
        for key, value in config.items()
    }


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _known_secrets():
            value = value.replace(secret, REDACTED)
        return SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    if isinstance(value, dict):
        return scrub(value)
    return value


def _known_secrets() -> list[str]:
    key = os.environ.get("WANDB_API_KEY", "").strip()
    return [key] if len(key) >= 8 else []


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub_value(text if len(text) <= 200 else text[:200] + "…")
