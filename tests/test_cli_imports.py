"""What the CLI imports: commands that run no model must not load the heavy libraries, and the
packages' lazy exports must still give users every public name."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

# Seconds to import each; none is needed to print help or to list the experts.
HEAVY = (
    "torch",
    "transformers",
    "langgraph",
    "langchain_core",
    "chromadb",
    "sentence_transformers",
)
# Runs a CLI command in a fresh interpreter, then reports which modules it had loaded.
PROBE = """
import contextlib, io, json, sys
from sensorium.cli import main
sys.argv = ["sensorium", *sys.argv[1:]]
output = io.StringIO()
with contextlib.redirect_stdout(output):
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
print(json.dumps({"code": code, "output": output.getvalue(), "modules": sorted(sys.modules)}))
"""


def probe(tmp_path: Path, *args: str) -> tuple[str, set[str]]:
    """The command's output and the top-level packages it loaded."""
    # cwd: not the checkout, whose sensorium/ folder would shadow the installed package.
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["code"] == 0, done.stderr
    return result["output"], {name.split(".")[0] for name in result["modules"]}


def test_help_loads_no_model_library(tmp_path: Path) -> None:
    output, loaded = probe(tmp_path, "--help")
    assert "tools" in output and "ask" in output
    assert loaded.isdisjoint((*HEAVY, "numpy", "PIL")), sorted(loaded & {*HEAVY, "numpy", "PIL"})


def test_tools_list_loads_no_model_library(tmp_path: Path) -> None:
    output, loaded = probe(tmp_path, "tools", "list", "--json")
    assert {"classify", "caption", "answer_question"} <= {t["name"] for t in json.loads(output)}
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.parametrize(
    "package",
    ["sensorium", "sensorium.agent", "sensorium.tools", "sensorium.graphs", "sensorium.evals"],
)
def test_every_public_name_is_exported(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))


def test_an_unknown_name_is_an_attribute_error() -> None:
    module = importlib.import_module("sensorium.tools")
    with pytest.raises(AttributeError, match=r"module 'sensorium\.tools' has no attribute 'Nope'"):
        _ = module.Nope
    with pytest.raises(ImportError, match="cannot import name 'Nope' from 'sensorium'"):
        from sensorium import Nope  # type: ignore[attr-defined]  # noqa: F401
