"""The Ray cluster the experts run on: importing Ray, starting a local one, connecting.

`sensorium experts up` without an address starts a local cluster with `ray start --head
--block` in a process group of its own and records it in `DATA_DIR/ray/cluster.json`;
`experts down` stops that group and nothing else (`ray stop` would stop every Ray on the
machine). Agents with `[experts] backend = "ray"` connect to `experts.address`, else to the
recorded cluster, else to `$RAY_ADDRESS`.

Token authentication: the local cluster gets a token of its own, made when it starts and kept
beside its record (`DATA_DIR/ray/auth_token`, owner-only); the head and every driver that joins
it read that file (Ray's `RAY_AUTH_TOKEN_PATH`). Nothing is written to `~/.ray`, which Ray
reads by default: a new user's home holds no token. Another cluster's token comes from
`experts.auth_token_file`, else from Ray's own sources (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH`,
`~/.ray/auth_token`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sensorium.tools.errors import ModelUnavailableError, UserError

INSTALL_HINT = "pip install 'sensorium[ray]'"
RECORD_FILE = "cluster.json"
TOKEN_FILE = "auth_token"  # the local cluster's token, beside its record
TOKEN_HINT = (
    "set experts.auth_token_file (SENSORIUM_EXPERTS__AUTH_TOKEN_FILE) to a file holding the "
    "cluster's token (`ray get-auth-token` on its head), or RAY_AUTH_TOKEN"
)
APP_NAME = "sensorium-experts"  # the Serve application holding the experts
DIRECTORY = "experts-directory"  # its ingress: which experts it serves


def deployment_name(expert: str) -> str:
    """The Serve deployment that runs an expert."""
    return f"expert-{expert}"


def require_ray() -> None:
    """One line saying what to install when Ray is missing. It does not import Ray: Ray reads
    its authentication mode on import, and `connect` sets it first."""
    if importlib.util.find_spec("ray") is None:
        raise ModelUnavailableError(
            f"running experts on Ray needs Ray Serve, which is not installed: {INSTALL_HINT}"
        )


@dataclass(frozen=True)
class LocalCluster:
    """A cluster `experts up` started: its `ray start` process (leader of its own process
    group), the address drivers connect to, and the file holding its token."""

    pid: int
    address: str
    temp_dir: str
    token_file: str

    def target(self) -> ClusterTarget:
        """How a driver joins it: its address and its token."""
        return ClusterTarget(self.address, Path(self.token_file))

    def alive(self) -> bool:
        """True while its `ray start` process runs (and is still Ray, not a reused pid)."""
        try:
            command = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return _pid_exists(self.pid)  # no /proc (macOS): trust the pid
        return b"ray" in command and b"start" in command


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_path(data_dir: Path) -> Path:
    """Where the local cluster `experts up` started is recorded."""
    return data_dir / "ray" / RECORD_FILE


def read_local(data_dir: Path) -> LocalCluster | None:
    """The running local cluster `experts up` started, if any (a stale record is dropped,
    with its token)."""
    path = record_path(data_dir)
    try:
        cluster = LocalCluster(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if not cluster.alive():
        _forget(data_dir)
        return None
    return cluster


def _forget(data_dir: Path) -> None:
    """Remove the local cluster's record and its token."""
    record_path(data_dir).unlink(missing_ok=True)
    (record_path(data_dir).parent / TOKEN_FILE).unlink(missing_ok=True)


def _new_token(folder: Path) -> Path:
    """A fresh token for a new local cluster, readable by its owner only (created so: never
    world-readable, not even for a moment)."""
    path = folder / TOKEN_FILE
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32))  # 256 bits, as `ray get-auth-token --generate`
    return path


def start_local(data_dir: Path, num_cpus: float, timeout_s: float = 120.0) -> LocalCluster:
    """Start a one-node cluster on this machine and wait until drivers can connect.

    Args:
        data_dir: where the record and Ray's logs go (`DATA_DIR/ray`)
        num_cpus: logical CPUs to offer; at least the machine's own
        timeout_s: how long to wait for the head to accept connections
    """
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        require_ray()  # says what to install when Ray is missing
        raise ModelUnavailableError(f"Ray's `ray` command is missing next to {sys.executable}")
    port = _free_port()
    # Ray's own session folder; short, since Ray's sockets live under it (a 107-byte limit).
    temp_dir = Path("/tmp") / f"sensorium-ray-{os.getuid()}-{port}"
    # Logical CPUs, not cores: experts wait on each other more than they compute, and every
    # deployment must fit for the application to start. Ray counts GPUs itself.
    cpus = max(os.cpu_count() or 1, math.ceil(num_cpus))
    folder = record_path(data_dir).parent
    folder.mkdir(parents=True, exist_ok=True)
    token_file = _new_token(folder)
    env = _without_token_variables(os.environ) | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),  # the head, its workers and replicas read it
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # `down` removed the app already
    }
    command = [
        str(ray_bin),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        f"--num-cpus={cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    with (folder / "head.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: `down` stops exactly it
            cwd=folder,  # workers import Sensorium as installed, whatever folder this is
        )
    cluster = LocalCluster(
        pid=process.pid,
        address=f"{_host_address()}:{port}",
        temp_dir=str(temp_dir),
        token_file=str(token_file),
    )
    deadline = time.monotonic() + timeout_s
    while not _accepts(port):
        if process.poll() is not None:
            token_file.unlink(missing_ok=True)
            raise ModelUnavailableError(
                f"the local Ray cluster exited while starting (status {process.returncode}); "
                f"see {folder / 'head.log'}"
            )
        if time.monotonic() > deadline:
            _stop_group(process.pid)
            token_file.unlink(missing_ok=True)
            raise ModelUnavailableError(
                f"the local Ray cluster did not start within {timeout_s:g} s; "
                f"see {folder / 'head.log'}"
            )
        time.sleep(0.25)
    record_path(data_dir).write_text(json.dumps(asdict(cluster)), encoding="utf-8")
    return cluster


def stop_local(data_dir: Path, timeout_s: float = 20.0) -> bool:
    """Stop the local cluster `experts up` started (its process group only); False if none."""
    cluster = read_local(data_dir)
    if cluster is None:
        return False
    _stop_group(cluster.pid, timeout_s)
    _forget(data_dir)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)  # Ray's sockets and session logs
    return True


def _stop_group(pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM to the group `ray start` leads, then SIGKILL to whatever is left of it."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # our child if this process started it
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class ClusterTarget:
    """A cluster to join: its address, and the file holding its token (None: Ray's own
    sources: `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`)."""

    address: str
    token_file: Path | None = None


def find_cluster(address: str | None, token_file: Path | None, data_dir: Path) -> ClusterTarget:
    """The cluster to use: `address`, else the local one `experts up` started, else
    `$RAY_ADDRESS`; a one-line error when there is none. The local cluster's own token goes
    with its address; any other cluster takes `token_file`."""
    local = read_local(data_dir)
    if local is not None and address in (None, local.address):
        return ClusterTarget(local.address, token_file or Path(local.token_file))
    if address := address or os.environ.get("RAY_ADDRESS"):
        return ClusterTarget(address, token_file)
    raise UserError(
        "no Ray cluster for the experts: run `sensorium experts up`, or set experts.address "
        "(or RAY_ADDRESS) to a running cluster"
    )


def connect(cluster: ClusterTarget, data_dir: Path) -> None:
    """Join `cluster` as a driver (once per process), with its token."""
    require_ray()
    _check_listening(cluster.address)
    _use_token(cluster.token_file)
    import ray
    import ray.serve
    from ray.exceptions import AuthenticationError

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not a line per deployment step
    if ray.is_initialized():
        return
    _check_token(cluster)
    try:
        ray.init(
            address=cluster.address,
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env={"working_dir": str(_empty_folder(data_dir))},
        )
    except AuthenticationError:  # Ray's own: token authentication on, but no token anywhere
        raise UserError(_refused(cluster)) from None
    except (ConnectionError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelUnavailableError(
            f"cannot reach the Ray cluster at {cluster.address} ({first[:160]}); "
            "start it with `sensorium experts up` or fix experts.address"
        ) from None


def _check_token(cluster: ClusterTarget) -> None:
    """One line at once when the cluster refuses this process's token: `ray.init` would retry
    for about 20 s and then say only that it could not connect. One request to the cluster's
    GCS under a made-up cluster id: past a valid token it answers "wrong cluster", before it
    "invalid token", and it registers nothing either way. Anything else is `ray.init`'s to
    report (this leans on Ray internals, so it never fails on its own account)."""
    host_port = _host_port(cluster.address)
    if host_port is None or cluster.address.startswith("ray://"):  # Ray Client: not the GCS
        return
    from ray.exceptions import AuthenticationError

    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]

        host, port = host_port
        client = GcsClient(address=f"{host}:{port}", cluster_id="0" * 56)
        client.internal_kv_get(b"sensorium-token-check", None, timeout=5)
    except AuthenticationError as exc:
        if "InvalidAuthToken" in str(exc) or "Unauthenticated" in str(exc):
            raise UserError(_refused(cluster)) from None
    except Exception:  # not ours to report: ray.init says what went wrong
        return


def _refused(cluster: ClusterTarget) -> str:
    if cluster.token_file is None and not _token_in_environment():
        return (
            f"the Ray cluster at {cluster.address} needs a token and none was given: {TOKEN_HINT}"
        )
    return f"the Ray cluster at {cluster.address} refused the token: {TOKEN_HINT}"


def _token_in_environment() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"))


def _without_token_variables(env: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}


def _use_token(token_file: Path | None) -> None:
    """Have this process present `token_file` to the cluster (or Ray's own token sources,
    when it is None): Ray reads these variables, and its workers inherit them."""
    if token_file is not None:
        try:
            if not token_file.read_text(encoding="utf-8").strip():
                raise UserError(f"the Ray token file {token_file} is empty: {TOKEN_HINT}")
        except OSError as exc:
            raise UserError(
                f"cannot read the Ray token file {token_file} ({exc.strerror}): {TOKEN_HINT}"
            ) from None
        os.environ.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_file)
        os.environ["RAY_AUTH_MODE"] = "token"
    elif _token_in_environment():
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # a token given means: use it
    else:
        return
    if "ray._raylet" in sys.modules:
        # Ray read its configuration and cached the token when it was imported: have it read
        # both again (what Ray itself does when it turns token authentication on).
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _empty_folder(data_dir: Path) -> Path:
    """An empty folder for the job's `working_dir`. Without one, Ray puts this process's
    working folder on its workers' import path, and a source checkout there shadows the
    installed Sensorium in every replica."""
    folder = data_dir / "ray" / "empty"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a `host:port` or `ray://host:port` address; None for other forms
    ("auto", "local"), which are Ray's to resolve."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address.strip())
    return (match.group(1), int(match.group(2))) if match else None


def _check_listening(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast when nothing listens at a host:port address: `ray.init` would retry for
    minutes."""
    host_port = _host_port(address)
    if host_port is None:
        return
    try:
        with socket.create_connection(host_port, timeout=timeout_s):
            return
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    raise ModelUnavailableError(
        f"no Ray cluster answers at {address} ({why}); start one with `sensorium experts up` "
        "or fix experts.address"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        port: int = probe.getsockname()[1]
        return port


def _host_address() -> str:
    """The address Ray's head advertises: the host's, which Ray prefers to loopback."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this picks a route
            host: str = probe.getsockname()[0]
            return host
    except OSError:
        return "127.0.0.1"


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((_host_address(), port)) == 0
