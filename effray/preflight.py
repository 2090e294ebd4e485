"""Before `python -m effray` imports anything else: are effray's dependencies here?

A Ray Job runs `python -m effray run SPEC` in the cluster's Python, with effray's code
shipped in the job's runtime env but not its dependencies. Without this check a cluster
whose Python lacks them ends the job in a raw `ModuleNotFoundError: No module named
'typer'`; with it the job fails at once with one line naming what is missing and how to
install it. Standard library only: it runs where nothing else can be imported.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys

# import name -> pip requirement: pyproject.toml's [project] dependencies (a test keeps
# the two lists the same)
REQUIREMENTS = {
    "torch": "torch>=2.4",
    "torchvision": "torchvision>=0.19",
    "ray": "ray[tune,default]>=2.40",
    "optuna": "optuna>=3.0",
    "wandb": "wandb>=0.18",
    "pydantic": "pydantic>=2.6",
    "typer": "typer>=0.12",
    "rich": "rich>=13",
    "yaml": "pyyaml>=6",
    "filelock": "filelock>=3.12",
    "numpy": "numpy>=1.24",
    "scipy": "scipy>=1.10",
    "PIL": "pillow>=10",
    "matplotlib": "matplotlib>=3.7",
}
JOB_ENV = "EFFRAY_JOB"  # set to 1 in the runtime env of a job sent by `effray submit`


def missing_modules() -> list[str]:
    """Import names of effray's dependencies this Python cannot find, in REQUIREMENTS order."""
    missing = []
    for name in REQUIREMENTS:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        # a bare folder of that name (e.g. Ray's /tmp/ray seen from the working
        # directory) is a namespace package, not the library: every dependency has code
        if spec is None or spec.origin in (None, "namespace"):
            missing.append(name)
    return missing


def job_requirements() -> list[str]:
    """What `effray submit --pip` installs in a job's runtime env: every dependency but
    Ray, which the cluster has and must keep at its own version."""
    return [req for name, req in REQUIREMENTS.items() if name != "ray"]


def missing_message(missing: list[str], *, in_job: bool) -> str:
    """One line: which dependencies this Python lacks and how to install them."""
    python = f"{sys.executable} (Python {platform.python_version()})"
    pip = "pip install " + " ".join(f"'{REQUIREMENTS[m]}'" for m in missing)
    head = f"effray cannot start: {python} lacks {', '.join(missing)}"
    if in_job:
        return (
            f"{head}. Install effray's dependencies on every node of the cluster: add "
            "`pip install -e ~/effray` (or `" + pip + "`) to cluster.yaml's setup_commands "
            "and run `ray up cluster.yaml` again, or resubmit with `effray submit --pip` to "
            "install them in this job's runtime environment."
        )
    return f"{head}. Install them: `pip install -e .` in effray's checkout, or `{pip}`."


def check() -> None:
    """Exit (status 1, one line on stderr) when a dependency is missing."""
    missing = missing_modules()
    if missing:
        raise SystemExit(missing_message(missing, in_job=os.environ.get(JOB_ENV) == "1"))
