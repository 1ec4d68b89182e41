"""The Agent facade: one object that owns the image store, the models, the graph and the
threads, and answers `ask(question, images)`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from opentelemetry.trace import Span
from PIL import Image

from sensorium.agent.events import (
    DecisionEvent,
    EvidenceEvent,
    ReplyEvent,
    TokenEvent,
    ToolCallEvent,
    TurnEvent,
    TurnResult,
)
from sensorium.agent.llm import load_chat_model
from sensorium.agent.planner import ChatPlanner, can_call_tools
from sensorium.agent.prompts import OWN_ANSWER_NOTE
from sensorium.agent.responder import AgentResponder
from sensorium.agent.router import Router
from sensorium.agent.router_model import RouterChatModel
from sensorium.agent.settings import Settings
from sensorium.agent.tracing import configure_tracing
from sensorium.graphs import (
    Decision,
    ExpertBackend,
    LocalExperts,
    Plan,
    compile_graph,
    memory_checkpointer,
    with_image_refs,
)
from sensorium.graphs.tracing import TRACER
from sensorium.tools import (
    ImageRef,
    ImageStore,
    ModelHost,
    ModelUnavailableError,
    Registry,
    ToolContext,
    UserError,
    default_host,
)
from sensorium.tools.encoder import JointEncoder, LiteJointEncoder, compose_query
from sensorium.tools.indexer import IndexReport, Progress, index_images
from sensorium.tools.lite_models import embed_texts
from sensorium.tools.text_index import TextHit, TextIndex, TextIndexReport, index_texts
from sensorium.tools.vector_index import ImageIndex, SearchHit, VectorCollection, open_client

ImageInput = str | Path | bytes | Image.Image | ImageRef
Collection = TypeVar("Collection", bound=VectorCollection)


def check_question(question: object, max_chars: int) -> str:
    """The question, stripped; raises `UserError` for a non-string, empty or huge question."""
    if not isinstance(question, str):
        raise UserError(f"the question must be text, not {type(question).__name__}")
    text = question.strip()
    if not text:
        raise UserError("the question is empty; ask something, e.g. 'What is in this image?'")
    if len(text) > max_chars:
        raise UserError(
            f"the question is {len(text):,} characters long; the limit is {max_chars:,} "
            "(max_question_chars); shorten it"
        )
    return text


class Agent:
    """A multimodal agent. `ask` runs one turn; threads keep the conversation.

    Args:
        settings: configuration (defaults: lite profile, per-user data directory)
        chat_model: a LangChain chat model, None for no LLM, or "auto" to load the
            configured backend (falling back to no LLM, with a warning, if it is missing)
        checkpointer: where threads persist (default: in memory)
        registry: the tools to use (default: every installed tool, or `settings.tools`)
        host: the model host (default: the process-wide one)
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        chat_model: BaseChatModel | Literal["auto"] | None = "auto",
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        registry: Registry | None = None,
        host: ModelHost | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.warnings: list[str] = []
        configure_tracing(self.settings.tracing)
        self.host = host or default_host(
            self.settings.device,
            dtype=self.settings.dtype,
            memory_budget_mb=self.settings.memory_budget_mb,
            max_batch=self.settings.batching.max_batch,
            max_wait_ms=self.settings.batching.max_wait_ms,
        )
        self.images = ImageStore(
            self.settings.images_dir,
            max_pixels=self.settings.max_image_pixels,
            max_bytes=self.settings.max_image_bytes,
        )
        self._client: Any = None  # Chroma's, shared by the image index and the texts
        self._collections: dict[type[VectorCollection], VectorCollection] = {}
        self._index_lock = threading.Lock()
        self.context = ToolContext(
            host=self.host,
            images=self.images,
            cache_dir=self.settings.cache_dir,
            open_index=self.open_index,
            open_text_index=self.open_text_index,
            models=self.settings.models,
            joint_encoder=lambda: self.encoder,
        )
        self.registry = registry or Registry.discover(self.settings.tools, self.settings.profile)
        packaged = chat_model == "auto" and self.settings.llm.backend == "smollm2"
        packaged = packaged and self.settings.llm.model_path is None
        if chat_model == "auto":
            try:
                chat_model = load_chat_model(self.settings.llm, self.host)
            except ModelUnavailableError as exc:
                self.warnings.append(f"no LLM ({exc}); planning with the router only")
                chat_model = None
        self.chat_model = chat_model
        self.router = Router(
            self.registry,
            lambda texts: embed_texts(self.context, texts),
            max_tools=self.settings.planner.max_tools,
            profile=self.settings.profile,
        )
        router_model = RouterChatModel(
            router=self.router, registry=self.registry, image_matcher=self.best_match
        )
        planning = self._planning_model(chat_model, router_model, packaged)
        self.planner = ChatPlanner(
            planning,
            self.registry,
            router=router_model if planning is not router_model else None,
            history_turns=self.settings.planner.history_turns,
        )
        # The packaged SmolLM2 may reword decisions (checked against them) but not answer
        # questions no expert can check: it got every one of those wrong (configuration.md).
        self.responder = AgentResponder(chat_model, self.registry, text_answers=not packaged)
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = compile_graph(
            planner=self.planner,
            responder=self.responder,
            registry=self.registry,
            context=self.context,
            fusion=self.settings.fusion,
            max_steps=self.settings.planner.max_steps,
            checkpointer=checkpointer or memory_checkpointer(),
            experts=self._experts_backend(),
        )

    def _experts_backend(self) -> ExpertBackend:
        """Where experts run (`[experts] backend`): here, or on the Ray Serve deployments."""
        local = LocalExperts(self.context, self.settings.expert_timeout_s)
        if self.settings.experts.backend == "local":
            return local
        from sensorium.tools.ray_experts import RayExperts

        return RayExperts(
            local,
            self.images,
            timeout_s=self.settings.expert_timeout_s,
            address=self.settings.experts.address,
            token_file=self.settings.experts.auth_token_file,
            data_dir=self.settings.data_dir,
            local_tools=self.settings.experts.local,
        )

    def _planning_model(
        self, llm: BaseChatModel | None, router: RouterChatModel, packaged: bool
    ) -> BaseChatModel:
        """Who plans (`planner.policy`): the LLM when it can call tools, else the router."""
        policy = self.settings.planner.policy
        if llm is None or policy == "router" or (policy == "auto" and packaged):
            return router
        if not can_call_tools(llm):
            self.warnings.append(
                f"the chat model ({type(llm).__name__}) cannot call tools; the router plans"
            )
            return router
        return llm

    @property
    def encoder(self) -> JointEncoder:
        """The joint image-text encoder of the active profile (MiniLM + ConSE, or CLIP)."""
        if self.settings.profile == "standard":
            from sensorium.tools.clip_experts import ClipJointEncoder

            return ClipJointEncoder(self.context)
        return LiteJointEncoder(self.context)

    def best_match(self, description: str, images: list[ImageRef]) -> ImageRef:
        """The image a description fits best ("cat" -> the cat picture), in the joint space."""
        encoder = self.encoder
        text = encoder.encode_texts([description])[0]
        vectors = encoder.encode_images([self.images.load(image) for image in images])
        return images[int(np.argmax(vectors @ text))]

    def open_index(self) -> ImageIndex:
        """The image index for the active encoder (opened once; embedded or over HTTP)."""
        return self._open(ImageIndex)

    def open_text_index(self) -> TextIndex:
        """The text collection for the active encoder (beside the image index)."""
        return self._open(TextIndex)

    def _open(self, kind: type[Collection]) -> Collection:
        """A collection of the active encoder's vectors, opened once, on one Chroma client."""
        with self._index_lock:
            if kind not in self._collections:
                if self._client is None:
                    self._client = open_client(self.settings.index_dir, self.settings.index.url)
                encoder = self.encoder
                self._collections[kind] = kind(self._client, encoder.id, encoder.dimension)
            return cast(Collection, self._collections[kind])

    def index_texts(
        self, paths: Sequence[str | Path], *, progress: Progress | None = None
    ) -> TextIndexReport:
        """Index collection files of texts (JSONL with `id` and `text`, or one text per line);
        unchanged entries are skipped, changed ones replaced."""
        return index_texts(
            self.open_text_index(),
            self.encoder.encode_texts,
            [Path(p) for p in paths],
            batch_size=self.settings.index.batch_size,
            progress=progress,
        )

    def search_texts(
        self, text: str | None = None, *, image: ImageInput | None = None, k: int = 10
    ) -> list[TextHit]:
        """Indexed texts closest to an image, a text, or both (the text modifies the image)."""
        return self.open_text_index().search(self._query_vector(text, image), k)

    def index(
        self,
        paths: Sequence[str | Path],
        *,
        prune: bool = False,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> IndexReport:
        """Index image files and folders for search (unchanged files are skipped).

        Args:
            paths: files and folders (walked)
            prune: also remove entries for files under `paths` that no longer exist
            batch_size: images per forward pass (default: `settings.index.batch_size`)
            progress: called with (files done, files total) after each batch
        """
        return index_images(
            self.open_index(),
            self.encoder,
            self.images,
            paths,
            batch_size=batch_size or self.settings.index.batch_size,
            prune=prune,
            progress=progress,
        )

    def search(
        self, text: str | None = None, *, image: ImageInput | None = None, k: int = 10
    ) -> list[SearchHit]:
        """Indexed images closest to a text, an example image, or both (text modifies it)."""
        return self.open_index().search(self._query_vector(text, image), k)

    def _query_vector(self, text: str | None, image: ImageInput | None) -> np.ndarray:
        """A query in the joint space: a text, an image, or the image modified by the text."""
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise UserError("the search text is empty; say what to look for, e.g. 'a cat'")
        if text is None and image is None:
            raise UserError("give a text to search for, an example image, or both")
        encoder = self.encoder
        text_vector = encoder.encode_texts([text])[0] if text else None
        image_vector = None
        if image is not None:
            image_vector = encoder.encode_images([self._pixels(image)])[0]
        if text_vector is not None and image_vector is not None:
            return np.asarray(compose_query(image_vector, text_vector))
        vector = text_vector if text_vector is not None else image_vector
        assert vector is not None
        return np.asarray(vector)

    def _pixels(self, image: ImageInput) -> Image.Image:
        """Decoded pixels; a file is checked and read without being stored."""
        if isinstance(image, str | Path):
            return self.images.read(image)[1]
        return self.images.load(self.add_image(image))

    def add_image(self, image: ImageInput) -> ImageRef:
        """Put an image in the store (a path, encoded bytes, a Pillow image, or a reference)."""
        if isinstance(image, ImageRef):
            self.images.require(image)  # raises if the store does not hold it
            return image
        if isinstance(image, Image.Image):
            return self.images.add_image(image)
        if isinstance(image, bytes):
            return self.images.add_bytes(image)
        if isinstance(image, str | Path):
            return self.images.add(image)
        raise UserError(
            "an image must be a path, bytes, a PIL image or an ImageRef, "
            f"not {type(image).__name__}"
        )

    def ask(
        self,
        question: str,
        images: Sequence[ImageInput] | None = None,
        *,
        thread_id: str | None = None,
        tools: Sequence[str] | None = None,
    ) -> TurnResult:
        """Run one turn on a thread (a new thread when `thread_id` is None).

        `images` replaces the thread's attached images; None keeps those of the previous turn,
        so a follow-up question is about the same pictures (a new thread starts with none).
        `tools` asks exactly these experts instead of letting the planner choose.
        """
        with TRACER.start_as_current_span("sensorium.turn") as span:
            turn, config = self._turn(question, images, thread_id, tools)
            # durability="exit": the thread is checkpointed once, as the turn ends (or fails),
            # instead of after each step (LangGraph's default, "async"): with SQLite that was
            # most of a turn's fixed overhead. Nothing resumes a turn part-way, and a turn that
            # raises still saves what it reached; a crash mid-turn leaves the thread as its
            # last finished turn left it. `ask` returns once the save is committed.
            state = self.graph.invoke(turn, config, durability="exit")
            return _traced(span, self._result(config, turn["question"], state))

    def stream(
        self,
        question: str,
        images: Sequence[ImageInput] | None = None,
        *,
        thread_id: str | None = None,
        tools: Sequence[str] | None = None,
    ) -> Iterator[TurnEvent]:
        """Run one turn like `ask`, yielding its events as they happen: each tool call as it
        is planned, each piece of evidence as it lands, each decision, the LLM's text as it
        streams, and last a `ReplyEvent` with the `TurnResult`."""
        with TRACER.start_as_current_span("sensorium.turn") as span:
            yield from self._stream(span, question, images, thread_id, tools)

    def _stream(
        self,
        span: Span,
        question: str,
        images: Sequence[ImageInput] | None,
        thread_id: str | None,
        tools: Sequence[str] | None,
    ) -> Iterator[TurnEvent]:
        turn, config = self._turn(question, images, thread_id, tools)
        decided = 0
        for mode, data in self.graph.stream(
            turn, config, stream_mode=["updates", "messages"], durability="exit"
        ):
            if mode == "messages":
                chunk, meta = cast(tuple[Any, dict[str, Any]], data)
                node = str(meta.get("langgraph_node", ""))
                text = chunk.text if isinstance(chunk, AIMessageChunk | AIMessage) else ""
                # Only what a chat model wrote: LangGraph also reports the messages nodes
                # return (the reply the respond node assembles), which would repeat the text.
                from_model = meta.get("ls_model_type") == "chat"
                if text and from_model and node in ("agent", "respond"):
                    yield TokenEvent(text=text, node=node)
                continue
            assert isinstance(data, dict)
            for node, update in data.items():
                if not isinstance(update, dict):
                    continue
                if node == "agent" and "messages" in update:
                    plan: Plan = update["plan"]
                    for call in plan.step_calls(plan.steps):
                        yield ToolCallEvent(call=call)
                for evidence in update.get("evidence", []) if node == "expert" else []:
                    yield EvidenceEvent(evidence=evidence)
                if node == "observe":
                    decisions: list[Decision] = update.get("decisions", [])
                    for decision in decisions[decided:]:
                        yield DecisionEvent(decision=decision)
                    decided = len(decisions)
        state = self.graph.get_state(config).values
        yield ReplyEvent(result=_traced(span, self._result(config, turn["question"], state)))

    def _turn(
        self,
        question: str,
        images: Sequence[ImageInput] | None,
        thread_id: str | None,
        tools: Sequence[str] | None,
    ) -> tuple[dict[str, Any], Any]:
        """The graph input and config of a turn; bad input raises before anything runs."""
        text = check_question(question, self.settings.max_question_chars)
        requested = self._check_tools(tools) if tools is not None else None
        turn: dict[str, Any] = {
            "messages": [HumanMessage(text)],
            "question": text,
            "requested_tools": requested,
        }
        if images is not None:
            turn["images"] = [self.add_image(image) for image in images]
        config = {"configurable": {"thread_id": thread_id or uuid.uuid4().hex}}
        return turn, config

    def _result(self, config: Any, question: str, state: dict[str, Any]) -> TurnResult:
        decisions: list[Decision] = state.get("decisions", [])
        stored: Plan = state.get("plan", Plan())
        # A plan read back from the thread holds its images as dicts; give them back as models.
        calls = [
            c.model_copy(update={"arguments": with_image_refs(c.arguments)}) for c in stored.calls
        ]
        plan = stored.model_copy(update={"calls": calls})
        evidence = state.get("evidence", [])
        first = decisions[0] if decisions else None
        # The images the experts looked at, in the order they did; else those attached.
        known = {image.sha256: image for image in state.get("gallery", [])}
        used = dict.fromkeys(e.image for e in evidence if e.image in known)
        images = [known[sha] for sha in used] or list(state.get("images", []))
        reply = state.get("reply", "")
        answered_by = "experts" if evidence else "nobody"
        if not evidence and reply.endswith(OWN_ANSWER_NOTE):
            answered_by = "llm"
        return TurnResult(
            thread_id=config["configurable"]["thread_id"],
            question=question,
            reply=reply,
            answer=first.answer if first else None,
            confidence=first.confidence if first else 0.0,
            abstained=first.abstained if first else True,
            answered_by=answered_by,  # type: ignore[arg-type]
            decisions=decisions,
            plan=plan,
            evidence=evidence,
            images=images,
        )

    def _check_tools(self, tools: Sequence[str]) -> list[str]:
        if isinstance(tools, str) or not tools:
            raise UserError("tools must be a non-empty list of expert names, e.g. ['caption']")
        unknown = [name for name in tools if name not in self.registry]
        if unknown:
            raise UserError(
                f"unknown expert {', '.join(map(repr, unknown))}; "
                f"installed: {', '.join(self.registry.names())}"
            )
        return list(dict.fromkeys(tools))

    def forget(self, thread_id: str) -> None:
        """Delete a thread's stored state (its messages and image memory)."""
        checkpointer = self.graph.checkpointer
        if isinstance(checkpointer, BaseCheckpointSaver):
            checkpointer.delete_thread(thread_id)

    def history(self, thread_id: str, *, tool_messages: bool = False) -> list[AnyMessage]:
        """The messages of a thread so far (empty for an unknown thread): the questions and
        replies, and with `tool_messages` also the planner's calls and their results."""
        snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        messages: list[AnyMessage] = list(snapshot.values.get("messages", []))
        if tool_messages:
            return messages
        return [
            m
            for m in messages
            if isinstance(m, HumanMessage) or (isinstance(m, AIMessage) and not m.tool_calls)
        ]


def _traced(span: Span, result: TurnResult) -> TurnResult:
    """The turn's outcome as attributes of its span."""
    span.set_attribute("sensorium.thread_id", result.thread_id)
    span.set_attribute("sensorium.answered_by", result.answered_by)
    span.set_attribute("sensorium.steps", result.plan.steps)
    span.set_attribute("sensorium.experts", [call.tool for call in result.plan.calls])
    if result.answer is not None:
        span.set_attribute("sensorium.answer", result.answer)
        span.set_attribute("sensorium.confidence", result.confidence)
    return result


def build_graph(
    settings: Settings | None = None,
    *,
    chat_model: BaseChatModel | Literal["auto"] | None = "auto",
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The turn graph, wired with the configured planner, responder and tools.

    Invoke it like any LangGraph graph, with images already in the agent's store::

        graph.invoke({"messages": [HumanMessage(q)], "question": q, "images": [ref]},
                     {"configurable": {"thread_id": "t1"}})
    """
    return Agent(settings, chat_model=chat_model, checkpointer=checkpointer).graph
