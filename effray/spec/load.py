"""load_spec: read a YAML spec, apply overrides, validate; and to_yaml, the way back."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from effray.errors import SpecError, problem
from effray.spec.checks import check_spec
from effray.spec.messages import problems_from
from effray.spec.overrides import apply_override, check_override_path, parse_override
from effray.spec.schema import ExperimentSpec


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise SpecError([problem("", f"spec file not found: {path}")], source=str(path))
    if path.is_dir():
        raise SpecError([problem("", f"spec path is a directory, not a YAML file: {path}")])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(
            [problem("", f"malformed YAML{where}: {what}; fix the syntax")], source=str(path)
        ) from None
    except UnicodeDecodeError:
        raise SpecError([problem("", "file is not UTF-8 text")], source=str(path)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(
            [
                problem(
                    "",
                    "a spec must be a YAML mapping of sections (name, data, model, train, …)",
                    value=type(raw).__name__,
                )
            ],
            source=str(path),
        )
    return raw


def load_spec(path: str | os.PathLike, overrides: list[str] | None = None) -> ExperimentSpec:
    """Read, override and validate a spec file; raise SpecError listing every problem."""
    path = Path(path).expanduser()
    raw = _read_yaml(path)
    for text in overrides or []:
        key, value = parse_override(text)
        check_override_path(key)
        apply_override(raw, key, value)
    spec = spec_from_dict(raw, source=str(path))
    return spec


def spec_from_dict(raw: dict, source: str | None = None) -> ExperimentSpec:
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source=source) from None
    problems = check_spec(spec)
    if problems:
        raise SpecError(problems, source=source)
    return spec


def to_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
