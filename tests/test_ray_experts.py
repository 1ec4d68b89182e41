"""The experts on Ray Serve, against real local Ray clusters that the tests start and stop by
their own process groups: deploy, ask, batching, a replica killed mid-request, timeouts,
missing deployments, evals over the cluster, undeploy; and the one-line errors without Ray
or without a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sensorium import LLMSettings, Settings
from sensorium.agent import Agent
from sensorium.evals import load_suite, run_suite
from sensorium.evals.runner import RECORDS_FILE, config_digest
from sensorium.tools import Registry

pytest.importorskip("ray.serve")

from sensorium.tools.ray_cluster import (
    LocalCluster,
    connect,
    read_local,
    start_local,
    stop_local,
)
from sensorium.tools.ray_experts import RayExperts

REPO = Path(__file__).resolve().parents[1]
SENSORIUM = Path(sys.executable).with_name("sensorium")
TOOLS = ["classify", "colours"]  # two light lite experts: the cluster fits two cores


def ray_settings(data_dir: Path, cache_dir: Path, address: str, **batching: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        cache_dir=cache_dir,
        tools=TOOLS,
        llm=LLMSettings(backend="none"),
        experts={"backend": "ray", "address": address, "num_cpus": 0.5, "local": []},
        batching=batching or {"max_batch": 16, "max_wait_ms": 5},
    )


def in_process(settings: Settings) -> Settings:
    """The same settings with the experts in this process."""
    experts = settings.experts.model_copy(update={"backend": "local"})
    return settings.model_copy(update={"experts": experts})


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def replica_actors(deployment: str) -> list[dict[str, str]]:
    import ray

    return [
        actor
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if "SERVE_REPLICA" in actor["name"] and f"#{deployment}#" in actor["name"]
    ]


# --- the command line, end to end, on a cluster `experts up` starts --------------------------


def test_experts_up_ask_status_down_from_the_command_line(
    tmp_path: Path, shared_cache: Path, chelsea: Path
) -> None:
    env = os.environ | {
        "SENSORIUM_DATA_DIR": str(tmp_path / "data"),
        "SENSORIUM_CACHE_DIR": str(shared_cache),
        "SENSORIUM_TOOLS": json.dumps(TOOLS),
        "SENSORIUM_EXPERTS__NUM_CPUS": "0.5",
    }
    env.pop("RAY_ADDRESS", None)

    def sensorium(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SENSORIUM), *args], env=env | extra, capture_output=True, text=True, timeout=300
        )

    up = sensorium("experts", "up", "--json")
    cluster = read_local(tmp_path / "data")
    try:
        assert up.returncode == 0, up.stderr
        assert cluster is not None and group_alive(cluster.pid)
        # The cluster's own token, beside its record, for its owner only; the home (new and
        # empty for the whole run) gets none: a machine where Ray never ran is enough.
        token = Path(cluster.token_file)
        assert token.parent == tmp_path / "data" / "ray"
        assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) == 64
        assert not (Path.home() / ".ray").exists()
        deployed = json.loads(up.stdout)
        assert {d["expert"] for d in deployed["deployments"]} == set(TOOLS)

        status = sensorium("experts", "status", "--json")
        assert status.returncode == 0, status.stderr
        found = json.loads(status.stdout)
        assert found["profile"] == "lite" and found["address"] == cluster.address
        for item in found["deployments"]:
            assert item["status"] == "HEALTHY" and item["replicas"] == {"RUNNING": 1}
            assert item["replica"]["device"] == "cpu"

        ask = sensorium(
            "ask",
            "What animal is this?",
            "-i",
            str(chelsea),
            "--json",
            "--no-llm",
            SENSORIUM_EXPERTS__BACKEND="ray",
        )
        assert ask.returncode == 0, ask.stderr
        answer = json.loads(ask.stdout)
        assert answer["answer"] == "cat"
        assert {e["where"] for e in answer["evidence"]} == {"expert-classify"}

        down = sensorium("experts", "down")
        assert down.returncode == 0, down.stderr
        assert "Removed the experts" in down.stdout and "Stopped the local" in down.stdout
        assert not group_alive(cluster.pid)
        assert read_local(tmp_path / "data") is None
        assert not token.exists()  # the token went with the cluster
        assert not (Path.home() / ".ray").exists()
    finally:
        stop_local(tmp_path / "data")


# --- in-process tests on one cluster ----------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local cluster for this module, joined by this process; stopped by its process group."""
    data_dir = tmp_path_factory.mktemp("ray-data")
    before = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    started = start_local(data_dir, num_cpus=4)
    try:
        connect(started.target(), data_dir)
        yield started
    finally:
        import ray

        ray.shutdown()
        stop_local(data_dir)
        for name, value in before.items():  # connect() set them for this process
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        assert not group_alive(started.pid)


@pytest.fixture(scope="module")
def deployed(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory, shared_cache: Path
) -> Settings:
    from sensorium.tools import ray_app

    settings = ray_settings(tmp_path_factory.mktemp("agent"), shared_cache, cluster.address)
    ray_app.deploy(settings, TOOLS)
    return settings


def remote_experts(settings: Settings, timeout_s: float = 60.0, **options: Any) -> RayExperts:
    from sensorium.graphs import LocalExperts

    agent = Agent(settings, chat_model=None)
    local = LocalExperts(agent.context, timeout_s)
    return RayExperts(
        local,
        agent.images,
        timeout_s=timeout_s,
        address=settings.experts.address,
        data_dir=settings.data_dir,
        **options,
    )


def test_an_agent_answers_with_the_deployed_experts(deployed: Settings, chelsea: Path) -> None:
    remote = Agent(deployed, chat_model=None).ask("What animal is this?", [chelsea])
    local = Agent(in_process(deployed), chat_model=None).ask("What animal is this?", [chelsea])
    assert remote.answer == local.answer == "cat"
    by_expert = {e.expert: e for e in remote.evidence}
    assert by_expert["classify"].where == "expert-classify"
    assert by_expert["classify"].ok and by_expert["classify"].call_id
    # The same Evidence contract: what ran remotely is what runs here.
    here = {e.expert: e for e in local.evidence}["classify"]
    assert by_expert["classify"].answer == here.answer
    assert by_expert["classify"].confidence == pytest.approx(here.confidence, abs=1e-5)
    # Scores agree to float rounding (the replica runs torch on another thread count).
    assert by_expert["classify"].payload.keys() == here.payload.keys()
    assert by_expert["classify"].payload["labels"] == here.payload["labels"]


def test_the_server_calls_the_deployed_experts(deployed: Settings, chelsea: Path) -> None:
    import base64

    from fastapi.testclient import TestClient

    from sensorium.server import create_app

    client = TestClient(create_app(Agent(deployed, chat_model=None)))
    image = "data:image/jpeg;base64," + base64.b64encode(chelsea.read_bytes()).decode()
    turn = client.post("/api/turns", json={"question": "What animal is this?", "images": [image]})
    assert turn.status_code == 200, turn.text
    assert turn.json()["answer"] == "cat"
    assert {e["where"] for e in turn.json()["evidence"]} == {"expert-classify"}


def test_concurrent_calls_share_serve_batches(deployed: Settings, chelsea: Path) -> None:
    from sensorium.tools import ray_app

    experts = remote_experts(deployed)
    tool = Registry.discover(TOOLS).get("classify")
    image = experts.images.add(chelsea)
    with ThreadPoolExecutor(12) as pool:
        found = list(pool.map(lambda _: experts(tool, {"image": image}), range(12)))
    assert all(e.ok and e.answer == "cat" for e in found), [e.error for e in found]
    status = ray_app.describe()
    assert status is not None
    classify = next(d for d in status["deployments"] if d["expert"] == "classify")
    batches = classify["replica"]["serve_batches"]
    assert batches["calls"] > batches["batches"]  # Serve grouped concurrent calls


def test_status_lists_deployments_replicas_and_devices(deployed: Settings) -> None:
    from sensorium.tools import ray_app

    status = ray_app.describe()
    assert status is not None and status["profile"] == "lite"
    assert {d["deployment"] for d in status["deployments"]} == {
        "expert-classify",
        "expert-colours",
    }
    for item in status["deployments"]:
        assert item["replicas"] == {"RUNNING": 1}
        assert item["replica"]["device"] == "cpu" and item["replica"]["pid"] > 0


def test_another_cluster_needs_its_token_in_the_settings(
    deployed: Settings, cluster: LocalCluster, tmp_path: Path
) -> None:
    """From a data folder with no record of the cluster, as on another machine: no token, or a
    wrong one, is one line saying what to set; `experts.auth_token_file` joins it."""
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not the cluster's token")
    empty = tmp_path / "empty-token"
    empty.write_text("\n")

    def status(**extra: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env |= {"SENSORIUM_DATA_DIR": str(tmp_path / "elsewhere")} | extra
        return subprocess.run(
            [str(SENSORIUM), "experts", "status", "--address", cluster.address, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for extra, says in (
        ({}, "needs a token"),
        ({"SENSORIUM_EXPERTS__AUTH_TOKEN_FILE": str(wrong)}, "refused the token"),
        ({"RAY_AUTH_TOKEN": "not the cluster's token"}, "refused the token"),
        ({"SENSORIUM_EXPERTS__AUTH_TOKEN_FILE": str(tmp_path / "missing")}, "cannot read"),
        ({"SENSORIUM_EXPERTS__AUTH_TOKEN_FILE": str(empty)}, "is empty"),
    ):
        refused = status(**extra)
        assert refused.returncode == 1, refused.stdout
        # Said by the token check before ray.init (whose retries end in "cannot reach").
        assert says in refused.stderr, refused.stderr
        assert "SENSORIUM_EXPERTS__AUTH_TOKEN_FILE" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    joined = status(SENSORIUM_EXPERTS__AUTH_TOKEN_FILE=cluster.token_file)
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["address"] == cluster.address


def test_an_expert_not_deployed_is_evidence_naming_it(deployed: Settings, chelsea: Path) -> None:
    experts = remote_experts(deployed)
    caption = Registry.discover(["caption"]).get("caption")
    evidence = experts(caption, {"image": experts.images.add(chelsea)})
    assert evidence.error is not None and "not deployed" in evidence.error
    assert evidence.where == "expert-caption" and "\n" not in evidence.error
    # One missing expert does not hold the others back.
    classify = Registry.discover(TOOLS).get("classify")
    assert experts(classify, {"image": experts.images.add(chelsea)}).ok


def test_experts_named_local_run_in_process(deployed: Settings, red_image: Path) -> None:
    experts = remote_experts(deployed, local_tools=["colours"])
    colours = Registry.discover(["colours"]).get("colours")
    evidence = experts(colours, {"image": experts.images.add(red_image)})
    assert evidence.ok and evidence.answer and "red" in evidence.answer
    assert evidence.where == "local"


def test_evals_spread_over_the_cluster_and_resume_exactly(
    deployed: Settings, tmp_path: Path
) -> None:
    suite = load_suite(REPO / "examples" / "suite" / "example.yaml")
    runs = tmp_path / "runs"
    on_ray = run_suite(suite, deployed, out=runs, limit=4, workers=4, chat_model=None)
    assert on_ray.computed == 4 and on_ray.results.errors == 0
    local = in_process(deployed)
    assert config_digest(local) == config_digest(deployed)  # where experts run changes nothing
    rest = run_suite(suite, local, out=runs, workers=2, chat_model=None)
    assert rest.run_dir == on_ray.run_dir
    assert (rest.reused, rest.computed) == (4, len(suite.rows) - 4)
    lines = (rest.run_dir / RECORDS_FILE).read_text().splitlines()
    assert len(lines) == len(suite.rows)  # no sample computed twice


def test_a_replica_killed_mid_request_still_completes_the_turn(
    cluster: LocalCluster, tmp_path: Path, shared_cache: Path, chelsea: Path
) -> None:
    import ray

    from sensorium.tools import ray_app

    # A batch waits up to a second for company: time enough to kill its replica mid-request.
    slow = ray_settings(tmp_path / "data", shared_cache, cluster.address, max_wait_ms=1000)
    ray_app.deploy(slow, TOOLS)
    agent = Agent(slow, chat_model=None)
    agent.ask("What animal is this?", [chelsea])  # warm: models loaded on both sides
    [victim] = replica_actors("expert-classify")
    result: dict[str, Any] = {}
    turn = threading.Thread(
        target=lambda: result.update(turn=agent.ask("What animal is this?", [chelsea]))
    )
    turn.start()
    time.sleep(0.5)
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=False)
    turn.join(timeout=120)
    assert not turn.is_alive()
    classify = {e.expert: e for e in result["turn"].evidence}["classify"]
    # Sent again to the replica Serve started in its place, within the time limit.
    assert classify.ok and classify.answer == "cat", classify.error
    assert classify.where == "expert-classify"
    assert replica_actors("expert-classify") != [victim]

    # A call longer than the limit is Evidence with a one-line error; the turn goes on.
    experts = remote_experts(slow, timeout_s=0.3)
    evidence = experts(
        Registry.discover(TOOLS).get("classify"), {"image": agent.images.add(chelsea)}
    )
    assert evidence.error is not None and "timed out after 0.3 s" in evidence.error


def test_undeploy_removes_the_application(deployed: Settings, chelsea: Path) -> None:
    from sensorium.tools import ray_app

    assert ray_app.undeploy() is True
    assert ray_app.describe() is None
    assert ray_app.undeploy() is False
    experts = remote_experts(deployed)
    classify = Registry.discover(TOOLS).get("classify")
    evidence = experts(classify, {"image": experts.images.add(chelsea)})
    assert evidence.error is not None and "not deployed" in evidence.error


# --- without a cluster, without Ray -------------------------------------------------------------


def test_no_cluster_is_a_one_line_error_in_the_evidence(
    settings: Settings, chelsea: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    no_cluster = settings.model_copy(
        update={"tools": TOOLS, "experts": settings.experts.model_copy(update={"backend": "ray"})}
    )
    result = Agent(no_cluster, chat_model=None).ask("What animal is this?", [chelsea])
    [classify] = [e for e in result.evidence if e.expert == "classify"]
    assert classify.error is not None and "sensorium experts up" in classify.error
    assert classify.where == "expert-classify"
    assert result.reply  # the turn completed


def test_a_dead_cluster_address_fails_fast(settings: Settings, chelsea: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = settings.model_copy(
        update={
            "tools": TOOLS,
            "experts": settings.experts.model_copy(
                update={"backend": "ray", "address": f"127.0.0.1:{port}"}
            ),
        }
    )
    started = time.monotonic()
    result = Agent(dead, chat_model=None).ask("What animal is this?", [chelsea])
    assert time.monotonic() - started < 30
    [classify] = [e for e in result.evidence if e.expert == "classify"]
    assert classify.error is not None and "no Ray cluster answers" in classify.error


def test_experts_up_without_ray_says_what_to_install(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    result = cli("experts", "up")
    assert result.code == 1
    assert "pip install 'sensorium[ray]'" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_experts_commands_without_a_cluster_say_so(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    status = cli("experts", "status")
    assert status.code == 1 and "sensorium experts up" in status.err
    assert len(status.err.strip().splitlines()) == 1
    down = cli("experts", "down")
    assert down.code == 0 and "nothing to remove" in down.out
    monkeypatch.setenv("SENSORIUM_TOOLS", '["colours"]')
    monkeypatch.setenv("SENSORIUM_EXPERTS__LOCAL", '["colours"]')
    up = cli("experts", "up")
    assert up.code == 1 and "every enabled expert is in experts.local" in up.err


def test_deployments_are_sized_from_the_settings() -> None:
    from ray import serve

    from sensorium.tools.ray_app import ExpertReplica, deployment_options

    settings = Settings(
        experts={
            "num_gpus": 0.25,
            "deployments": {"vlm_answer": {"replicas": 2, "max_replicas": 6, "num_gpus": 1}},
        },
        batching={"max_batch": 32},
    )
    fixed = deployment_options(settings, "classify")
    assert fixed["num_replicas"] == 1 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.25}
    assert fixed["max_ongoing_requests"] == 64
    scaled = deployment_options(settings, "vlm_answer")
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {
        "min_replicas": 2,
        "max_replicas": 6,
        "target_ongoing_requests": 2.0,
    }
    assert scaled["ray_actor_options"]["num_gpus"] == 1
    for options in (fixed, scaled):  # Serve itself accepts them
        assert isinstance(ExpertReplica.options(**options), serve.Deployment)


def test_sizing_overrides_are_checked_by_name() -> None:
    sized = Settings(experts={"num_gpus": 0.25, "deployments": {"vlm_answer": {"replicas": 2}}})
    assert sized.experts.replica("vlm_answer").replicas == 2
    assert sized.experts.replica("vlm_answer").num_gpus == 0.25
    assert sized.experts.replica("classify").replicas == 1
    with pytest.raises(ValueError, match=r"experts\.deployments\.vlm_answer\.replicas"):
        Settings(experts={"deployments": {"vlm_answer": {"replicas": 0}}})
    with pytest.raises(ValueError, match="max_replicas"):
        Settings(experts={"replicas": 3, "max_replicas": 2})
