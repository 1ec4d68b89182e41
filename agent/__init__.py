"""The conversation: the Agent facade, settings, LLM backends, router, planner and replies."""

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
