"""The state graph: turn state and reducers, decision-level fusion, the graph builder, and
checkpointing. It knows tools, not LLMs: planner and responder are passed in.
"""

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
