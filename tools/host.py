"""The model host: the one place that loads models, once per process, on one device.

Experts ask the host for a model by key and give it a loader; the host calls the loader the
first time only (concurrent first requests wait for the same load) and keeps the result.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch

Device = Literal["auto", "cpu", "cuda", "mps"]
T = TypeVar("T")


def resolve_device(device: str) -> torch.device:
    """Turn `auto` into the best available device; check an explicit one exists."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        from sensorium.tools.errors import UserError

        raise UserError(f"device {device!r} was asked for but CUDA is not available; use 'auto'")
    return torch.device(device)


class ModelHost:
    """Loads models lazily and shares them between experts and threads."""

    def __init__(self, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.loads: dict[str, int] = {}  # how often each key was loaded: tests pin "once"
        # Several experts in one turn look at the same image: keep recent per-image outputs.
        self._memo: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self.memo_size = 256

    def get(self, key: str, loader: Callable[[torch.device], T]) -> T:
        """Return the model stored under `key`, loading it with `loader(device)` on first use."""
        if key in self._models:
            return self._models[key]  # type: ignore[no-any-return]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._models:
                model = loader(self.device)
                if isinstance(model, torch.nn.Module):
                    model.eval()
                self._models[key] = model
                self.loads[key] = self.loads.get(key, 0) + 1
        return self._models[key]  # type: ignore[no-any-return]

    def memo(self, namespace: str, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per (namespace, key) among the most recent `memo_size` results."""
        slot = (namespace, key)
        with self._guard:
            if slot in self._memo:
                self._memo.move_to_end(slot)
                return self._memo[slot]  # type: ignore[no-any-return]
        value = compute()
        with self._guard:
            self._memo[slot] = value
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
        return value

    def loaded(self) -> list[str]:
        """Keys of the models in memory."""
        return list(self._models)

    def unload(self, key: str) -> None:
        """Drop a model so the next `get` loads it again."""
        self._models.pop(key, None)


_default: ModelHost | None = None
_default_guard = threading.Lock()


def default_host(device: str = "auto") -> ModelHost:
    """The process-wide host (created on first call with `device`)."""
    global _default
    with _default_guard:
        if _default is None:
            _default = ModelHost(device)
        return _default
