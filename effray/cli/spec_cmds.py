"""Commands about specs and registries: validate, schema, models, expand, techniques, datasets.

$ effray validate experiments/quickstart.yaml
$ effray models --json
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from effray.cli.common import SetOpt, SpecArg, console, load_trials

WIDE = 110  # columns a terminal needs for the models' description column (--json has it)


def validate(spec: SpecArg, set_: SetOpt = None) -> None:
    """Check a spec completely; print OK or every problem (exit code 2)."""
    loaded, trials = load_trials(spec, set_)
    n = len(trials)
    if loaded.search is not None and loaded.search.adaptive:
        from effray.spec.plan import search_plan

        plan = search_plan(loaded, n)
        console.print(
            f"[green]OK[/] {spec}: {plan['algorithm'] if not loaded.search.stages else 'stages'} "
            f"search, up to {plan['budget']} trials"
        )
        return
    console.print(f"[green]OK[/] {spec}: {n} trial{'s' if n != 1 else ''}")


def schema() -> None:
    """Print the spec's JSON schema (for editor completion)."""
    from effray.spec import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


def models(as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False) -> None:
    """List every registered model with its input shape and parameter count."""
    from effray.models import list_models

    rows = list_models()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="effray models")
    wide = console.width >= WIDE  # on a narrow terminal or a pipe: no description column
    cols = ("name", "input (C,H,W)", "classes", "params", "published", "description")
    for col in cols if wide else cols[:-1]:
        table.add_column(
            col,
            justify="right" if col in ("params", "published", "classes") else "left",
            no_wrap=col != "description",  # names and numbers are never cut; prose wraps
        )
    for r in rows:
        ref = r.get("reference_params")
        table.add_row(
            r["name"],
            "x".join(str(v) for v in r["input_shape"]),
            str(r["num_classes"]),
            f"{r['params']:,}",
            f"{ref:,}" if ref else "-",
            *([r.get("description", "")] if wide else []),
        )
    console.print(table)


def expand(spec: SpecArg, set_: SetOpt = None) -> None:
    """Print the trials a spec expands to (ablation x search x seeds)."""
    loaded, trials = load_trials(spec, set_)
    if loaded.search is not None and (loaded.search.adaptive or loaded.search.pbt):
        _plan(loaded, len(trials))
        if not trials:
            return
    table = Table(title=f"{loaded.name}: {len(trials)} trials")
    table.add_column("#", justify="right")
    table.add_column("trial", no_wrap=True)
    table.add_column("techniques", overflow="fold")
    table.add_column("choices", overflow="fold")
    for t in trials:
        table.add_row(
            str(t.trial.index),
            t.trial.name,
            ", ".join(x.name for x in t.techniques) or "-",
            ", ".join(f"{k}={v}" for k, v in t.trial.params.items()) or "-",
        )
    console.print(table)


def _plan(loaded, listed: int) -> None:
    """An adaptive search's space, scheduler and budget (its trials are chosen as it runs)."""
    from effray.spec.plan import search_plan

    plan = search_plan(loaded, listed)
    console.print(
        f"{loaded.name}: algorithm {plan['algorithm']}, scheduler {plan['scheduler']}, "
        f"metric {plan['metric']}; budget {plan['budget']} trials",
        highlight=False,
    )
    if plan.get("note"):
        console.print(plan["note"], highlight=False)
    for title, key in (("space", "space"), ("pbt mutations", "mutations")):
        if plan.get(key):
            table = Table(title=title)
            table.add_column("path", no_wrap=True)
            table.add_column("distribution", overflow="fold")
            for path, dist in plan[key].items():
                table.add_row(path, dist)
            console.print(table)
    if plan.get("stages"):
        table = Table(title="stages (in order)")
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("stage", no_wrap=True)
        table.add_column("alternatives", overflow="fold")
        for i, s in enumerate(plan["stages"], 1):
            table.add_row(str(i), s["stage"], ", ".join(s["alternatives"]))
        console.print(table)


def techniques(as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False) -> None:
    """List every technique: its fields with defaults, the hooks it uses, what it owns."""
    from effray.techniques import RUN_ORDER, TECHNIQUES

    rows = []
    for kind, cls in sorted(TECHNIQUES.items(), key=lambda kv: RUN_ORDER.get(kv[0], 100)):
        fields = {
            name: info.default
            for name, info in cls.model_fields.items()
            if name not in ("kind", "ablate")
        }
        rows.append(
            {
                "kind": kind,
                "order": RUN_ORDER.get(kind),
                "fields": fields,
                "hooks": cls.hooks(),
                "owns": list(cls.owns),
                "requires": list(cls.requires),
                "paper": cls.paper,
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table(title="effray techniques (in run order)")
    table.add_column("kind", no_wrap=True)  # the name a spec types: never cut
    for col in ("fields (defaults)", "hooks", "owns"):
        table.add_column(col, overflow="fold", min_width=10)
    for r in rows:
        table.add_row(
            r["kind"],
            ", ".join(f"{k}={v!r}" for k, v in r["fields"].items()) or "-",
            ", ".join(r["hooks"]),
            ", ".join(r["owns"] + [f"needs {x}" for x in r["requires"]]) or "-",
        )
    console.print(table)


def datasets(
    as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False,
    root: Annotated[
        str | None, typer.Option(help="Look for every dataset under this data.root instead.")
    ] = None,
) -> None:
    """List every dataset: shape, classes, whether it is on this machine, how to get it."""
    from effray.data import list_datasets

    rows = list_datasets(root)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="effray datasets")
    table.add_column("name", no_wrap=True)
    table.add_column("shape (C,H,W)", no_wrap=True)
    table.add_column("classes", justify="right", no_wrap=True)
    table.add_column("on this machine", overflow="fold")
    for r in rows:
        if r["shape"]:
            shape = "x".join(map(str, r["shape"]))
        elif r["image_size"]:
            shape = f"3x{r['image_size']}x{r['image_size']} (resized)"
        else:
            shape = "data.size"
        classes = str(r["classes"]) if r["classes"] else ("spec" if r["found"] else "files")
        found = r["found"] or "[yellow]not found[/]"
        table.add_row(r["name"], shape, classes, found)
    console.print(table)
    for r in rows:
        if not r["found"]:
            console.print(
                f"{r['name']} (looked in {r['root']}): {r['how']}", highlight=False, soft_wrap=True
            )
