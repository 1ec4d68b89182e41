"""The state graph: turn state and reducers, decision-level fusion, the graph builder, and
checkpointing. It knows tools, not LLMs: planner and responder are passed in.
"""

from typing import TYPE_CHECKING

from sensorium._lazy import lazy_exports

if TYPE_CHECKING:
    from sensorium.graphs.builder import (
        DEFAULT_MAX_STEPS,
        ExpertBackend,
        ExpertRunner,
        LocalExperts,
        compile_graph,
    )
    from sensorium.graphs.calls import (
        check_call,
        expert_calls,
        new_call_id,
        plain_arguments,
        with_image_refs,
    )
    from sensorium.graphs.checkpoint import memory_checkpointer, sqlite_checkpointer
    from sensorium.graphs.fusion import (
        Decision,
        FittedWeights,
        FusionSettings,
        Vote,
        fuse,
        fuse_by_image,
        read_weights_file,
    )
    from sensorium.graphs.memory import ImageMemory
    from sensorium.graphs.normalize import normalise_answer
    from sensorium.graphs.state import (
        CallSource,
        ExpertTask,
        Plan,
        Planner,
        PlannerReply,
        Reply,
        ResetEvidence,
        Responder,
        ToolCall,
        TurnState,
        TurnView,
        merge_evidence,
    )
else:  # run time: each name is imported on first use (see sensorium._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "sensorium.graphs.builder": (
                "DEFAULT_MAX_STEPS",
                "ExpertBackend",
                "ExpertBackend",
                "ExpertRunner",
                "LocalExperts",
                "compile_graph",
            ),
            "sensorium.graphs.calls": (
                "check_call",
                "expert_calls",
                "new_call_id",
                "plain_arguments",
                "with_image_refs",
            ),
            "sensorium.graphs.checkpoint": ("memory_checkpointer", "sqlite_checkpointer"),
            "sensorium.graphs.fusion": (
                "Decision",
                "FittedWeights",
                "FusionSettings",
                "Vote",
                "fuse",
                "fuse_by_image",
                "read_weights_file",
            ),
            "sensorium.graphs.memory": ("ImageMemory",),
            "sensorium.graphs.normalize": ("normalise_answer",),
            "sensorium.graphs.state": (
                "CallSource",
                "ExpertTask",
                "Plan",
                "Planner",
                "PlannerReply",
                "ResetEvidence",
                "Reply",
                "Responder",
                "ToolCall",
                "TurnState",
                "TurnView",
                "merge_evidence",
            ),
        },
    )

__all__ = [
    "DEFAULT_MAX_STEPS",
    "CallSource",
    "Decision",
    "ExpertBackend",
    "ExpertRunner",
    "ExpertTask",
    "FittedWeights",
    "FusionSettings",
    "ImageMemory",
    "LocalExperts",
    "Plan",
    "Planner",
    "PlannerReply",
    "Reply",
    "ResetEvidence",
    "Responder",
    "ToolCall",
    "TurnState",
    "TurnView",
    "Vote",
    "check_call",
    "compile_graph",
    "expert_calls",
    "fuse",
    "fuse_by_image",
    "memory_checkpointer",
    "merge_evidence",
    "new_call_id",
    "normalise_answer",
    "plain_arguments",
    "read_weights_file",
    "sqlite_checkpointer",
    "with_image_refs",
]
