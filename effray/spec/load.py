"""load_spec: read a YAML spec, apply overrides, validate; and to_yaml, the way back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from effray.errors import SpecError, problem
from effray.spec.checks import check_spec
from effray.spec.messages import problems_from
from effray.spec.overrides import apply_override, check_override_path, parse_override
from effray.spec.schema import ExperimentSpec

MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *base` merges a mapping; not a repeated key


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise SpecError([problem("", f"spec file not found: {path}")], source=str(path))
    if path.is_dir():
        raise SpecError([problem("", f"spec path is a directory, not a YAML file: {path}")])
    try:
        raw = _parse_yaml(path.read_text(encoding="utf-8"), source=str(path))
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


def _parse_yaml(text: str, source: str) -> Any:
    """yaml.safe_load, except that a key given twice in one mapping is an error: PyYAML
    keeps the last one silently, so `lr: 0.1` ... `lr: 0.2` would train at 0.2 unnoticed."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        twice = duplicate_keys(node)
        if twice:
            raise SpecError(twice, source=source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def duplicate_keys(node: yaml.Node, path: tuple[str, ...] = (), seen: set | None = None):
    """A Problem for each key given twice in one mapping, named by its dotted path
    (`train.lr`, `techniques.0.size`) with the lines of both; aliases are walked once."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return []
    seen.add(id(node))
    out = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, yaml.Mark] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if key.tag != MERGE_TAG and name in first:
                out.append(
                    problem(
                        ".".join((*path, name)),
                        f"key {name!r} is given twice, {_where(first[name], key.start_mark)}; "
                        "YAML would silently keep the last: remove one",
                    )
                )
            first.setdefault(name, key.start_mark)
            out += duplicate_keys(value, (*path, name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += duplicate_keys(item, (*path, str(i)), seen)
    return out


def _where(a: yaml.Mark, b: yaml.Mark) -> str:
    if a.line == b.line:
        return f"on line {a.line + 1} (columns {a.column + 1} and {b.column + 1})"
    return f"at lines {a.line + 1} and {b.line + 1}"


def load_spec(
    path: str | os.PathLike, overrides: list[str] | None = None, *, files: bool = True
) -> ExperimentSpec:
    """Read, override and validate a spec file; raise SpecError listing every problem.
    `files=False` skips what depends on this machine's disk (the dataset's files)."""
    path = Path(path).expanduser()
    raw = _read_yaml(path)
    for text in overrides or []:
        key, value = parse_override(text)
        check_override_path(key)
        apply_override(raw, key, value)
    spec = spec_from_dict(raw, source=str(path), files=files)
    return spec


def spec_from_dict(raw: dict, source: str | None = None, *, files: bool = True) -> ExperimentSpec:
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source=source) from None
    problems = check_spec(spec, check_data=files)
    if problems:
        raise SpecError(problems, source=source)
    return spec


def to_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
