"""The example plugin package in examples/plugin_tool works through the real entry-point path."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sensorium import Agent, Settings
from sensorium.tools import ENTRY_POINT_GROUP, discover_tools

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin_tool"


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the example importable with the entry points its pyproject.toml declares,
    the way an installed distribution would (a dist-info folder on sys.path)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    points = project["entry-points"][ENTRY_POINT_GROUP]
    info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{k} = {v}" for k, v in points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PLUGIN))
    yield
    sys.modules.pop("sensorium_brightness", None)


def test_the_plugin_is_discovered_beside_the_built_ins(installed_plugin: None) -> None:
    names = {tool.name for tool in discover_tools()}
    assert {"brightness", "classify", "colours", "caption", "answer_question"} <= names


def test_the_router_sends_brightness_questions_to_the_plugin(
    installed_plugin: None, settings: Settings
) -> None:
    agent = Agent(settings, chat_model=None)
    dark = Image.new("RGB", (32, 32), (12, 12, 12))
    result = agent.ask("How bright is this photo?", [dark])
    assert [call.tool for call in result.plan.calls] == ["brightness"]
    assert result.answer == "dark"
    assert result.confidence > 0.9
