"""The pyarrow filesystem of a location, its bucket checked on first use (time-bounded)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from effray.storage.locations import StorageError, is_uri, location, redact

S3_OPTIONS = ("endpoint_override", "scheme", "region", "allow_bucket_creation")  # documented
CONNECT_TIMEOUT_S = 3.0  # the storage check: seconds to open a connection
ANSWER_TIMEOUT_S = 5.0  # the storage check: seconds the endpoint may stay silent
RECHECK_S = 30.0  # seconds a failed check is remembered (one command asks once)

_filesystems: dict[tuple, object] = {}


def filesystem(path: str | os.PathLike):
    """(pyarrow filesystem, path on it) for a location; a URI's bucket is checked once."""
    import pyarrow.fs

    path = location(path)
    if not is_uri(path):
        return pyarrow.fs.LocalFileSystem(), str(Path(path).absolute())
    u = urlsplit(path)
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "GOOGLE"))))
    key = (u.scheme, u.netloc, u.query, env)
    bucket = u.netloc.rsplit("@", 1)[-1]
    store = urlunsplit((u.scheme, u.netloc, "", u.query, ""))  # what messages name
    fs = _filesystems.get(key)
    if isinstance(fs, tuple) and time.monotonic() - fs[1] < RECHECK_S:
        raise StorageError(str(fs[0]))  # failed a moment ago: no second wait
    if fs is None or isinstance(fs, tuple):
        try:
            fs = _open(store)[0]
            _check(fs, bucket, store)
        except StorageError as exc:
            _filesystems[key] = (exc, time.monotonic())
            raise
        _filesystems[key] = fs
    return fs, (bucket + unquote(u.path)).rstrip("/")


def _open(uri: str):
    import pyarrow
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except pyarrow.ArrowInvalid as exc:
        found = re.search(r"query parameter in \w+ URI: '([^']*)'", str(exc))
        if found:
            raise StorageError(
                f"{redact(uri)}: unknown option {found.group(1)!r} in the URI's query "
                f"(pyarrow's {urlsplit(uri).scheme}:// options include "
                f"{', '.join(S3_OPTIONS)}); fix the query after '?'"
            ) from None
        raise StorageError(f"{redact(uri)}: not a usable storage URI ({exc})") from None
    except (OSError, ImportError) as exc:
        raise StorageError(f"{redact(uri)}: cannot open the store ({_one_line(exc)})") from None


def _endpoint(fs) -> str:
    options = _s3_options(fs)
    if options is None:
        return type(fs).__name__
    return options.get("endpoint_override") or f"AWS S3 ({options.get('region') or 'region'})"


def _s3_options(fs) -> dict | None:
    """An S3FileSystem's constructor arguments (None for another filesystem)."""
    import pyarrow.fs

    if not isinstance(fs, pyarrow.fs.S3FileSystem):
        return None
    options = dict(fs.__reduce__()[1][0])
    if not (options.get("proxy_options") or {}).get("scheme"):
        options.pop("proxy_options", None)
    for name in ("region", "tls_ca_file_path", "role_arn", "session_name", "external_id"):
        if not options.get(name):
            options.pop(name, None)
    return options


def _quick(fs):
    """A copy of an S3 filesystem that gives up fast: one try, short timeouts."""
    import pyarrow.fs

    options = _s3_options(fs)
    options.update(
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=ANSWER_TIMEOUT_S,
        retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    return pyarrow.fs.S3FileSystem(**options)


def _check(fs, bucket: str, uri: str) -> None:
    """Does the bucket exist, and may we use it? Bounded by the timeouts above."""
    import threading

    import pyarrow.fs

    where = f"{redact(uri)} (endpoint {_endpoint(fs)})"
    probe = _quick(fs) if _s3_options(fs) is not None else fs
    answer: list = []

    def ask() -> None:
        try:
            answer.append(probe.get_file_info(bucket))
        except Exception as exc:
            answer.append(exc)

    asking = threading.Thread(target=ask, daemon=True)  # gs:// has no timeout of its own
    asking.start()
    asking.join(CONNECT_TIMEOUT_S + 2 * ANSWER_TIMEOUT_S)
    if not answer:
        raise StorageError(_unreachable(where, "no answer"))
    info = answer[0]
    if isinstance(info, Exception):
        text = str(info)
        if re.search(r"ACCESS_DENIED|INVALID_ACCESS_KEY|SIGNATURE|FORBIDDEN|403|401", text):
            raise StorageError(
                f"{where}: the credentials were refused for bucket {bucket!r}; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to an account "
                "that may read and write it"
            )
        if re.search(r"NETWORK_CONNECTION|curlCode|[Tt]imeout|resolve|connect", text):
            raise StorageError(_unreachable(where, _one_line(info)))
        raise StorageError(f"{where}: cannot use bucket {bucket!r} ({_one_line(info)})")
    if info.type == pyarrow.fs.FileType.NotFound:
        raise StorageError(
            f"{where}: bucket {bucket!r} does not exist; create it (e.g. `aws s3 mb "
            f"s3://{bucket}`) or fix the bucket in --storage"
        )


def _unreachable(where: str, why: str) -> str:
    return (
        f"{where}: the storage endpoint cannot be reached ({why}; gave up after at most "
        f"{CONNECT_TIMEOUT_S + 2 * ANSWER_TIMEOUT_S:.0f} s); check the endpoint "
        "(AWS_ENDPOINT_URL, or ?endpoint_override=HOST:PORT&scheme=http in the URI) and "
        "that it is running"
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:240] + "…"
