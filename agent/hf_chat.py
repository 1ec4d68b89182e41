"""A transformers causal LM as a LangChain chat model (the `transformers` LLM backend).

The model's own chat template turns messages into a prompt; generation is greedy at
temperature 0 and sampled (with the configured seed) above it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from sensorium.tools import ModelUnavailableError

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


class ChatTransformers(BaseChatModel):
    """A chat model backed by a Hugging Face `AutoModelForCausalLM` and its tokenizer.

    Build one with `ChatTransformers.load(model_id_or_folder, device)`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any = Field(description="the loaded causal LM (a `PreTrainedModel`)")
    tokenizer: Any = Field(description="its tokenizer, with a chat template")
    model_name: str = Field(description="the HF id or folder the model came from")
    max_tokens: int = Field(160, ge=1, description="most new tokens per reply")
    temperature: float = Field(0.0, ge=0.0, description="0: greedy decoding")
    seed: int = Field(0, description="sampling seed (temperature > 0)")
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def load(
        cls,
        source: str,
        device: torch.device,
        *,
        trust_remote_code: bool = False,
        **fields: Any,
    ) -> ChatTransformers:
        """Load tokenizer and model from a local folder or a hub id, onto `device`.

        Raises `ModelUnavailableError` (one line) when they cannot be loaded.
        """
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ModelUnavailableError(
                "the transformers backend needs transformers: pip install 'sensorium[llm]'"
            ) from None
        if _looks_local(source) and not Path(source).expanduser().is_dir():
            raise ModelUnavailableError(
                f"transformers model folder not found: {source}; fix llm.model"
            )
        source = str(Path(source).expanduser()) if _looks_local(source) else source
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            model: Any = AutoModelForCausalLM.from_pretrained(
                source,
                # Half precision on CPU is slow or unsupported; elsewhere keep the saved dtype.
                dtype=torch.float32 if device.type == "cpu" else "auto",
                trust_remote_code=trust_remote_code,
            )
        except (OSError, ValueError, KeyError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160].rstrip(".")
            raise ModelUnavailableError(
                f"cannot load transformers model {source!r}: {reason}; "
                "set llm.model to a local model folder or a Hugging Face id"
            ) from None
        if not getattr(tokenizer, "chat_template", None):
            raise ModelUnavailableError(
                f"transformers model {source!r} has no chat template; use an instruct/chat model"
            )
        model.to(device).eval()
        return cls(model=model, tokenizer=tokenizer, model_name=source, **fields)

    @property
    def _llm_type(self) -> str:
        return "transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        inputs = self.tokenizer.apply_chat_template(
            [_chat_turn(m) for m in messages],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ).to(self.model.device)
        prompt_length = int(inputs["input_ids"].shape[1])
        limit = int(kwargs.get("max_tokens", self.max_tokens))
        with self._lock, torch.inference_mode(), _seeded(self.seed, self.model.device):
            output = self.model.generate(**inputs, generation_config=self._generation_config(limit))
        new_tokens = output[0, prompt_length:]
        text = _cut_at_stop(self.tokenizer.decode(new_tokens, skip_special_tokens=True), stop)
        count = int(new_tokens.shape[0])
        message = AIMessage(
            content=text,
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": "length" if count >= limit else "stop",
            },
            usage_metadata={
                "input_tokens": prompt_length,
                "output_tokens": count,
                "total_tokens": prompt_length + count,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generation_config(self, limit: int) -> Any:
        """The model's own generation settings, with our length and sampling on top."""
        config = copy.deepcopy(self.model.generation_config)
        sample = self.temperature > 0
        config.max_new_tokens = limit
        config.do_sample = sample
        config.temperature = self.temperature if sample else None
        if not sample:  # sampling knobs a chat model ships with would only draw warnings
            config.top_p = config.top_k = None
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        return config


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed sampling on `device`, restoring everyone else's random state afterwards."""
    accelerator = device.type != "cpu"
    devices = [device.index or 0] if accelerator else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if accelerator else None):
        torch.manual_seed(seed)
        yield


def _looks_local(source: str) -> bool:
    """Whether `source` names a folder rather than a hub id ("org/name")."""
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()


def _chat_turn(message: BaseMessage) -> dict[str, str]:
    """A LangChain message as a chat-template turn ({'role', 'content'})."""
    role = _ROLES.get(message.type, "user")
    if isinstance(message.content, str):
        return {"role": role, "content": message.content}
    parts = [
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in message.content
        if isinstance(part, str) or part.get("type") == "text"
    ]
    return {"role": role, "content": "".join(parts)}


def _cut_at_stop(text: str, stop: list[str] | None) -> str:
    """`text` up to the first stop sequence."""
    for sequence in stop or []:
        if sequence and sequence in text:
            text = text[: text.index(sequence)]
    return text
