"""The conversation: the Agent facade, settings, LLM backends, router, planner and replies."""

from typing import TYPE_CHECKING

from sensorium._lazy import lazy_exports

if TYPE_CHECKING:
    from sensorium.agent.agent import Agent, build_graph, check_question
    from sensorium.agent.events import (
        DecisionEvent,
        EvidenceEvent,
        ReplyEvent,
        TokenEvent,
        ToolCallEvent,
        TurnEvent,
        TurnResult,
    )
    from sensorium.agent.llm import load_chat_model, smollm2_path
    from sensorium.agent.planner import ChatPlanner, can_call_tools, tool_definition
    from sensorium.agent.responder import AgentResponder, template_reply
    from sensorium.agent.router import LIMITS, Router
    from sensorium.agent.router_model import RouterChatModel
    from sensorium.agent.settings import (
        BatchingSettings,
        ExpertsSettings,
        IndexSettings,
        LLMSettings,
        PlannerSettings,
        ReplicaSettings,
        ServerSettings,
        Settings,
        TracingSettings,
        default_data_dir,
    )
else:  # run time: each name is imported on first use (see sensorium._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "sensorium.agent.agent": ("Agent", "build_graph", "check_question"),
            "sensorium.agent.events": (
                "DecisionEvent",
                "EvidenceEvent",
                "ReplyEvent",
                "TokenEvent",
                "ToolCallEvent",
                "TurnEvent",
                "TurnResult",
            ),
            "sensorium.agent.llm": ("load_chat_model", "smollm2_path"),
            "sensorium.agent.planner": ("ChatPlanner", "can_call_tools", "tool_definition"),
            "sensorium.agent.responder": ("AgentResponder", "template_reply"),
            "sensorium.agent.router": ("LIMITS", "Router"),
            "sensorium.agent.router_model": ("RouterChatModel",),
            "sensorium.agent.settings": (
                "BatchingSettings",
                "ExpertsSettings",
                "IndexSettings",
                "LLMSettings",
                "PlannerSettings",
                "ReplicaSettings",
                "ServerSettings",
                "Settings",
                "TracingSettings",
                "default_data_dir",
            ),
        },
    )

__all__ = [
    "LIMITS",
    "Agent",
    "AgentResponder",
    "BatchingSettings",
    "ChatPlanner",
    "DecisionEvent",
    "EvidenceEvent",
    "ExpertsSettings",
    "IndexSettings",
    "LLMSettings",
    "PlannerSettings",
    "ReplicaSettings",
    "ReplyEvent",
    "Router",
    "RouterChatModel",
    "ServerSettings",
    "Settings",
    "TokenEvent",
    "ToolCallEvent",
    "TracingSettings",
    "TurnEvent",
    "TurnResult",
    "build_graph",
    "can_call_tools",
    "check_question",
    "default_data_dir",
    "load_chat_model",
    "smollm2_path",
    "template_reply",
    "tool_definition",
]
