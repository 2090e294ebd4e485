"""Where experiments live (ray-free; pyarrow only): a local directory, or a URI Ray's pyarrow filesystems understand.

root = storage_root("runs")                       # absolute local path, or the URI
path, name = fresh_experiment_dir(root, "quickstart", explicit=False)
write_text(join(path, EXPERIMENT_FILE), text)
"""

from __future__ import annotations

import os
from pathlib import Path

from effray.results import EXPERIMENT_FILE

DEFAULT_STORAGE = "runs"  # relative to the working directory


class ExperimentError(Exception):
    """The experiment cannot start or continue; the message says why and what to do."""


def is_uri(path: str) -> bool:
    return "://" in path


def storage_root(storage: str | os.PathLike | None) -> str:
    """Absolute local path (Ray needs one) or the URI unchanged."""
    storage = str(storage or DEFAULT_STORAGE)
    if is_uri(storage):
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_uri(root) else str(Path(root, *parts))


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _fs(path: str):
    import pyarrow.fs

    if is_uri(path):
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def exists(path: str) -> bool:
    import pyarrow.fs

    fs, p = _fs(path)
    return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound


def write_text(path: str, text: str) -> None:
    """Write a whole file; a local one atomically (a reader never sees half of it)."""
    if not is_uri(path):
        from effray.checkpoint import atomic_write_text

        atomic_write_text(Path(path), text)
        return
    fs, p = _fs(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(p) as f:
        f.write(text.encode("utf-8"))


def read_text(path: str) -> str:
    fs, p = _fs(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode("utf-8")


def is_experiment(path: str) -> bool:
    return exists(join(path, EXPERIMENT_FILE)) or exists(join(path, "tuner.pkl"))


def fresh_experiment_dir(root: str, name: str, explicit: bool) -> tuple[str, str]:
    """(path, name) of a new experiment directory; name-2, name-3, … when taken."""
    path = join(root, name)
    if not is_experiment(path):
        return path, name
    if explicit:
        raise ExperimentError(
            f"experiment directory {path} already exists; continue it with "
            f"`effray restore {path}`, or choose another --name"
        )
    n = 2
    while is_experiment(join(root, f"{name}-{n}")):
        n += 1
    return join(root, f"{name}-{n}"), f"{name}-{n}"
