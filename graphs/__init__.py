"""The state graph: turn state and reducers, decision-level fusion, the graph builder, and
checkpointing. It knows tools, not LLMs: planner and responder are passed in.
"""

from typing import TYPE_CHECKING

from sensorium._lazy import lazy_exports

if TYPE_CHECKING:
    from sensorium.graphs.builder import ExpertRunner, compile_graph
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
    from sensorium.graphs.normalize import normalise_answer
    from sensorium.graphs.state import (
        ExpertTask,
        FollowUp,
        ImageMemory,
        Plan,
        Planner,
        ResetEvidence,
        Responder,
        ToolCall,
        TurnState,
        image_at,
        merge_evidence,
    )
else:  # run time: each name is imported on first use (see sensorium._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "sensorium.graphs.builder": ("ExpertRunner", "compile_graph"),
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
            "sensorium.graphs.normalize": ("normalise_answer",),
            "sensorium.graphs.state": (
                "ExpertTask",
                "FollowUp",
                "ImageMemory",
                "Plan",
                "Planner",
                "ResetEvidence",
                "Responder",
                "ToolCall",
                "TurnState",
                "image_at",
                "merge_evidence",
            ),
        },
    )

__all__ = [
    "Decision",
    "ExpertRunner",
    "ExpertTask",
    "FittedWeights",
    "FollowUp",
    "FusionSettings",
    "ImageMemory",
    "Plan",
    "Planner",
    "ResetEvidence",
    "Responder",
    "ToolCall",
    "TurnState",
    "Vote",
    "compile_graph",
    "fuse",
    "fuse_by_image",
    "image_at",
    "memory_checkpointer",
    "merge_evidence",
    "normalise_answer",
    "read_weights_file",
    "sqlite_checkpointer",
]
