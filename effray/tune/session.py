"""The Ray this process uses: embedded (quiet, 127.0.0.1 only) or a cluster it joins.

    with ray_session():                       # a local Ray, shut down on exit
        tune.Tuner(...).fit()
    with ray_session("127.0.0.1:6379"):       # join a cluster (RAY_AUTH_MODE decides auth)
        ...

Token authentication (Ray 2.60 turns it on for the clusters `ray.init` starts):

- embedded run: RAY_AUTH_MODE is set to "token" unless you set it; Ray creates
  ~/.ray/auth_token when it is missing. RAY_AUTH_MODE=disabled opts out.
- `--address` / RAY_ADDRESS: RAY_AUTH_MODE decides, as Ray asks (the same on every
  node and client; Ray turns token mode on by itself only for clusters it finds, never
  for an explicit address). A failed join says to set RAY_AUTH_MODE=token.
- jobs API (`effray submit/jobs/logs/stop`): when the cluster answers 401, RAY_AUTH_MODE
  is unset and a token is available (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
  names, ~/.ray/auth_token), the request is repeated in token mode (`use_token_auth`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import ray

from effray.storage import ExperimentError, is_uri

OBJECT_STORE_BYTES = 256 * 2**20  # embedded Ray; trials pass metrics and files, no tensors
EMBEDDED_SYSTEM_CONFIG = {
    # Ray starts one idle worker per CPU when a driver connects, for tasks in the job's
    # default environment. Tune's trial actors carry their own runtime_env (env_vars),
    # so Ray never hands them those workers: it starts new ones and kills the idle ones
    # a few seconds later. An embedded run skips starting them.
    "prestart_worker_first_driver": False,
}


def _is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


@contextmanager
def _loopback_only(enabled: bool) -> Iterator[None]:
    """Keep every Ray address on 127.0.0.1 for a Ray that lives on this machine.

    Ray replaces 127.0.0.1 by the machine's LAN address when it picks a node address,
    except in its single-machine mode (the default on macOS and Windows), where every
    service binds to 127.0.0.1. An embedded run, or a driver joining a cluster at
    127.0.0.1, uses that mode, so nothing listens on or talks to another interface.
    """
    import ray._private.ray_constants as ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    if enabled:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return Path(path).expanduser().is_file()
    return (Path.home() / ".ray" / "auth_token").is_file()


AUTH_HINT = (
    "if the cluster uses token authentication, set RAY_AUTH_MODE=token here too "
    "(Ray reads the token from RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, "
    "or ~/.ray/auth_token)"
)


def use_token_auth() -> bool:
    """Switch this process to token mode after a cluster asked for a token (HTTP 401).

    Only when RAY_AUTH_MODE is unset and a token is available: a token is sent only to
    a cluster that requires one, and an explicit RAY_AUTH_MODE always wins.
    """
    if os.environ.get("RAY_AUTH_MODE") is not None or not token_available():
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    _reload_ray_config()
    return True


def _reload_ray_config() -> None:
    # Ray caches RAY_AUTH_MODE when it is imported; re-read it (what `ray start` does).
    from ray._raylet import Config

    Config.initialize("")


@contextmanager
def _quiet_ray_logs(log_file: str | None) -> Iterator[Callable[[], None]]:
    """Ray's log lines go to `log_file` (or nowhere), not to the console the CLI draws on.

    Yields `route`, to be called again after `ray.init`, which clears the handlers.
    """
    logger = logging.getLogger("ray")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    handler: logging.Handler = logging.NullHandler()
    if log_file and not is_uri(log_file):
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def route() -> None:
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False

    route()
    try:
        yield route
    finally:
        handler.close()
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])


@contextmanager
def _env_defaults(**values: str) -> Iterator[None]:
    """Set environment variables the user has not set; put everything back afterwards."""
    before = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.setdefault(k, v)
    if "RAY_AUTH_MODE" in values:
        _reload_ray_config()
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if "RAY_AUTH_MODE" in values:
            _reload_ray_config()


@contextmanager
def ray_session(
    address: str | None = None, *, num_cpus: int | None = None, log_file: str | None = None
) -> Iterator[None]:
    """Use the Ray this process already has, join `address` (or RAY_ADDRESS), or start one.

    The embedded Ray is quiet: no dashboard, 127.0.0.1 only, usage stats off, a small
    object store; it is shut down on exit. A joined cluster is only disconnected.
    It starts no idle workers the trials cannot use (EMBEDDED_SYSTEM_CONFIG).
    """
    quiet = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AIR_NEW_OUTPUT": "0"}
    if ray.is_initialized():
        with _env_defaults(**quiet), _quiet_ray_logs(log_file):
            yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    embedded = {
        **quiet,
        "RAY_AUTH_MODE": "token",  # Ray 2.60's default for a Ray it starts, said aloud
        # Trials keep the driver's working directory, so relative paths in a spec
        # (data.root) mean the same as in `effray train`.
        "RAY_CHDIR_TO_TRIAL_DIR": "0",
    }
    local = address is None or _is_loopback(address)
    with (
        _env_defaults(**(embedded if address is None else quiet)),
        _quiet_ray_logs(log_file) as route_logs,
        _loopback_only(local),
    ):
        common = {
            "logging_level": logging.WARNING,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address is None:
            ray.init(
                address="local",  # a new Ray even when `ray start` left one running here
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=False,
                _system_config=EMBEDDED_SYSTEM_CONFIG,
                _node_ip_address="127.0.0.1",
                object_store_memory=OBJECT_STORE_BYTES,
                **common,
            )
        else:
            # RAY_AUTH_MODE decides, as Ray's docs ask: set the same on every node and
            # client. (A driver in the wrong mode cannot be detected cheaply: Ray retries.)
            try:
                ray.init(
                    address=address,
                    _node_ip_address="127.0.0.1" if local else None,
                    **common,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = f"; {AUTH_HINT}" if os.environ.get("RAY_AUTH_MODE") != "token" else ""
                raise ExperimentError(
                    f"cannot join the Ray cluster at {address}: {exc}{hint}"
                ) from None
        route_logs()
        try:
            yield
        finally:
            ray.shutdown()
