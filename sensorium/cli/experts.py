"""`sensorium experts up | status | down`: the experts as a Ray Serve application."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sensorium.cli.app import ConfigOption, DebugOption, Options, app, err, out

if TYPE_CHECKING:
    from sensorium.agent import Settings
    from sensorium.tools.ray_cluster import ClusterTarget

experts_app = typer.Typer(
    help="Run the experts on a Ray cluster, as a Ray Serve application.", no_args_is_help=True
)
app.add_typer(experts_app, name="experts")

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray cluster (host:port or ray://host:10001); default: experts.address, "
        "else a local cluster started here.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the status as JSON.")]


@experts_app.command("up")
def up(
    address: AddressOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Deploy the active profile's experts on a Ray cluster (a local one by default)."""
    from sensorium.tools import Registry, UserError
    from sensorium.tools.ray_cluster import (
        connect,
        find_cluster,
        read_local,
        require_ray,
        start_local,
    )

    settings = _settings(config)
    require_ray()  # one line saying what to install, before anything starts
    sizing = settings.experts
    remote = [
        tool.name
        for tool in Registry.discover(settings.tools, settings.profile)
        if tool.name not in sizing.local
    ]
    if not remote:
        raise UserError("no experts to deploy: every enabled expert is in experts.local")
    address = address or sizing.address
    local = None
    cluster: ClusterTarget
    if address is None:
        local = read_local(settings.data_dir)
        if local is None:
            sizes = [sizing.replica(expert) for expert in remote]
            cpus = sum((size.max_replicas or size.replicas) * size.num_cpus for size in sizes)
            with err.status("Starting a local Ray cluster"):
                local = start_local(settings.data_dir, cpus)
            err.print(f"Started a local Ray cluster at {local.address}", highlight=False)
        cluster = local.target()
    else:
        cluster = find_cluster(address, sizing.auth_token_file, settings.data_dir)
    connect(cluster, settings.data_dir)
    from sensorium.tools import ray_app

    with err.status(f"Deploying {len(remote)} experts (each replica loads its models)"):
        ray_app.deploy(settings, remote)
    _show(ray_app.describe(), as_json)
    if not as_json:
        err.print(
            'Agents use them with [experts] backend = "ray" (or SENSORIUM_EXPERTS__BACKEND=ray)'
            + ("" if local else f' and address = "{cluster.address}"'),
            highlight=False,
            markup=False,
        )


@experts_app.command("status")
def status(
    address: AddressOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Show the deployed experts: status, replicas and where they run."""
    from sensorium.tools import UserError
    from sensorium.tools.ray_cluster import connect, require_ray

    settings = _settings(config)
    require_ray()
    cluster = _cluster(settings, address)
    connect(cluster, settings.data_dir)
    from sensorium.tools import ray_app

    found = ray_app.describe()
    if found is None:
        raise UserError(f"no experts are deployed on {cluster.address}; run `sensorium experts up`")
    _show(found | {"address": cluster.address}, as_json)


@experts_app.command("down")
def down(
    address: AddressOption = None,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove the experts' application; stop the local cluster if `experts up` started it."""
    from sensorium.tools import UserError
    from sensorium.tools.ray_cluster import connect, read_local, require_ray, stop_local

    settings = _settings(config)
    require_ray()
    local = read_local(settings.data_dir)
    try:
        cluster = _cluster(settings, address)
    except UserError:
        out.print("No Ray cluster is running for the experts; nothing to remove.")
        return
    connect(cluster, settings.data_dir)
    from sensorium.tools import ray_app

    where = cluster.address
    removed = ray_app.undeploy()
    out.print(f"Removed the experts from {where}." if removed else f"No experts on {where}.")
    if local is not None and local.address == where:
        import ray

        ray.shutdown()  # leave the cluster before stopping it
        with err.status("Stopping the local Ray cluster"):
            stop_local(settings.data_dir)
        out.print("Stopped the local Ray cluster `experts up` started.")


def _cluster(settings: Settings, address: str | None) -> ClusterTarget:
    from sensorium.tools.ray_cluster import find_cluster

    experts = settings.experts
    return find_cluster(address or experts.address, experts.auth_token_file, settings.data_dir)


def _settings(config: Any) -> Settings:
    from sensorium.config import load_settings

    return load_settings(config or Options.config)


def _show(found: dict[str, Any] | None, as_json: bool) -> None:
    if found is None:
        out.print("No experts are deployed.")
        return
    if as_json:
        typer.echo(json.dumps(found))
        return
    table = Table(
        title=f"{found['application']} ({found['status']}, profile {found['profile']})",
        title_justify="left",
    )
    for column in ("expert", "deployment", "status", "replicas", "device", "node"):
        table.add_column(column)
    for item in found["deployments"]:
        replica = item["replica"]
        replicas = ", ".join(f"{n} {state.lower()}" for state, n in item["replicas"].items())
        table.add_row(
            item["expert"],
            item["deployment"],
            item["status"],
            replicas or "-",
            replica.get("device", replica.get("error", "?")),
            replica.get("node", "-"),
        )
    out.print(table)
