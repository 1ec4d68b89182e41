"""Modality experts: the `Tool` declaration, the registry, the model host, the image store,
and the built-in experts (registered through the `sensorium.tools` entry-point group).
"""

from typing import TYPE_CHECKING

from sensorium._lazy import lazy_exports

if TYPE_CHECKING:
    from sensorium.tools.base import Tool, ToolContext, expert
    from sensorium.tools.errors import (
        ImageInputError,
        ModelUnavailableError,
        SensoriumError,
        ToolDefinitionError,
        ToolInputError,
        UserError,
    )
    from sensorium.tools.evidence import Evidence, ImageRef
    from sensorium.tools.host import ModelHost, default_host
    from sensorium.tools.images import ImageStore
    from sensorium.tools.registry import ENTRY_POINT_GROUP, Registry, discover_tools
else:  # run time: each name is imported on first use (see sensorium._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "sensorium.tools.base": ("Tool", "ToolContext", "expert"),
            "sensorium.tools.errors": (
                "ImageInputError",
                "ModelUnavailableError",
                "SensoriumError",
                "ToolDefinitionError",
                "ToolInputError",
                "UserError",
            ),
            "sensorium.tools.evidence": ("Evidence", "ImageRef"),
            "sensorium.tools.host": ("ModelHost", "default_host"),
            "sensorium.tools.images": ("ImageStore",),
            "sensorium.tools.registry": ("ENTRY_POINT_GROUP", "Registry", "discover_tools"),
        },
    )

__all__ = [
    "ENTRY_POINT_GROUP",
    "Evidence",
    "ImageInputError",
    "ImageRef",
    "ImageStore",
    "ModelHost",
    "ModelUnavailableError",
    "Registry",
    "SensoriumError",
    "Tool",
    "ToolContext",
    "ToolDefinitionError",
    "ToolInputError",
    "UserError",
    "default_host",
    "discover_tools",
    "expert",
]
