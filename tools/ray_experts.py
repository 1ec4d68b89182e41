"""Calling the experts on their Ray Serve deployments (`[experts] backend = "ray"`).

`RayExperts` is an expert backend like `LocalExperts`: it takes a tool and its arguments
and returns `Evidence`, never raising. A remote error, a dead replica, a missing deployment,
an unreachable cluster or a timeout becomes Evidence with a one-line error, so the turn
completes. A call whose replica died is sent once more within the time left: Serve routes it
to another replica, or to the one it restarts. Experts named in `experts.local` run in the
agent's process (they search the agent's own collections).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sensorium.tools.base import Tool
from sensorium.tools.errors import SensoriumError
from sensorium.tools.evidence import Evidence
from sensorium.tools.images import ImageStore
from sensorium.tools.ray_cluster import (
    APP_NAME,
    DIRECTORY,
    connect,
    deployment_name,
    find_cluster,
)

# After a failed connection, calls fail fast for this long before the next attempt.
RECONNECT_AFTER_S = 15.0


class RayExperts:
    """Runs tool calls on the `sensorium-experts` Serve application.

    Args:
        local: the backend for experts that stay in process (and the fallback of none)
        images: the agent's image store; the images a call names travel with it
        timeout_s: the most one call may take, retries included
        address: the Ray cluster (None: the one `experts up` started, else $RAY_ADDRESS)
        token_file: the file holding that cluster's token (None: the local cluster's own, else
            Ray's own sources)
        data_dir: where `experts up` recorded its local cluster
        local_tools: experts run by `local` instead
    """

    def __init__(
        self,
        local: Callable[[Tool, dict[str, Any]], Evidence],
        images: ImageStore,
        *,
        timeout_s: float,
        address: str | None,
        token_file: Path | None = None,
        data_dir: Path,
        local_tools: Iterable[str] = (),
    ) -> None:
        self.local = local
        self.images = images
        self.timeout_s = timeout_s
        self.address = address
        self.token_file = token_file
        self.data_dir = data_dir
        self.local_tools = frozenset(local_tools)
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._deployed: set[str] | None = None  # the experts the application serves
        self._failed: tuple[float, str] | None = None

    def __call__(self, tool: Tool, arguments: dict[str, Any]) -> Evidence:
        if tool.name in self.local_tools:
            return self.local(tool, arguments)
        started = time.perf_counter()
        try:
            evidence, where = self._remote(tool, arguments)
        except Exception as exc:  # the turn goes on without this expert
            evidence, where = Evidence(error=_one_line(exc)), deployment_name(tool.name)
        if evidence.error is not None and evidence.latency_ms == 0:
            evidence = evidence.model_copy(
                update={"latency_ms": (time.perf_counter() - started) * 1000}
            )
        return evidence.model_copy(
            update={"expert": tool.name, "where": where, "image": tool.image_of(arguments)}
        )

    def _remote(self, tool: Tool, arguments: dict[str, Any]) -> tuple[Evidence, str]:
        from ray.exceptions import RayActorError

        handle, name = self._handle(tool.name)
        shipped = {sha: self.images.require(sha).read_bytes() for sha in tool.images_of(arguments)}
        deadline = time.monotonic() + self.timeout_s
        for attempt in (1, 2):
            response = handle.remote(arguments, shipped)
            try:
                left = max(0.001, deadline - time.monotonic())
                evidence: Evidence = response.result(timeout_s=left)
                return evidence, name
            except TimeoutError:
                response.cancel()
                error = f"timed out after {self.timeout_s:g} s on Ray deployment {name}"
                return Evidence(error=error, latency_ms=self.timeout_s * 1000), name
            except RayActorError as exc:  # the replica died mid-call
                if attempt == 2 or time.monotonic() >= deadline:
                    return Evidence(error=f"a replica of {name} died: {_one_line(exc)}"), name
        raise AssertionError("unreachable")

    def _handle(self, expert: str) -> tuple[Any, str]:
        """The deployment handle of an expert (connecting on first use)."""
        name = deployment_name(expert)
        with self._lock:
            if expert in self._handles:
                return self._handles[expert], name
            deployed = self._connect()
            if expert not in deployed:  # perhaps deployed since: ask the directory again
                deployed = self._deployed = self._directory()
            if expert not in deployed:
                raise SensoriumError(
                    f"expert {expert!r} is not deployed on the cluster; redeploy with "
                    "`sensorium experts up` with it enabled, or add it to experts.local"
                )
            from ray import serve

            self._handles[expert] = serve.get_deployment_handle(name, APP_NAME)
            return self._handles[expert], name

    def _connect(self) -> set[str]:
        """Join the cluster and read which experts it serves; a failure is remembered for
        `RECONNECT_AFTER_S`, so calls meanwhile fail at once instead of each waiting."""
        if self._deployed is not None:
            return self._deployed
        if self._failed and time.monotonic() - self._failed[0] < RECONNECT_AFTER_S:
            raise SensoriumError(self._failed[1])
        try:
            cluster = find_cluster(self.address, self.token_file, self.data_dir)
            connect(cluster, self.data_dir)
            self._deployed = self._directory()
        except Exception as exc:
            self._failed = (time.monotonic(), _one_line(exc))
            raise
        self._failed = None
        return self._deployed

    def _directory(self) -> set[str]:
        """The experts the application's directory lists."""
        from ray import serve

        if APP_NAME not in serve.status().applications:
            raise SensoriumError(
                f"the experts are not deployed ({APP_NAME} is not on the cluster); "
                "run `sensorium experts up`"
            )
        directory = serve.get_deployment_handle(DIRECTORY, app_name=APP_NAME)
        return set(directory.describe.remote().result(timeout_s=30)["experts"])


def _one_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
