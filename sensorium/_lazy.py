"""Package exports that are imported on first use (PEP 562).

The packages' `__init__` modules export names whose modules pull in torch, transformers,
langchain or langgraph; importing those eagerly would cost every CLI command seconds, even
`sensorium --help`. Each package lists its exports under `if TYPE_CHECKING:` (for mypy and IDEs)
and maps them to their modules here for run time.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose `exports` map each module to the
    names it exports; a name is imported on first access and then kept on the package."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *module_of})

    return __getattr__, __dir__
