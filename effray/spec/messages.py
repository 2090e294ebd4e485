"""Validation messages: pydantic errors rendered as `field.path: message (value …; …)`."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from effray.errors import Problem, did_you_mean, one_of, problem

NOT_FINITE = "must be a finite number (not inf or nan; a literal such as 1e999 overflows to inf)"


def hint_text(s: str | None) -> str:
    return f"; did you mean {s!r}?" if s else ""


def without_path(p: Problem) -> str:
    return str(Problem("", p.message, p.value, p.allowed, p.suggestion, p.has_value))


def _allowed_from(err: dict) -> str | None:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return str(ctx["expected"])
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            bound = ctx[key]
            if isinstance(bound, float) and bound.is_integer():
                bound = int(bound)
            return f"{sym} {bound}"
    if "pattern" in ctx:
        return f"matching {ctx['pattern']}"
    if "min_length" in ctx:
        return f"length >= {ctx['min_length']}"
    return None


def error_message(err: dict, model_cls: type[BaseModel] | None = None) -> str:
    """One error as 'message (value …; allowed …; did you mean …)' without its path."""
    kind = err["type"]
    if kind == "extra_forbidden":
        field = str(err["loc"][-1])
        valid = list(_fields_at(model_cls, err["loc"][:-1])) if model_cls else []
        parts = ["unknown key", f"allowed {one_of(valid)}" if valid else ""]
        hint = did_you_mean(field, valid)
        if hint:
            parts.append(f"did you mean {hint!r}?")
        return f"{parts[0]} {field!r} ({'; '.join(p for p in parts[1:] if p)})"
    msg = err["msg"]
    if kind == "finite_number":
        msg = NOT_FINITE
    if kind.startswith(("value_error", "assertion_error")):
        msg = msg.split(", ", 1)[-1] if msg.startswith(("Value error", "Assertion")) else msg
    extras = []
    if "input" in err and kind not in ("missing",) and not isinstance(err["input"], dict):
        extras.append(f"value {err['input']!r}")
    allowed = _allowed_from(err)
    if allowed:
        extras.append(f"allowed {allowed}")
    return msg + (f" ({'; '.join(extras)})" if extras else "")


def user_fields(cls: type[BaseModel]) -> list[str]:
    """Field names a user may write (`trial` is filled in by expansion)."""
    return [f for f in cls.model_fields if f != "trial"]


def _fields_at(model_cls: type[BaseModel] | None, loc) -> list[str]:
    """Field names of the (nested) model at `loc`, for did-you-mean on unknown keys."""
    cls = model_cls
    for part in loc:
        if cls is None or isinstance(part, int):
            continue
        info = cls.model_fields.get(part)
        if info is None:
            return []
        cls = model_in(info.annotation)
    return user_fields(cls) if cls else []


def model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = model_in(arg)
        if found:
            return found
    return None


def inline_errors(exc: ValidationError, model_cls) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {error_message(e, model_cls)}" for e in exc.errors()
    )


def problems_from(exc: ValidationError) -> list[Problem]:
    from effray.spec.schema import ExperimentSpec  # schema imports this module

    out: list[Problem] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        path = ".".join(loc)
        if err["type"] in ("techniques", "techniques_conflict"):
            key = "errors" if err["type"] == "techniques" else "e"
            for line in str(err["ctx"][key]).split("\n"):
                if err["type"] == "techniques":
                    sub, _, msg = line.partition(": ")
                    out.append(Problem(f"techniques.{sub}", msg))
                else:
                    out.append(Problem("techniques", line))
            continue
        if err["type"] == "model_args":
            for piece in _split_inline(str(err["ctx"]["detail"])):
                sub, _, msg = piece.partition(": ")
                out.append(Problem(f"model.{sub}", msg))
            continue
        if err["type"] == "unknown_name":  # e.g. data.name; ctx carries the suggestion
            ctx = err["ctx"]
            out.append(
                problem(
                    path,
                    f"unknown {ctx['what']}",
                    value=ctx["value"],
                    allowed=ctx["allowed"],
                    suggestion=ctx["suggestion"] or None,
                )
            )
            continue
        if err["type"] == "unknown_model":
            ctx = err["ctx"]
            out.append(
                problem(
                    "model.name",
                    "unknown model",
                    value=ctx["value"],
                    allowed=ctx["allowed"],
                    suggestion=did_you_mean(ctx["value"], _model_names()),
                )
            )
            continue
        out.append(Problem(path, error_message(err, ExperimentSpec)))
    return out


def _split_inline(detail: str) -> list[str]:
    # model-arg errors are joined with "; " between fields; a field's own message may
    # contain "; " inside parentheses, so split only at top level.
    parts, depth, cur = [], 0, ""
    for ch in detail:
        depth += ch == "("
        depth -= ch == ")"
        if ch == ";" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _model_names() -> list[str]:
    from effray.models import MODELS

    return list(MODELS)
