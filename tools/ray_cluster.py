"""The Ray cluster the experts run on: importing Ray, starting a local one, connecting.

`sensorium experts up` without an address starts a local cluster with `ray start --head
--block` in a process group of its own and records it in `DATA_DIR/ray/cluster.json`;
`experts down` stops that group and nothing else (`ray stop` would stop every Ray on the
machine). Agents with `[experts] backend = "ray"` connect to `experts.address`, else to the
recorded cluster, else to `$RAY_ADDRESS`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import re
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
    group) and the address drivers connect to."""

    pid: int
    address: str
    temp_dir: str

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
    """The running local cluster `experts up` started, if any (a stale record is dropped)."""
    path = record_path(data_dir)
    try:
        cluster = LocalCluster(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if not cluster.alive():
        path.unlink(missing_ok=True)
        return None
    return cluster


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
    env = os.environ | {
        "RAY_AUTH_MODE": "token",  # drivers need the token Ray keeps in ~/.ray
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
        pid=process.pid, address=f"{_host_address()}:{port}", temp_dir=str(temp_dir)
    )
    deadline = time.monotonic() + timeout_s
    while not _accepts(port):
        if process.poll() is not None:
            raise ModelUnavailableError(
                f"the local Ray cluster exited while starting (status {process.returncode}); "
                f"see {folder / 'head.log'}"
            )
        if time.monotonic() > deadline:
            _stop_group(process.pid)
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
    record_path(data_dir).unlink(missing_ok=True)
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


def cluster_address(address: str | None, data_dir: Path) -> str:
    """The cluster to use: `address`, else the local one `experts up` started, else
    `$RAY_ADDRESS`; a one-line error when there is none."""
    if address:
        return address
    if local := read_local(data_dir):
        return local.address
    if from_env := os.environ.get("RAY_ADDRESS"):
        return from_env
    raise UserError(
        "no Ray cluster for the experts: run `sensorium experts up`, or set experts.address "
        "(or RAY_ADDRESS) to a running cluster"
    )


def connect(address: str, data_dir: Path) -> None:
    """Join the cluster at `address` as a driver (once per process)."""
    require_ray()
    _check_listening(address)
    local = read_local(data_dir)
    if local is not None and local.address == address:
        _use_token_auth()
    import ray
    import ray.serve

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not a line per deployment step
    if not ray.is_initialized():
        try:
            ray.init(
                address=address,
                log_to_driver=False,
                logging_level=logging.ERROR,
                runtime_env={"working_dir": str(_empty_folder(data_dir))},
            )
        except (ConnectionError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelUnavailableError(
                f"cannot reach the Ray cluster at {address} ({first[:160]}); "
                "start it with `sensorium experts up` or fix experts.address"
            ) from None


def _empty_folder(data_dir: Path) -> Path:
    """An empty folder for the job's `working_dir`. Without one, Ray puts this process's
    working folder on its workers' import path, and a source checkout there shadows the
    installed Sensorium in every replica."""
    folder = data_dir / "ray" / "empty"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_listening(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast when nothing listens at a host:port address: `ray.init` would retry for
    minutes. Other forms ("auto", "local") are left to Ray."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address.strip())
    if match is None:
        return
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    raise ModelUnavailableError(
        f"no Ray cluster answers at {address} ({why}); start one with `sensorium experts up` "
        "or fix experts.address"
    )


def _use_token_auth() -> None:
    """Connect with the token Ray keeps in ~/.ray/auth_token, as `start_local` runs the
    cluster; an explicit RAY_AUTH_MODE stands."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray._raylet" in sys.modules:
        # Ray read its configuration when it was imported: have it read it again (what Ray
        # itself does when it turns token authentication on).
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")


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
