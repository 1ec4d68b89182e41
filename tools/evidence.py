"""The data an expert works on and returns: image references and evidence."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ImageRef(BaseModel):
    """A reference to an image held once in the content-addressed image store.

    State and checkpoints carry this, never pixels: base64 images in checkpoints grow a
    thread's SQLite file without bound.
    """

    model_config = ConfigDict(frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the original file bytes")
    name: str = Field("", description="where the image came from, for display (file name)")
    width: int = Field(0, ge=0)
    height: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_sha256(cls, data: Any) -> Any:
        # A bare sha256 string is a reference too: what an LLM calling a tool can pass.
        return {"sha256": data} if isinstance(data, str) else data

    @property
    def short(self) -> str:
        """A short id for display."""
        return self.sha256[:12]


class Evidence(BaseModel):
    """What one expert said about one request.

    `confidence` comes from the model's own probabilities (never a constant), so fusion can
    weigh experts against each other. An expert that failed has `error` set and no answer.
    """

    expert: str = Field("", description="name of the expert that produced this")
    answer: str | None = Field(None, description="the expert's answer, in words")
    payload: dict[str, Any] = Field(default_factory=dict, description="structured output")
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    latency_ms: float = Field(0.0, ge=0.0)
    error: str | None = None
    image: str | None = Field(None, description="sha256 of the image this is about, if any")
    call_id: str | None = Field(None, description="the planner's tool call this answers, if any")
    where: str = Field(
        "local",
        description="where the expert ran: 'local' (the agent's process) or the name of the "
        "Ray Serve deployment that ran it",
    )

    @property
    def ok(self) -> bool:
        """True when the expert produced an answer without error."""
        return self.error is None and self.answer is not None


def yes_no_evidence(p_yes: float, payload: dict[str, Any]) -> Evidence:
    """A yes/no answer from the probability of "yes", with the winning side's probability as
    its confidence (experts turn a negated question's probability around beforehand)."""
    answer = "yes" if p_yes >= 0.5 else "no"
    confidence = p_yes if answer == "yes" else 1 - p_yes
    return Evidence(answer=answer, confidence=min(1.0, max(0.0, confidence)), payload=payload)
