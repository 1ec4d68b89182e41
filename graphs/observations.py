"""What the planner reads after a step: one `ToolMessage` per call, in plain words.

Each says what the expert answered and how sure it was, the fused decision for that image
and who agreed, or the error; a search lists its hits as image numbers the planner can pass
on. The evidence itself stays in the state; messages carry text only (no pixels, no vectors).
"""

from __future__ import annotations

from langchain_core.messages import ToolMessage

from sensorium.graphs.fusion import Decision
from sensorium.graphs.memory import ImageMemory
from sensorium.graphs.state import ToolCall
from sensorium.tools import Evidence, ImageRef


def observation(
    call: ToolCall, evidence: Evidence | None, decisions: list[Decision], memory: ImageMemory
) -> ToolMessage:
    """The result of one call, as the planner sees it."""
    return ToolMessage(
        content=_text(call, evidence, decisions, memory),
        tool_call_id=call.id,
        name=call.tool,
        status="error" if call.error or (evidence is not None and evidence.error) else "success",
    )


def decision_text(decision: Decision, memory: ImageMemory) -> str:
    """'cat (92% confidence, agreement 100%; from classify, answer_question)'."""
    experts = ", ".join(sorted({v.expert for v in decision.votes if v.supports_answer}))
    if decision.abstained:
        if decision.best_guess:
            return f"not sure; best guess {decision.best_guess} ({decision.confidence:.0%})"
        return f"no answer ({decision.reason})"
    return (
        f"{decision.answer} ({decision.confidence:.0%} confidence, agreement "
        f"{decision.agreement:.0%}; from {experts})"
    )


def _text(
    call: ToolCall, evidence: Evidence | None, decisions: list[Decision], memory: ImageMemory
) -> str:
    if call.error:
        return f"Error: {call.error}. Correct the call, or answer without it."
    if evidence is None:
        return "Error: the expert returned nothing."
    if evidence.error:
        return f"Error from {call.tool}: {evidence.error}"
    image = _image_of(evidence, memory)
    about = f" on {memory.label(image)}" if image else ""
    hits = evidence.payload.get("hits")
    if isinstance(hits, list):
        return _hits_text(call, hits, memory)
    if evidence.answer is None:
        return f"{call.tool}{about}: no opinion."
    text = f"{call.tool}{about}: {evidence.answer} (confidence {evidence.confidence:.2f})."
    for decision in decisions:
        voters = {vote.expert for vote in decision.votes}
        if decision.image == evidence.image and call.tool in voters and len(voters) > 1:
            text += f" Fused decision: {decision_text(decision, memory)}."
    return text


def _hits_text(call: ToolCall, hits: list[object], memory: ImageMemory) -> str:
    if not hits:
        return f"{call.tool}: no matching images."
    listed = []
    for number, hit in enumerate(hits, start=1):
        if isinstance(hit, dict) and "image" in hit:
            ref = ImageRef.model_validate(hit["image"])
            score = float(hit.get("score", 0.0))
            listed.append(f"hit {number}: {memory.label(ref)}, score {score:.2f}")
    return f"{call.tool}: {len(listed)} images, best first: " + "; ".join(listed) + "."


def _image_of(evidence: Evidence, memory: ImageMemory) -> ImageRef | None:
    for image in memory.gallery:
        if image.sha256 == evidence.image:
            return image
    return None
