"""Locations: a local path or a URI (s3://, gs://, file://, with query options); paths
joined inside the URI's path, never after its query; credentials kept out of messages."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

DEFAULT_STORAGE = "runs"  # relative to the working directory
SCHEMES = ("s3", "gs", "gcs", "file")  # what a storage URI may start with
SECRET = re.compile(r"key|token|secret|passw|credential|signature", re.IGNORECASE)


class ExperimentError(Exception):
    """The experiment cannot start or continue; the message says why and what to do."""


class StorageError(ExperimentError):
    """A storage location cannot be used; the message names it (redacted) and the fix."""


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def location(path: str | os.PathLike) -> str:
    """A location as effray uses it: a URI checked for its scheme, without a trailing
    slash in its path; file:// and plain paths as a local path (~ expanded)."""
    text = str(path)
    if not is_uri(text):
        return str(Path(text).expanduser())
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        allowed = ", ".join(f"{s}://" for s in SCHEMES)
        raise StorageError(
            f"{redact(text)}: unknown storage scheme {parts.scheme!r} (allowed {allowed}, or "
            "a local directory); fix --storage or the location you passed"
        )
    if scheme == "file":
        return str(Path(unquote(parts.path)))
    if not parts.netloc.rsplit("@", 1)[-1]:
        raise StorageError(f"{redact(text)}: no bucket in the URI (expected {scheme}://BUCKET/…)")
    path_part = parts.path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, path_part, parts.query, ""))


def storage_root(storage: str | os.PathLike | None) -> str:
    """Absolute local path (Ray needs one) or the URI (checked for its scheme)."""
    root = location(storage or DEFAULT_STORAGE)
    return root if is_uri(root) else str(Path(root).resolve())


def join(root: str, *parts: str) -> str:
    """`root/part/…`; for a URI inside its path, before its query."""
    if not is_uri(root):
        return str(Path(root, *parts))
    u = urlsplit(root)
    path = "/".join([u.path.rstrip("/"), *(p.strip("/") for p in parts)])
    return urlunsplit((u.scheme, u.netloc, path, u.query, u.fragment))


def basename(path: str) -> str:
    """The last name of a path or of a URI's path (its query left out)."""
    text = urlsplit(path).path if is_uri(path) else str(path)
    return text.rstrip("/").rsplit("/", 1)[-1]


def parent(path: str) -> str:
    """The location one level up (a URI keeps its bucket and query)."""
    if not is_uri(path):
        return str(Path(path).parent)
    u = urlsplit(path)
    return urlunsplit((u.scheme, u.netloc, u.path.rstrip("/").rsplit("/", 1)[0], u.query, ""))


def redact(text: str | os.PathLike) -> str:
    """A location for messages: user:password@ and secret-looking query values hidden."""
    text = str(text)
    if not is_uri(text):
        return text
    u = urlsplit(text)
    netloc = ("***@" + u.netloc.rsplit("@", 1)[1]) if "@" in u.netloc else u.netloc
    query = "&".join(
        f"{k}={'***' if SECRET.search(k) else v}"
        for k, v in parse_qsl(u.query, keep_blank_values=True)
    )
    return urlunsplit((u.scheme, netloc, u.path, query, u.fragment))
