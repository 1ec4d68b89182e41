"""Every setting of an agent, in one typed model (loading from files lives in the face)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sensorium.graphs import FusionSettings
from sensorium.tools.hf_models import StandardModels
from sensorium.tools.profiles import Profile


def default_data_dir() -> Path:
    """`$SENSORIUM_DATA_DIR`, else the per-user data folder (XDG on Linux)."""
    if override := os.environ.get("SENSORIUM_DATA_DIR"):
        return Path(override).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "sensorium"


class LLMSettings(BaseModel):
    """The chat model behind the planner and the replies.

    Backends: 'none' (the default: the router plans, templates reply, and a question that needs
    no image is declined), 'openai' (any OpenAI-compatible server: vLLM, llama.cpp's server,
    hosted APIs), 'ollama', 'transformers' (a Hugging Face causal LM, local folder or hub id),
    'smollm2' (a local GGUF model run by llama.cpp; the `llm` extra). The packaged
    SmolLM2-135M is not the default: it added claims no expert made to three of six replies
    and answered no text-only question right (measured in docs/configuration.md).
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["smollm2", "openai", "ollama", "transformers", "none"] = Field(
        "none", description="which chat model runs; 'none': router and templates"
    )
    model: str | None = Field(
        None,
        description="model name (openai, ollama), or HF id / local folder (transformers)",
    )
    base_url: str | None = Field(
        None,
        description="server URL: openai e.g. http://127.0.0.1:8080/v1; "
        "ollama default http://127.0.0.1:11434",
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="the environment variable holding the API key (openai); ''/None: none",
    )
    timeout_s: float = Field(60.0, gt=0, description="seconds one request to a server may take")
    model_path: Path | None = Field(None, description="a GGUF file to use instead of SmolLM2")
    chat_format: str | None = Field(
        None,
        description="smollm2: llama-cpp-python's chat format, e.g. 'chatml-function-calling' "
        "(OpenAI tool calls), 'chatml', or 'chat_template.default' (the GGUF file's own "
        "template); None: 'chatml-function-calling' for the packaged SmolLM2, the GGUF file's "
        "own template for a model_path",
    )
    trust_remote_code: bool = Field(
        False, description="transformers: run the model repository's own Python code"
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(160, ge=1, le=4096)
    context_tokens: int = Field(8192, ge=256, description="smollm2: the context window (n_ctx)")
    seed: int = 0

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        url = (url or "").strip().rstrip("/")
        if not url:
            return None
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise PydanticCustomError(
                "llm_base_url", f"{url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8080/v1"
            )
        return url

    @field_validator("chat_format")
    @classmethod
    def _format_name(cls, name: str | None) -> str | None:
        name = (name or "").strip()
        if not name:  # TOML has no null: "" means the default
            return None
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
            raise PydanticCustomError(
                "llm_chat_format",
                f"{name!r} is not a chat format name; use e.g. 'chatml-function-calling'",
            )
        return name

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if not name:  # TOML has no null: "" means "send no key"
            return None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            # Refuse to echo the value: it may be a key pasted here by mistake.
            raise PydanticCustomError(
                "llm_api_key_env",
                "api_key_env names an environment variable (e.g. OPENAI_API_KEY), "
                "never the key itself",
            )
        return name

    @model_validator(mode="after")
    def _backend_needs(self) -> LLMSettings:
        needed = {"openai": ["base_url", "model"], "ollama": ["model"], "transformers": ["model"]}
        missing = [f for f in needed.get(self.backend, []) if not getattr(self, f)]
        if missing:
            fields = " and ".join(f"llm.{name}" for name in missing)
            raise PydanticCustomError(
                "llm_backend_settings", f"backend {self.backend!r} needs {fields}"
            )
        return self


class PlannerSettings(BaseModel):
    """How each step's experts are chosen.

    `policy`: 'llm' plans with the chat model through tool calling; 'router' plans with the
    deterministic router (the LLM, if any, still phrases replies, kept only when grounded,
    and a capable one answers text-only questions); 'auto' plans with the LLM when it can
    call tools, except the packaged SmolLM2, which routes worse than the router (measured in
    docs/performance.md).
    """

    model_config = ConfigDict(extra="forbid")

    policy: Literal["auto", "llm", "router"] = Field(
        "auto", description="who plans: 'llm', 'router', or 'auto' (see the class docstring)"
    )
    max_steps: int = Field(4, ge=1, le=32, description="most rounds of tool calls in one turn")
    max_tools: int = Field(3, ge=1, le=16, description="most experts the router picks")
    history_turns: int = Field(6, ge=0, le=100, description="earlier turns the planner sees")


class IndexSettings(BaseModel):
    """The image index (Chroma)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="a `chroma run` server, e.g. http://127.0.0.1:8000; None: embedded"
    )
    batch_size: int = Field(32, ge=1, le=1024, description="images encoded per forward pass")


class ServerSettings(BaseModel):
    """`sensorium serve`: where it listens and what it accepts."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="interface to listen on; loopback by default")
    port: int = Field(8000, ge=1, le=65535)
    token: str | None = Field(
        None,
        description="bearer token every API request must carry (also SENSORIUM_API_TOKEN); "
        "required to listen on anything but loopback",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the API from a browser"
    )
    max_request_mb: float = Field(32.0, gt=0, le=1024, description="largest request body")
    max_images: int = Field(8, ge=1, le=64, description="most images one request attaches")
    fetch_image_urls: bool = Field(
        False, description="fetch http(s) image URLs given by clients (off: refused)"
    )


class TracingSettings(BaseModel):
    """OpenTelemetry spans per turn, graph step and expert call; off by default."""

    model_config = ConfigDict(extra="forbid")

    exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="'console': spans as JSON on stderr; 'otlp': to a collector (gRPC)"
    )
    endpoint: str | None = Field(
        None,
        description="the OTLP collector, e.g. http://127.0.0.1:4317 (None: OpenTelemetry's "
        "default, or OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    service_name: str = Field("sensorium", min_length=1)


class BatchingSettings(BaseModel):
    """Micro-batching: concurrent requests to one model share a forward pass."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(
        16, ge=1, le=1024, description="most requests in one forward pass; 1 turns batching off"
    )
    max_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="how long a batch waits for more requests after its first"
    )


class ReplicaSettings(BaseModel):
    """How an expert's Ray Serve deployment is sized (`[experts]`, or one expert's override)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(1, ge=1, le=1024, description="replicas each expert's deployment runs")
    max_replicas: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="above `replicas`: Serve autoscales between the two on load; None: fixed",
    )
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="autoscaling: requests in flight per replica it aims for"
    )
    num_cpus: float = Field(1.0, ge=0, description="CPUs each replica reserves (fractions allowed)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs each replica reserves (fractions allowed)")

    @model_validator(mode="after")
    def _range(self) -> ReplicaSettings:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise PydanticCustomError(
                "experts_replicas",
                f"max_replicas ({self.max_replicas}) is below replicas ({self.replicas}); "
                "raise it, or leave it out for a fixed number",
            )
        return self


class ExpertsSettings(ReplicaSettings):
    """Where the experts run: in this process ('local'), or on a Ray Serve application that
    `sensorium experts up` deployed ('ray'). The sizing fields apply to every deployment;
    `deployments` overrides them per expert."""

    backend: Literal["local", "ray"] = Field(
        "local", description="'local': in this process; 'ray': on the Ray Serve deployments"
    )
    address: str | None = Field(
        None,
        description="the Ray cluster, e.g. 10.0.0.5:6379 or ray://head:10001; None: the "
        "cluster `experts up` started, else $RAY_ADDRESS",
    )
    auth_token_file: Path | None = Field(
        None,
        description="a file holding the token of the cluster at `address` (owner-only); "
        "None: Ray's own (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token). The "
        "cluster `experts up` started uses its own token",
    )
    local: list[str] = Field(
        default_factory=lambda: ["retrieve", "match_text"],
        description="experts that stay in the agent's process with backend 'ray': those "
        "searching the agent's own collections, which live with the agent",
    )
    deployments: dict[str, dict[str, float | int | None]] = Field(
        default_factory=dict,
        description="per-expert sizing, e.g. {vlm_answer = {num_gpus = 1, replicas = 2}}",
    )

    @field_validator("auth_token_file")
    @classmethod
    def _expand_home(cls, path: Path | None) -> Path | None:
        return path.expanduser() if path is not None and str(path) else None

    @model_validator(mode="after")
    def _overrides_valid(self) -> ExpertsSettings:
        for expert in self.deployments:
            try:
                self.replica(expert)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(part) for part in first["loc"]) or "sizing"
                raise PydanticCustomError(
                    "experts_deployment",
                    f"experts.deployments.{expert}.{field}: {first['msg']}",
                ) from None
        return self

    def replica(self, expert: str) -> ReplicaSettings:
        """The sizing of one expert's deployment: the defaults, then its override."""
        defaults = ReplicaSettings.model_fields
        base = {name: getattr(self, name) for name in defaults}
        return ReplicaSettings.model_validate(base | self.deployments.get(expert, {}))


class Settings(BaseModel):
    """Configuration of an agent. Build one directly, or load it with `load_settings`."""

    model_config = ConfigDict(extra="forbid")

    profile: Profile = Field(
        "lite", description="'lite': small packaged models; 'standard': CLIP, BLIP, ViLT"
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    cache_dir: Path | None = Field(
        None, description="derived data worth keeping (label embeddings); default data_dir/cache"
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="model weights: 'auto' is float16 on CUDA, float32 elsewhere"
    )
    memory_budget_mb: float | None = Field(
        None, gt=0, description="unload least-recently-used models beyond this; None: no limit"
    )
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    tools: list[str] | None = Field(None, description="enabled tools; None enables all installed")
    expert_timeout_s: float = Field(120.0, gt=0)
    max_question_chars: int = Field(2000, ge=1)
    max_image_pixels: int = Field(64_000_000, ge=1)
    max_image_bytes: int = Field(64 * 1024 * 1024, ge=1)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    experts: ExpertsSettings = Field(default_factory=ExpertsSettings)
    models: StandardModels = Field(
        default_factory=StandardModels, description="checkpoints of the standard profile"
    )

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

    @model_validator(mode="after")
    def _builtin_fusion_fit(self) -> Settings:
        # The profile decides which experts vote, so it decides which shipped fit applies.
        self.fusion = self.fusion.for_profile(self.profile)
        return self
