"""Reading and writing files and trees at a location (local or in an object store)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from effray.results import EXPERIMENT_FILE
from effray.storage.connect import filesystem
from effray.storage.locations import ExperimentError, basename, is_uri, join, redact


def _type(path: str):
    import pyarrow.fs

    fs, p = filesystem(path)
    return fs.get_file_info(p).type, pyarrow.fs.FileType


def exists(path: str) -> bool:
    kind, types = _type(path)
    return kind != types.NotFound


def is_dir(path: str) -> bool:
    kind, types = _type(path)
    return kind == types.Directory


def is_file(path: str) -> bool:
    kind, types = _type(path)
    return kind == types.File


def write_text(path: str, text: str) -> None:
    """Write a whole file; a local one atomically (a reader never sees half of it)."""
    if not is_uri(path):
        write_local(Path(path), text.encode("utf-8"))
        return
    fs, p = filesystem(path)
    with fs.open_output_stream(p) as f:  # an object appears whole when the stream closes
        f.write(text.encode("utf-8"))


def read_text(path: str) -> str:
    fs, p = filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode("utf-8")


def list_dir(path: str) -> list[tuple[str, bool]]:
    """(name, is a directory) of the entries of a directory; [] when there is none."""
    import pyarrow.fs

    fs, p = filesystem(path)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(p, allow_not_found=True))
    return sorted((i.base_name, i.type == pyarrow.fs.FileType.Directory) for i in infos)


def find_dirs_with(path: str, name: str, max_depth: int) -> list[str]:
    """Directories up to `max_depth` levels below `path` (itself excluded) holding a file
    `name`, not looking inside them or inside hidden directories; sorted."""
    import pyarrow.fs

    fs, root = filesystem(path)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
    found: list[tuple[str, ...]] = []
    for info in infos:
        rel = tuple(info.path[len(root) :].strip("/").split("/"))
        if rel[-1] != name or not 1 < len(rel) <= max_depth + 1:
            continue
        if info.type == pyarrow.fs.FileType.File and not any(p.startswith(".") for p in rel):
            found.append(rel[:-1])
    found.sort(key=lambda rel: (len(rel), rel))
    kept: list[tuple[str, ...]] = []
    for rel in found:  # checkpoints below a trial hold a copy of its files: not trials
        if not any(rel[: len(k)] == k for k in kept):
            kept.append(rel)
    return sorted(join(path, *rel) for rel in kept)


def write_local(path: Path, data: bytes) -> None:
    """Write a local file whole: a temp file in its directory, flushed, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download(src: str, dst: str | os.PathLike) -> Path:
    """Copy a file or a directory tree from a location to a local path (files written
    whole: a copy cut short leaves no half file under its name)."""
    import pyarrow.fs

    fs, p = filesystem(src)
    dst = Path(dst)
    if fs.get_file_info(p).type == pyarrow.fs.FileType.File:
        files = [(p, dst)]
    else:
        selector = pyarrow.fs.FileSelector(p, recursive=True)
        files = [
            (i.path, dst.joinpath(*i.path[len(p) :].strip("/").split("/")))
            for i in fs.get_file_info(selector)
            if i.type == pyarrow.fs.FileType.File
        ]
        dst.mkdir(parents=True, exist_ok=True)
    for remote, local in files:
        local.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(remote) as f:
            write_local(local, f.read())
    return dst


def upload(src: str | os.PathLike, dst: str) -> None:
    """Copy a local file or directory tree to a location (files already there replaced)."""
    src = Path(src)
    fs, p = filesystem(dst)
    files = [src] if src.is_file() else sorted(f for f in src.rglob("*") if f.is_file())
    for local in files:
        remote = "/".join([p, *local.relative_to(src).parts]) if local != src else p
        if not is_uri(dst):
            Path(remote).parent.mkdir(parents=True, exist_ok=True)
        with fs.open_output_stream(remote) as f:
            f.write(local.read_bytes())


@contextmanager
def staged_file(path: str) -> Iterator[str]:
    """A local file to append to that ends up at `path`: `path` itself when local; for a
    URI a local copy (of what is there), uploaded when the block ends, however it ends."""
    if not is_uri(path):
        yield path
        return
    scratch = Path(tempfile.mkdtemp(prefix="effray-stage-"))
    local = scratch / basename(path)
    try:
        if is_file(path):
            download(path, local)
        yield str(local)
    finally:
        try:
            if local.exists():
                upload(local, path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def is_experiment(path: str) -> bool:
    return exists(join(path, EXPERIMENT_FILE)) or exists(join(path, "tuner.pkl"))


def fresh_experiment_dir(root: str, name: str, explicit: bool) -> tuple[str, str]:
    """(path, name) of a new experiment directory; name-2, name-3, … when taken."""
    path = join(root, name)
    if not is_experiment(path):
        return path, name
    if explicit:
        raise ExperimentError(
            f"experiment directory {redact(path)} already exists; continue it with "
            f"`effray restore {redact(path)}`, or choose another --name"
        )
    n = 2
    while is_experiment(join(root, f"{name}-{n}")):
        n += 1
    return join(root, f"{name}-{n}"), f"{name}-{n}"
