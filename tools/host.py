"""The model host: the one place that loads models, once per process, on one device.

Experts ask the host for a model by key and give it a loader; the host calls the loader the
first time only (concurrent first requests wait for the same load) and keeps the result.

- Device and dtype: `device="auto"` picks CUDA, then MPS, then CPU; `dtype="auto"` is float16
  on CUDA and float32 elsewhere. A loader gets the device; it reads the dtype from the host it
  was given to (`host.dtype`), or lets the host do both with `host.place(module)` or
  `host.load_pretrained(cls, name_or_path)`.
- Memory budget: with `memory_budget_mb`, loading a model evicts the least recently used
  models until the total fits (never one pinned by `host.using`). Evicted models load again,
  lazily, on their next `get`.
- Micro-batching: `host.submit(name, fn, item)` runs `item` through the shared `MicroBatcher`
  called `name`, so concurrent single-item requests to one model become one forward pass
  (see `sensorium.tools.batching`); `await host.asubmit(...)` is the same for asyncio code, and
  `host.batcher(name, fn)` is that batcher. `max_batch=1` turns batching off: `submit` then
  calls `fn([item])` in the caller's thread.

Thread safety: the model table, the per-key load locks, the counters and the memo are guarded
by one lock, held only for dictionary work; loaders, `compute` functions and batch functions
run outside it, so different models load concurrently and a slow load blocks only callers of
the same key.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import torch

from sensorium.tools.batching import MicroBatcher
from sensorium.tools.errors import ModelUnavailableError, UserError

Device = Literal["auto", "cpu", "cuda", "mps"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
T = TypeVar("T")
M = TypeVar("M", bound=torch.nn.Module)
I = TypeVar("I")  # noqa: E741  (a batch item)
R = TypeVar("R")

MB = 2**20  # the host counts memory in MiB and calls them MB
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_PROVIDE = (
    "give a local directory saved with save_pretrained, "
    "or a Hugging Face id on a machine with network access"
)


def resolve_device(device: str) -> torch.device:
    """Turn `auto` into the best available device; check an explicit one exists."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was asked for but CUDA is not available; use 'auto'")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Turn `auto` into float16 on CUDA and float32 elsewhere (MPS, CPU); check a named one.

    float16 rather than bfloat16 on CUDA: every CUDA GPU runs it natively, and CLIP and BLIP
    were released in it. Ask for `bfloat16` explicitly for models that overflow in float16.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise UserError(f"dtype {dtype} is not a float type; use float32, float16 or bfloat16")
        return dtype
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise UserError(f"dtype {dtype!r} is not one of auto, float32, float16, bfloat16") from None


def model_bytes(model: Any) -> int:
    """Bytes held by a model's parameters and buffers (0 when it is not, and does not wrap,
    a `torch.nn.Module`: a pipeline's `.model` counts)."""
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(module, torch.nn.Module):
        return 0
    tensors = [*module.parameters(), *module.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


@dataclass(slots=True)
class _Entry:
    """A loaded model, its size and how many `using` blocks pin it."""

    value: Any
    size: int
    pins: int = 0


class ModelHost:
    """Loads models lazily, shares them between experts and threads, evicts under a budget.

    Args:
        device: `auto` (CUDA, then MPS, then CPU), or `cpu`, `cuda`, `cuda:1`, `mps`
        dtype: `auto` (float16 on CUDA, float32 elsewhere), `float32`, `float16`, `bfloat16`
        memory_budget_mb: evict least recently used models past this many MB (None: never)
        trust_remote_code: let `load_pretrained` run code shipped with a model (off: only
            turn it on for models whose code you trust)
        size_of: bytes held by a loaded object, or None to use the default (parameters and
            buffers of a `torch.nn.Module`, 0 for anything else)
        max_batch: the most concurrent requests `submit` runs as one batch (1: no batching)
        max_wait_ms: how long a batch stays open for more requests after its first one
    """

    def __init__(
        self,
        device: str = "auto",
        *,
        dtype: str | torch.dtype = "auto",
        memory_budget_mb: float | None = None,
        trust_remote_code: bool = False,
        size_of: Callable[[Any], int | None] | None = None,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
    ) -> None:
        if memory_budget_mb is not None and memory_budget_mb <= 0:
            raise UserError(f"memory_budget_mb must be positive or None, not {memory_budget_mb}")
        if max_batch < 1 or max_wait_ms < 0:
            raise UserError(
                f"max_batch must be at least 1 and max_wait_ms at least 0, not "
                f"{max_batch} and {max_wait_ms}"
            )
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.memory_budget_mb = memory_budget_mb
        self.trust_remote_code = trust_remote_code
        self._size_of = size_of
        self._models: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.loads: dict[str, int] = {}  # how often each key was loaded: tests pin "once"
        self.evictions = 0  # models dropped to fit the memory budget
        # Several experts in one turn look at the same image: keep recent per-image outputs.
        self._memo: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._memo_locks: dict[tuple[str, str], threading.Lock] = {}
        self.memo_size = 256
        self._batchers: dict[str, MicroBatcher[Any, Any]] = {}

    # -- models ---------------------------------------------------------------------------

    def get(self, key: str, loader: Callable[[torch.device], T]) -> T:
        """Return the model stored under `key`, loading it with `loader(device)` on first use
        (and again after it was evicted or unloaded). A `torch.nn.Module` is put in eval mode.
        """
        return self._acquire(key, loader, pin=False)

    @contextlib.contextmanager
    def using(self, key: str, loader: Callable[[torch.device], T]) -> Iterator[T]:
        """`get`, and pin the model until the block ends so the budget never evicts it then.

        An evicted model a caller still holds keeps working (the host only drops its own
        reference); pinning keeps the budget's count true and avoids a reload mid-work.
        """
        value = self._acquire(key, loader, pin=True)
        try:
            yield value
        finally:
            with self._guard:
                entry = self._models.get(key)
                if entry is not None and entry.value is value:
                    entry.pins -= 1
                evicted = self._evict_over_budget(keep=None)
            self._release(evicted)

    def loaded(self) -> dict[str, float]:
        """Size in MB of each model in memory, least recently used first (0 when unknown)."""
        with self._guard:
            return {key: entry.size / MB for key, entry in self._models.items()}

    def memory_mb(self) -> float:
        """MB held by the models in memory, as far as their sizes are known."""
        with self._guard:
            return sum(entry.size for entry in self._models.values()) / MB

    def unload(self, key: str) -> None:
        """Drop a model (pinned or not) so the next `get` loads it again."""
        with self._guard:
            entry = self._models.pop(key, None)
        self._release([entry] if entry else [])

    def _acquire(self, key: str, loader: Callable[[torch.device], T], pin: bool) -> T:
        with self._guard:
            if (hit := self._hit(key, pin)) is not None:
                return cast(T, hit.value)
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one load per key; other keys load concurrently
            with self._guard:
                if (hit := self._hit(key, pin)) is not None:
                    return cast(T, hit.value)
            value = loader(self.device)
            if isinstance(value, torch.nn.Module):
                value.eval()
            size = self._measure(value)
            with self._guard:
                self._models[key] = _Entry(value, size, pins=int(pin))
                self.loads[key] = self.loads.get(key, 0) + 1
                evicted = self._evict_over_budget(keep=key)
        self._release(evicted)
        return value

    def _hit(self, key: str, pin: bool) -> _Entry | None:
        """The entry for `key`, marked most recently used (call under the guard)."""
        entry = self._models.get(key)
        if entry is not None:
            self._models.move_to_end(key)
            entry.pins += int(pin)
        return entry

    def _measure(self, value: Any) -> int:
        size = self._size_of(value) if self._size_of else None
        return model_bytes(value) if size is None else int(size)

    def _evict_over_budget(self, keep: str | None) -> list[_Entry]:
        """Drop least recently used, unpinned models until the total fits (under the guard).

        A model larger than the whole budget stays (it was asked for); everything else that
        can go, goes.
        """
        if self.memory_budget_mb is None:
            return []
        budget = self.memory_budget_mb * MB
        total = sum(entry.size for entry in self._models.values())
        evicted: list[_Entry] = []
        for key in list(self._models):
            if total <= budget:
                break
            entry = self._models[key]
            if key == keep or entry.pins > 0:
                continue
            del self._models[key]
            total -= entry.size
            self.evictions += 1
            evicted.append(entry)
        return evicted

    def _release(self, entries: list[_Entry]) -> None:
        """Let go of dropped models outside the guard; hand freed GPU memory back."""
        if not entries:
            return
        entries.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- placement and loading ------------------------------------------------------------

    def place(self, module: M) -> M:
        """Move a module to the host's device, cast its floating-point weights to the host's
        dtype, and put it in eval mode; returns it (for loaders: `return host.place(model)`)."""
        module.to(device=self.device, dtype=self.dtype)
        module.eval()
        return module

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        """A `torch.inference_mode()` block: no autograd bookkeeping while running models."""
        return torch.inference_mode()

    def load_pretrained(self, cls: Any, name_or_path: str | Path, **kwargs: Any) -> Any:
        """`cls.from_pretrained(name_or_path, ...)` with the host's settings.

        Models (transformers `PreTrainedModel` and `AutoModel*` classes) load in the host's
        dtype, from safetensors when the directory has them (transformers itself prefers
        safetensors for Hugging Face ids), and are placed on the host's device in eval mode.
        Tokenizers and processors get only `trust_remote_code`. `kwargs` win over all of this.
        A model that cannot be found (a missing directory, an id not cached while offline)
        raises `ModelUnavailableError` naming it and how to provide it. Call it inside a
        loader: `host.get(key, lambda _: host.load_pretrained(CLIPModel, path))`.
        """
        name = str(name_or_path)
        options: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if _is_model_class(cls):
            options[_dtype_keyword()] = self.dtype
            if _has_safetensors(name):
                options["use_safetensors"] = True
        options.update(kwargs)
        try:
            with TRANSFORMERS_LOAD_LOCK:
                loaded = cls.from_pretrained(name, **options)
        except (OSError, ValueError) as exc:
            error = _unavailable(name, exc)
            if error is None:
                raise
            raise error from exc
        if isinstance(loaded, torch.nn.Module):
            loaded.to(self.device)
            loaded.eval()
        return loaded

    # -- memo and batching ----------------------------------------------------------------

    def memo(self, namespace: str, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per (namespace, key) among the most recent `memo_size` results.

        Threads that miss the same slot at once wait for the first one's result: the experts
        of a turn run in parallel and often need the same forward pass on the same image.
        """
        slot = (namespace, key)
        with self._guard:
            if slot in self._memo:
                self._memo.move_to_end(slot)
                return cast(T, self._memo[slot])
            lock = self._memo_locks.setdefault(slot, threading.Lock())
        with lock:
            with self._guard:
                if slot in self._memo:  # computed while this thread waited
                    self._memo.move_to_end(slot)
                    return cast(T, self._memo[slot])
            try:
                value = compute()
            except BaseException:
                with self._guard:
                    self._memo_locks.pop(slot, None)
                raise
            with self._guard:
                self._memo[slot] = value
                self._memo_locks.pop(slot, None)  # after storing: late callers find the value
                while len(self._memo) > self.memo_size:
                    self._memo.popitem(last=False)
        return value

    def submit(self, name: str, fn: Callable[[list[I]], Sequence[R]], item: I) -> R:
        """`fn([item])[0]`, run in one batch with concurrent requests to the same `name`.

        Experts call this for one prediction; when several conversations (or threads) ask
        the same model at once, their items share one forward pass. `name` must say
        everything `fn` depends on besides the items (the model id, the function), because
        the batcher keeps the `fn` it was created with. With `max_batch=1` (batching off)
        `fn` runs here, in the caller's thread, under inference mode.
        """
        if self.max_batch == 1:
            with self.inference():
                return fn([item])[0]
        return self.batcher(name, fn).submit(item)

    async def asubmit(self, name: str, fn: Callable[[list[I]], Sequence[R]], item: I) -> R:
        """`submit` for asyncio code: awaits the result without blocking the event loop
        (without batching, `fn` runs in a worker thread)."""
        if self.max_batch == 1:
            return await asyncio.to_thread(self.submit, name, fn, item)
        return await self.batcher(name, fn).asubmit(item)

    def batcher(
        self,
        name: str,
        fn: Callable[[list[I]], Sequence[R]],
        *,
        max_batch: int | None = None,
        max_wait_ms: float | None = None,
    ) -> MicroBatcher[I, R]:
        """The host's shared `MicroBatcher` called `name`, created on first call with `fn`
        (later calls return the same batcher, whatever `fn` they pass), and with the host's
        `max_batch` and `max_wait_ms` unless given. `fn` runs under `torch.inference_mode`, on
        torch's current thread count (`match_torch_threads`); it should fetch its model with
        `get` or `using` on each call, so an evicted model loads again."""
        with self._guard:
            existing = self._batchers.get(name)
            if existing is None:
                existing = MicroBatcher(
                    self._in_inference(fn),
                    max_batch=self.max_batch if max_batch is None else max_batch,
                    max_wait_ms=self.max_wait_ms if max_wait_ms is None else max_wait_ms,
                    name=name,
                )
                self._batchers[name] = existing
        return cast(MicroBatcher[I, R], existing)

    def batchers(self) -> dict[str, MicroBatcher[Any, Any]]:
        """The batchers created so far, by name: their `batches`, `items` and `batch_sizes`
        show how much batching happens."""
        with self._guard:
            return dict(self._batchers)

    def batching_counts(self) -> dict[str, dict[str, int]]:
        """Per batcher, its forward passes (`batches`) and the requests in them (`items`):
        items > batches means concurrent requests shared forward passes."""
        return {
            name: {"batches": batcher.batches, "items": batcher.items}
            for name, batcher in self.batchers().items()
        }

    def _in_inference(
        self, fn: Callable[[list[I]], Sequence[R]]
    ) -> Callable[[list[I]], Sequence[R]]:
        """`fn` under inference mode, on the worker thread, with torch's thread count."""
        applied = 0  # only the batcher's one worker thread runs `run`

        def run(items: list[I]) -> Sequence[R]:
            nonlocal applied
            if (wanted := torch.get_num_threads()) != applied:
                applied = match_torch_threads(wanted)
            with self.inference():
                return fn(items)

        return run

    def close(self) -> None:
        """Stop the host's batchers (their queued requests still run) and forget them."""
        with self._guard:
            batchers = list(self._batchers.values())
            self._batchers.clear()
        for batcher in batchers:
            batcher.close()


def match_torch_threads(count: int | None = None) -> int:
    """Apply `torch.set_num_threads` (default: the process's current setting) to the calling
    thread; returns the count.

    A thread started after `torch.set_num_threads(n)` reports n but runs matrix products
    (MKL, OpenMP) on as many threads as there are cores: call this first in any thread that
    runs models. The host's batcher workers do it themselves.
    """
    count = torch.get_num_threads() if count is None else count
    torch.set_num_threads(count)
    return count


def _is_model_class(cls: Any) -> bool:
    """A transformers model class (which takes a dtype), not a tokenizer or processor."""
    try:
        from transformers import PreTrainedModel
        from transformers.models.auto.auto_factory import _BaseAutoModelClass
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, PreTrainedModel | _BaseAutoModelClass)


def _dtype_keyword() -> str:
    """transformers 4.56 renamed `torch_dtype` to `dtype`."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _has_safetensors(name: str) -> bool:
    folder = Path(name).expanduser()
    return folder.is_dir() and any(folder.glob("*.safetensors"))


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _unavailable(name: str, exc: OSError | ValueError) -> ModelUnavailableError | None:
    """The one-line `ModelUnavailableError` for a failed `from_pretrained`, or None when the
    failure is not about finding the model."""
    text = str(exc)
    if isinstance(exc, ValueError) and "trust_remote_code" in text:
        return ModelUnavailableError(
            f"model {name!r} ships its own code, which runs only with trust_remote_code "
            "turned on; turn it on (ModelHost(trust_remote_code=True)) only if you trust it"
        )
    if isinstance(exc, ValueError) and "Repo id" not in text:
        return None
    if _looks_local(name) and not Path(name).expanduser().exists():
        reason = "no such directory"
    elif "couldn't connect" in text or "offline" in text.lower():
        reason = "not in the local Hugging Face cache and the hub cannot be reached"
    else:
        reason = " ".join(text.split())[:200]
    return ModelUnavailableError(f"model {name!r} is not available ({reason}); {_PROVIDE}")


_defaults: dict[str, ModelHost] = {}
_default_guard = threading.Lock()
# transformers initialises models under process-wide context managers (meta device, skipped
# weight init) that leak into other threads: two concurrent `from_pretrained` calls can leave
# one model on the meta device ("Cannot copy out of meta tensor"). Loads take turns.
TRANSFORMERS_LOAD_LOCK = threading.Lock()


def default_host(device: str = "auto", **options: Any) -> ModelHost:
    """The process-wide host for `device` and `options` (the other `ModelHost` arguments).

    Agents with the same host settings share one host and its loaded models; an agent with
    other settings (a CUDA agent after a CPU one, another dtype or memory budget) gets a host
    of its own, so its settings are honoured.
    """
    key = repr((device, sorted(options.items())))
    with _default_guard:
        host = _defaults.get(key)
        if host is None:
            host = _defaults[key] = ModelHost(device, **options)
        return host
