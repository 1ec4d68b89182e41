"""Sensorium: a multimodal agent that routes questions about images to modality experts,
runs them in parallel, fuses their answers with calibrated confidences, and shows the evidence.

    from sensorium import Agent
    agent = Agent()
    result = agent.ask("What animal is this?", ["cat.jpg"])
    print(result.reply, result.confidence)
"""

from typing import TYPE_CHECKING

from sensorium._lazy import lazy_exports

if TYPE_CHECKING:
    from sensorium.agent import (
        Agent,
        BatchingSettings,
        IndexSettings,
        LLMSettings,
        PlannerSettings,
        Settings,
        TurnEvent,
        TurnResult,
        build_graph,
    )
    from sensorium.config import load_settings
    from sensorium.graphs import Decision, FusionSettings, Plan, ToolCall, fuse, normalise_answer
    from sensorium.tools import (
        Evidence,
        ImageInputError,
        ImageRef,
        ImageStore,
        ModelUnavailableError,
        Registry,
        SensoriumError,
        Tool,
        ToolContext,
        ToolDefinitionError,
        ToolInputError,
        UserError,
        expert,
    )
else:  # run time: each name is imported on first use (see sensorium._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "sensorium.agent": (
                "Agent",
                "BatchingSettings",
                "IndexSettings",
                "LLMSettings",
                "PlannerSettings",
                "Settings",
                "TurnEvent",
                "TurnResult",
                "build_graph",
            ),
            "sensorium.config": ("load_settings",),
            "sensorium.graphs": (
                "Decision",
                "FusionSettings",
                "Plan",
                "ToolCall",
                "fuse",
                "normalise_answer",
            ),
            "sensorium.tools": (
                "Evidence",
                "ImageInputError",
                "ImageRef",
                "ImageStore",
                "ModelUnavailableError",
                "Registry",
                "SensoriumError",
                "Tool",
                "ToolContext",
                "ToolDefinitionError",
                "ToolInputError",
                "UserError",
                "expert",
            ),
        },
    )

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "BatchingSettings",
    "Decision",
    "Evidence",
    "FusionSettings",
    "ImageInputError",
    "ImageRef",
    "ImageStore",
    "IndexSettings",
    "LLMSettings",
    "ModelUnavailableError",
    "Plan",
    "PlannerSettings",
    "Registry",
    "SensoriumError",
    "Settings",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolDefinitionError",
    "ToolInputError",
    "TurnEvent",
    "TurnResult",
    "UserError",
    "__version__",
    "build_graph",
    "expert",
    "fuse",
    "load_settings",
    "normalise_answer",
]
