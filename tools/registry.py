"""Finding experts: every tool, built-in or third-party, comes from the `sensorium.tools`
entry-point group, so a plugin package adds an expert by declaring one entry point. The
standard profile's transformers experts come from `sensorium.tools.standard`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points

from sensorium.tools.base import Tool, _one_line
from sensorium.tools.errors import ToolDefinitionError, UserError
from sensorium.tools.profiles import ENTRY_POINT_GROUPS, REPLACED_IN_STANDARD

ENTRY_POINT_GROUP = "sensorium.tools"


def discover_tools(group: str = ENTRY_POINT_GROUP) -> list[Tool]:
    """Load every tool registered under an entry-point group (default `sensorium.tools`)."""
    tools: list[Tool] = []
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        where = f"entry point {point.name!r} = {point.value!r} (group {group})"
        try:
            loaded = point.load()
        except ToolDefinitionError:
            raise
        except Exception as exc:
            raise ToolDefinitionError(f"{where} failed to import: {_one_line(exc)}") from None
        if not isinstance(loaded, Tool):
            raise ToolDefinitionError(
                f"{where} is a {type(loaded).__name__}, not a Tool; decorate it with @expert"
            )
        tools.append(loaded)
    return tools


class Registry:
    """The tools an agent may use, by name."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    @classmethod
    def discover(cls, enabled: Iterable[str] | None = None, profile: str = "lite") -> Registry:
        """The installed tools of a profile, or only those named in `enabled` (which may name
        any installed expert, whatever the profile)."""
        groups = ENTRY_POINT_GROUPS[profile] if enabled is None else ENTRY_POINT_GROUPS["standard"]
        registry = cls(tool for group in groups for tool in discover_tools(group))
        if enabled is None:
            if profile == "standard":
                return cls(t for t in registry if t.name not in REPLACED_IN_STANDARD)
            return registry
        wanted = list(enabled)
        for name in wanted:
            registry.get(name)  # an unknown name is a configuration error
        return cls(registry.get(name) for name in wanted)

    def add(self, tool: Tool) -> None:
        """Register a tool; two tools may not share a name."""
        existing = self._tools.get(tool.name)
        if existing is not None and existing is not tool:
            raise ToolDefinitionError(
                f"two tools are named {tool.name!r}: {existing.qualname} and {tool.qualname}; "
                "rename one with @expert(name=...)"
            )
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        """The tool called `name`; raises `UserError` listing the known names."""
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "none"
            raise UserError(f"no tool named {name!r}; installed tools: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        """Tool names in registration order."""
        return list(self._tools)
