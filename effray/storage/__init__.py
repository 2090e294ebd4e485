"""Where experiments live (ray-free; pyarrow only): a local directory, or a URI.

    root = storage_root("s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http")
    path = join(root, "quickstart", "results.json")
    #   s3://bucket/runs/quickstart/results.json?endpoint_override=127.0.0.1:9000&scheme=http
    write_text(path, text); read_text(path)
    redact(path)   # for messages: no user:password@, no secret-looking query values

A URI is `scheme://bucket/path?options`: s3:// (pyarrow's S3 options as the query, e.g.
endpoint_override, scheme, region; the endpoint also from AWS_ENDPOINT_URL), gs:// (or
gcs://), file:// (the same as a local path). Paths are joined inside the URI's path,
never after its query. The first use of a bucket checks it, time-bounded: an unknown
scheme or option, a missing bucket, refused credentials or an unreachable endpoint is a
StorageError naming the URI (credentials redacted) and what to set.
"""

from effray.storage.connect import (
    ANSWER_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    S3_OPTIONS,
    filesystem,
)
from effray.storage.files import (
    download,
    exists,
    find_dirs_with,
    fresh_experiment_dir,
    is_dir,
    is_experiment,
    is_file,
    list_dir,
    read_text,
    staged_file,
    upload,
    write_text,
)
from effray.storage.locations import (
    DEFAULT_STORAGE,
    SCHEMES,
    ExperimentError,
    StorageError,
    basename,
    is_uri,
    join,
    location,
    parent,
    redact,
    storage_root,
)

__all__ = [
    "ANSWER_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "DEFAULT_STORAGE",
    "S3_OPTIONS",
    "SCHEMES",
    "ExperimentError",
    "StorageError",
    "basename",
    "download",
    "exists",
    "filesystem",
    "find_dirs_with",
    "fresh_experiment_dir",
    "is_dir",
    "is_experiment",
    "is_file",
    "is_uri",
    "join",
    "list_dir",
    "location",
    "parent",
    "read_text",
    "redact",
    "staged_file",
    "storage_root",
    "upload",
    "write_text",
]
