"""The layout's promises (DESIGN.md, "Layout"), checked on the source itself."""

from __future__ import annotations

import pytest
from source_imports import PACKAGE, importers, printers, private_imports

MAX_LINES = 400  # a module past this holds two ideas: split it along its seams


def test_only_the_tune_package_imports_ray():
    found = importers("ray")
    assert found and all(p.startswith("tune/") for p in found), found


def test_only_the_tracking_package_imports_wandb():
    found = importers("wandb")
    assert found and all(p.startswith("tracking/") for p in found), found


def test_only_the_cli_package_prints():
    found = printers()
    assert found and all(p.startswith("cli/") for p in found), found


def test_results_and_report_are_ray_free():
    """The trial record and the report load without Ray (`effray report` on a laptop)."""
    assert not [p for p in importers("ray") if not p.startswith("tune/")]
    assert "results.py" not in importers("ray") + importers("wandb")


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))
)
def test_no_module_is_over_400_lines(path):
    lines = len((PACKAGE / path).read_text().splitlines())
    assert lines <= MAX_LINES, f"effray/{path} has {lines} lines; split it along its seams"


def test_private_names_stay_in_their_module():
    assert private_imports() == []


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """The scanners find what they look for (so an empty answer means something)."""
    import source_imports

    (tmp_path / "x.py").write_text(
        "import ray\nimport sys\nfrom effray.data.loader import _load\n"
        "print('hi')\nsys.stdout.write('x')\n"
    )
    monkeypatch.setattr(source_imports, "PACKAGE", tmp_path)
    assert source_imports.importers("ray") == ["x.py"]
    assert source_imports.printers() == ["x.py"]
    assert source_imports.private_imports() == ["x.py: effray.data.loader._load"]
