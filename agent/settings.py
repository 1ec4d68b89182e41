"""Every setting of an agent, in one typed model (loading from files lives in the face)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensorium.graphs import FusionSettings


def default_data_dir() -> Path:
    """`$SENSORIUM_DATA_DIR`, else the per-user data folder (XDG on Linux)."""
    if override := os.environ.get("SENSORIUM_DATA_DIR"):
        return Path(override).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "sensorium"


class LLMSettings(BaseModel):
    """The chat model behind the planner and the replies."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["smollm2", "none"] = Field(
        "smollm2", description="'smollm2': the local GGUF model; 'none': router and templates"
    )
    model_path: Path | None = Field(None, description="a GGUF file to use instead of SmolLM2")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(160, ge=1, le=4096)
    context_tokens: int = Field(2048, ge=256)
    seed: int = 0


class PlannerSettings(BaseModel):
    """How experts are chosen."""

    model_config = ConfigDict(extra="forbid")

    use_llm: bool = Field(True, description="ask the LLM for tool calls (vetted by the router)")
    max_tools: int = Field(3, ge=1, le=16)


class IndexSettings(BaseModel):
    """The image index (Chroma)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="a `chroma run` server, e.g. http://127.0.0.1:8000; None: embedded"
    )
    batch_size: int = Field(32, ge=1, le=1024, description="images encoded per forward pass")


class Settings(BaseModel):
    """Configuration of an agent. Build one directly, or load it with `load_settings`."""

    model_config = ConfigDict(extra="forbid")

    profile: Literal["lite"] = Field("lite", description="model profile")
    data_dir: Path = Field(default_factory=default_data_dir)
    cache_dir: Path | None = Field(
        None, description="derived data worth keeping (label embeddings); default data_dir/cache"
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    tools: list[str] | None = Field(None, description="enabled tools; None enables all installed")
    expert_timeout_s: float = Field(120.0, gt=0)
    max_question_chars: int = Field(2000, ge=1)
    max_image_pixels: int = Field(64_000_000, ge=1)
    max_image_bytes: int = Field(64 * 1024 * 1024, ge=1)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)

    @field_validator("data_dir", "cache_dir")
    @classmethod
    def _expand_home(cls, path: Path | None) -> Path | None:
        return path.expanduser() if path is not None else None

    @property
    def images_dir(self) -> Path:
        """Where the content-addressed image store lives."""
        return self.data_dir / "images"

    @property
    def threads_path(self) -> Path:
        """The SQLite file holding conversation threads."""
        return self.data_dir / "threads.sqlite"

    @property
    def index_dir(self) -> Path:
        """Where the embedded Chroma index lives (unused with `index.url`)."""
        return self.data_dir / "index"

    @model_validator(mode="after")
    def _default_cache_dir(self) -> Settings:
        if self.cache_dir is None:
            self.cache_dir = self.data_dir / "cache"
        return self
