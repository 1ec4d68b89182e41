"""The experts as one Ray Serve application: a deployment per expert, batched by Serve.

Each `ExpertReplica` holds its own model host and runs one expert; concurrent requests are
gathered by Serve's `@serve.batch` (`[batching]` sets its size and wait) and run together, so
the replica's host shares forward passes among them. `ExpertsDirectory`, the application's
ingress, says which experts it serves and for which profile. Callers reach the replicas
through deployment handles (`sensorium.tools.ray_experts`), not HTTP: no proxy is started.

Importing this module needs Ray (`sensorium[ray]`); replicas need Sensorium installed where
they run.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING, Any

from ray import serve

from sensorium.tools.errors import ModelUnavailableError
from sensorium.tools.evidence import Evidence
from sensorium.tools.ray_cluster import APP_NAME, DIRECTORY, deployment_name

if TYPE_CHECKING:
    from sensorium.agent import Settings


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ExpertsDirectory:
    """The application's ingress: the profile and the experts it serves, by deployment."""

    def __init__(self, profile: str, experts: dict[str, Any]) -> None:
        # `experts` maps each expert to its deployment's handle (binding them is what makes
        # them part of the application); callers need only the names.
        self.profile = profile
        self.experts = sorted(experts)

    def describe(self) -> dict[str, Any]:
        """The profile and the experts served (each by `deployment_name(expert)`)."""
        return {"profile": self.profile, "experts": self.experts}


@serve.deployment
class ExpertReplica:
    """One expert with its own model host; runs batches of calls concurrently."""

    def __init__(self, expert: str, settings: dict[str, Any]) -> None:
        from sensorium.agent import Agent, Settings

        # An agent without an LLM builds the expert's context exactly as in process: model
        # host, image store, encoder. Its experts run here, never on Ray again.
        local = Settings.model_validate(settings | {"experts": {"backend": "local"}})
        agent = Agent(local, chat_model=None)
        self.tool = agent.registry.get(expert)
        self.context = agent.context
        self.images = agent.images
        self.host = agent.host
        self.batches = 0  # Serve's batches, and the calls in them
        self.calls = 0
        self._warm_up()
        # Serve's batch wrapper (not visible to type checkers) takes the sizes at run time.
        self.run.set_max_batch_size(local.batching.max_batch)  # type: ignore[attr-defined]
        wait_s = local.batching.max_wait_ms / 1000
        self.run.set_batch_wait_timeout_s(wait_s)  # type: ignore[attr-defined]

    def _warm_up(self) -> None:
        """One call on a small grey picture, so the expert's models load while the replica
        starts (Serve reports it healthy after this) and not on the first user's call."""
        from PIL import Image

        image = self.images.add_image(Image.new("RGB", (64, 64), "grey"), name="warm-up")
        arguments: dict[str, Any] = {name: image for name in self.tool.image_params[:1]}
        if self.tool.takes_question:
            arguments["question"] = "What is in this picture?"
        self.tool.run(self.context, arguments)  # a failure here is Evidence, and ignored

    async def __call__(self, arguments: dict[str, Any], images: dict[str, bytes]) -> Evidence:
        """Run one call; `images` carries the stored images it names (sha256 -> PNG bytes), so
        replicas need no file system shared with the agent."""
        loop = asyncio.get_running_loop()
        for sha, data in images.items():  # off the event loop: decoding a new one takes time
            await loop.run_in_executor(None, self.images.add_object, sha, data)
        evidence: Evidence = await self.run(arguments)
        return evidence

    @serve.batch
    async def run(self, calls: list[dict[str, Any]]) -> list[Evidence]:
        """A batch of calls, run at once so the model host batches their forward passes."""
        self.batches += 1
        self.calls += len(calls)
        loop = asyncio.get_running_loop()
        # asyncio's default pool (cores + 4 threads): a thread per call of a 16-call batch
        # measured no better on 2 cores (bench/experts_ray.py, within its run-to-run noise).
        return list(
            await asyncio.gather(
                *(loop.run_in_executor(None, self.tool.run, self.context, c) for c in calls)
            )
        )

    def describe(self) -> dict[str, Any]:
        """Where this replica runs (node, process, the device its models use) and how much
        it batched: Serve's batches, and the forward passes its model host shared."""
        return {
            "node": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.host.device),
            "serve_batches": {"batches": self.batches, "calls": self.calls},
            "model_batches": self.host.batching_counts(),
        }


def deployment_options(settings: Settings, expert: str) -> dict[str, Any]:
    """Serve's options for an expert's deployment: its sizing from `[experts]` (replicas or
    autoscaling bounds, CPUs and GPUs per replica) and its queue."""
    sizing = settings.experts.replica(expert)
    options: dict[str, Any] = {
        "name": deployment_name(expert),
        "ray_actor_options": {"num_cpus": sizing.num_cpus, "num_gpus": sizing.num_gpus},
        # Room for a batch being computed and the next one filling.
        "max_ongoing_requests": max(8, 2 * settings.batching.max_batch),
    }
    if sizing.max_replicas is not None and sizing.max_replicas > sizing.replicas:
        options["autoscaling_config"] = {
            "min_replicas": sizing.replicas,
            "max_replicas": sizing.max_replicas,
            "target_ongoing_requests": sizing.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = sizing.replicas
    return options


def build_app(settings: Settings, experts: list[str]) -> Any:
    """The application for `experts`: the directory, bound to a deployment per expert."""
    raw = settings.model_dump(mode="json")
    bound: dict[str, Any] = {}
    for expert in experts:
        # `@serve.deployment` made the classes Deployments, which type checkers do not see.
        replica = ExpertReplica.options(**deployment_options(settings, expert))  # type: ignore[attr-defined]
        bound[expert] = replica.bind(expert, raw)
    directory = ExpertsDirectory.options(name=DIRECTORY)  # type: ignore[attr-defined]
    return directory.bind(settings.profile, bound)


def deploy(settings: Settings, experts: list[str]) -> None:
    """Run (or update) the application on the connected cluster; returns when it is ready."""
    serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy on the nodes
    try:
        serve.run(build_app(settings, experts), name=APP_NAME, route_prefix=None)
    except RuntimeError as exc:  # a replica failed to start: Serve gives up on the app
        first = (str(exc).strip().splitlines() or ["no message"])[0]
        raise ModelUnavailableError(
            f"{first[:240]}; the replicas' errors are in the Serve logs on the cluster "
            "(session_latest/logs/serve/ under Ray's temp folder)"
        ) from None


def describe(timeout_s: float = 10.0) -> dict[str, Any] | None:
    """The deployed application: its profile, and per expert the deployment's status,
    replicas (running / target) and where one replica runs; None when it is not deployed."""
    application = serve.status().applications.get(APP_NAME)
    if application is None:
        return None
    directory = serve.get_deployment_handle(DIRECTORY, app_name=APP_NAME)
    found = directory.describe.remote().result(timeout_s=timeout_s)
    deployments = []
    for expert in found["experts"]:
        name = deployment_name(expert)
        info = application.deployments.get(name)
        states = dict(info.replica_states) if info else {}
        handle = serve.get_deployment_handle(name, app_name=APP_NAME)
        try:
            where = handle.describe.remote().result(timeout_s=timeout_s)
        except Exception as exc:  # a replica still starting, or dead
            where = {"error": (str(exc).strip().splitlines() or [type(exc).__name__])[0]}
        deployments.append(
            {
                "expert": expert,
                "deployment": name,
                "status": str(info.status.value) if info else "missing",
                "replicas": {str(getattr(k, "value", k)): n for k, n in states.items()},
                "replica": where,
            }
        )
    return {
        "application": APP_NAME,
        "status": str(application.status.value),
        "profile": found["profile"],
        "deployments": deployments,
    }


def undeploy() -> bool:
    """Remove the application (the cluster keeps running); False when it was not there."""
    if APP_NAME not in serve.status().applications:
        return False
    serve.delete(APP_NAME)
    return True
