"""submit, jobs, logs, stop (Ray Jobs on a cluster) and sync (offline W&B runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from effray.cli.common import (
    JobsAddressOpt,
    SetOpt,
    SpecArg,
    StorageOpt,
    _spec_error,
    app,
    console,
    err_console,
    fail,
)
from effray.errors import SpecError


def _load_for_cluster(spec: Path, overrides: list[str] | None):
    """Validate a spec to submit; a dataset missing here may be on the cluster (warn only)."""
    from effray.spec import expand as expand_spec
    from effray.spec import load_spec

    try:
        loaded = load_spec(spec, overrides or [])
        expand_spec(loaded)
        return loaded
    except SpecError as exc:
        if not exc.problems or any(not p.path.startswith("data.") for p in exc.problems):
            _spec_error(exc)
        for p in exc.problems:
            err_console.print(
                f"[yellow]warning:[/] {p} (on this machine; the cluster needs it)",
                highlight=False,
                soft_wrap=True,
            )
        return None


def _jobs_call(fn):
    from effray.tune import ExperimentError

    try:
        return fn()
    except ExperimentError as exc:
        fail(str(exc))


@app.command()
def submit(
    spec: SpecArg,
    set_: SetOpt = None,
    address: JobsAddressOpt = None,
    storage: StorageOpt = None,
    name: Annotated[str | None, typer.Option(help="Experiment name (default the spec's).")] = None,
    working_dir: Annotated[
        Path | None,
        typer.Option(help="Directory uploaded with the job (default: the project root)."),
    ] = None,
) -> None:
    """Send `effray run SPEC` to a Ray cluster as a Ray Job; prints the job id."""
    from effray.tune import jobs_address, submit_job

    if not spec.is_file():
        fail(f"spec file not found: {spec}")
    _load_for_cluster(spec, set_)
    job_id = _jobs_call(
        lambda: submit_job(
            spec,
            address=address,
            overrides=set_ or [],
            storage=storage,
            name=name,
            working_dir=working_dir,
        )
    )
    sys.stdout.write(job_id + "\n")
    err_console.print(
        f"submitted to {jobs_address(address)}; follow with `effray logs {job_id} --follow`",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def jobs(
    address: JobsAddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False,
) -> None:
    """List the Ray Jobs on a cluster, newest first."""
    import datetime

    from effray.tune import list_jobs

    rows = _jobs_call(lambda: list_jobs(address))
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"{len(rows)} jobs")
    for col in ("job", "status", "started", "duration", "entrypoint"):
        table.add_column(col, overflow="fold")
    for r in rows:
        start = datetime.datetime.fromtimestamp(r["start_time"]) if r["start_time"] else None
        end = r["end_time"] or (datetime.datetime.now().timestamp() if start else None)
        table.add_row(
            r["job_id"],
            r["status"],
            start.strftime("%Y-%m-%d %H:%M:%S") if start else "-",
            f"{end - r['start_time']:.0f}s" if start else "-",
            r["entrypoint"],
        )
    console.print(table)


@app.command()
def logs(
    job_id: Annotated[str, typer.Argument(help="Job id printed by `effray submit`.")],
    address: JobsAddressOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream until the job ends.")
    ] = False,
) -> None:
    """Print a Ray Job's output (the `effray run` it ran)."""
    from effray.tune import follow_job_logs, job_logs

    if follow:
        _jobs_call(lambda: follow_job_logs(job_id, sys.stdout.write, address))
        return
    sys.stdout.write(_jobs_call(lambda: job_logs(job_id, address)))


@app.command()
def stop(
    job_id: Annotated[str, typer.Argument(help="Job id printed by `effray submit`.")],
    address: JobsAddressOpt = None,
) -> None:
    """Stop a running Ray Job; its trials keep their last checkpoints."""
    from effray.tune import stop_job

    if _jobs_call(lambda: stop_job(job_id, address)):
        console.print(f"stopping {job_id}", highlight=False)
    else:
        console.print(f"{job_id} had already ended", highlight=False)


@app.command()
def sync(
    experiment_dir: Annotated[Path, typer.Argument(help="Experiment or trial directory.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, push nothing.")] = False,
) -> None:
    """Push the offline W&B runs under a directory to W&B (`wandb sync`; needs a key)."""
    from effray.tracking import offline_runs, sync_runs

    if not experiment_dir.exists():
        fail(f"directory not found: {experiment_dir}")
    runs = offline_runs(experiment_dir)
    if not runs:
        fail(f"no offline W&B runs (offline-run-*) under {experiment_dir}")
    ids = {f.stem.removeprefix("run-") for p in runs for f in p.glob("run-*.wandb")}
    console.print(
        f"{'would push' if dry_run else 'pushing'} {len(runs)} offline run "
        f"director{'ies' if len(runs) != 1 else 'y'} ({len(ids)} W&B run{'s' if len(ids) != 1 else ''}) from {experiment_dir}",
        highlight=False,
    )
    code = sync_runs(runs, dry_run=dry_run)
    if code:
        fail(f"wandb sync exited with code {code}; the runs stay on disk, run this again", code)
