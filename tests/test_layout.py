"""The package layout: components install under `sensorium`, never as top-level modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sensorium


@pytest.mark.parametrize("name", ["agent", "tools", "graphs", "evals"])
def test_components_are_not_top_level_modules(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert f"No module named '{name}'" in result.stderr


def test_components_are_subpackages_of_sensorium(tmp_path: Path) -> None:
    code = (
        "import sensorium.agent, sensorium.tools, sensorium.graphs, sensorium.evals;"
        "print(sensorium.tools.Evidence.__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "sensorium.tools.evidence"


def test_the_package_is_typed() -> None:
    assert (Path(sensorium.__file__).parent / "py.typed").is_file()


def test_the_public_api_is_explicit() -> None:
    for name in sensorium.__all__:
        assert getattr(sensorium, name) is not None
    assert {"Agent", "build_graph", "expert", "Evidence", "Settings"} <= set(sensorium.__all__)
