"""The conversation: the Agent facade, settings, LLM backends, router, planner and replies."""

from typing import TYPE_CHECKING

from sensorium._lazy import lazy_exports

if TYPE_CHECKING:
    from sensorium.agent.agent import Agent, TurnResult, build_graph, check_question
    from sensorium.agent.llm import load_chat_model, smollm2_path
    from sensorium.agent.planner import AgentPlanner
    from sensorium.agent.responder import AgentResponder, template_reply
    from sensorium.agent.router import Router
    from sensorium.agent.settings import (
        BatchingSettings,
        IndexSettings,
        LLMSettings,
        PlannerSettings,
        Settings,
        default_data_dir,
    )
else:  # run time: each name is imported on first use (see sensorium._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "sensorium.agent.agent": ("Agent", "TurnResult", "build_graph", "check_question"),
            "sensorium.agent.llm": ("load_chat_model", "smollm2_path"),
            "sensorium.agent.planner": ("AgentPlanner",),
            "sensorium.agent.responder": ("AgentResponder", "template_reply"),
            "sensorium.agent.router": ("Router",),
            "sensorium.agent.settings": (
                "BatchingSettings",
                "IndexSettings",
                "LLMSettings",
                "PlannerSettings",
                "Settings",
                "default_data_dir",
            ),
        },
    )

__all__ = [
    "Agent",
    "AgentPlanner",
    "AgentResponder",
    "BatchingSettings",
    "IndexSettings",
    "LLMSettings",
    "PlannerSettings",
    "Router",
    "Settings",
    "TurnResult",
    "build_graph",
    "check_question",
    "default_data_dir",
    "load_chat_model",
    "smollm2_path",
    "template_reply",
]
