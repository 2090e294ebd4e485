"""`--set PATH=VALUE` overrides: parsed as YAML, applied to a raw spec dict."""

from __future__ import annotations

from typing import Any

import yaml

from effray.errors import SpecError, did_you_mean, one_of, problem
from effray.spec.messages import user_fields
from effray.spec.schema import ExperimentSpec


def parse_override(text: str) -> tuple[str, Any]:
    """'train.lr=0.1' -> ('train.lr', 0.1); the value is read as YAML."""
    if "=" not in text:
        raise SpecError([problem("--set", "expected PATH=VALUE, e.g. train.lr=0.1", value=text)])
    key, _, value = text.partition("=")
    key = key.strip()
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def apply_override(raw: dict, key: str, value: Any) -> None:
    """Set a dotted path in a raw spec dict; `techniques.<kind>.<field>` edits that technique."""
    parts = key.split(".")
    if parts[0] == "techniques" and len(parts) == 3 and not parts[1].isdigit():
        for item in raw.get("techniques") or []:
            if isinstance(item, dict) and item.get("kind") == parts[1]:
                item[parts[2]] = value
                return
        raise SpecError(
            [
                problem(
                    key,
                    f"no technique of kind {parts[1]!r} in this spec",
                    allowed=one_of(
                        t.get("kind", "?")
                        for t in raw.get("techniques") or []
                        if isinstance(t, dict)
                    ),
                )
            ]
        )
    node = raw
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise SpecError([problem(key, f"cannot set inside {part!r}: not a mapping")])
        node = node.setdefault(part, {})
        if node is None:
            node = {}
    last = parts[-1]
    if isinstance(node, list) and last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def check_override_path(key: str) -> None:
    parts = key.split(".")
    top = parts[0]
    if top not in user_fields(ExperimentSpec):
        raise SpecError(
            [
                problem(
                    key,
                    f"{top!r} is not a spec section",
                    allowed=one_of(user_fields(ExperimentSpec)),
                    suggestion=did_you_mean(top, user_fields(ExperimentSpec)),
                )
            ]
        )
