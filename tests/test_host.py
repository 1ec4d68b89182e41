"""The model host: dtype, pretrained loading, the LRU memory budget, and micro-batching."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from sensorium.tools import ModelHost, ModelUnavailableError, UserError
from sensorium.tools.batching import MicroBatcher
from sensorium.tools.host import MB, model_bytes, resolve_dtype

# -- device and dtype ---------------------------------------------------------------------


def test_dtype_auto_is_float32_on_cpu_and_mps_and_float16_on_cuda() -> None:
    assert ModelHost("cpu").dtype == torch.float32
    assert resolve_dtype("auto", torch.device("mps")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16


def test_explicit_dtypes_and_a_bad_one() -> None:
    assert ModelHost("cpu", dtype="bfloat16").dtype == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    assert resolve_dtype(torch.float32, torch.device("cpu")) == torch.float32
    with pytest.raises(UserError, match=r"^dtype 'int8' is not one of auto, float32, float16"):
        ModelHost("cpu", dtype="int8")


def test_place_moves_casts_and_sets_eval_mode() -> None:
    host = ModelHost("cpu", dtype="bfloat16")
    model = host.place(torch.nn.Linear(4, 2))
    assert model.weight.dtype == torch.bfloat16
    assert model.weight.device.type == "cpu"
    assert not model.training


def test_inference_block_is_inference_mode() -> None:
    with ModelHost("cpu").inference():
        assert torch.is_inference_mode_enabled()
    assert not torch.is_inference_mode_enabled()


def test_memory_budget_must_be_positive() -> None:
    with pytest.raises(UserError, match=r"^memory_budget_mb must be positive or None, not 0$"):
        ModelHost("cpu", memory_budget_mb=0)


# -- load_pretrained ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BertModel saved with save_pretrained (safetensors)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(path)
    return path


def test_load_pretrained_loads_a_saved_model_in_the_hosts_dtype(tiny_bert: Path) -> None:
    from transformers import AutoModel, BertModel

    model = ModelHost("cpu").load_pretrained(BertModel, tiny_bert)
    assert isinstance(model, BertModel)
    assert model.dtype == torch.float32
    assert not model.training
    half = ModelHost("cpu", dtype="bfloat16").load_pretrained(AutoModel, tiny_bert)
    assert half.dtype == torch.bfloat16


def test_load_pretrained_passes_safetensors_dtype_and_trust_remote_code(tiny_bert: Path) -> None:
    from transformers import BertModel

    seen: dict[str, Any] = {}

    class SpyBert(BertModel):  # type: ignore[misc,no-untyped-call]
        @classmethod
        def from_pretrained(cls, name: str, **kwargs: Any) -> Any:  # type: ignore[override]
            seen.update(kwargs)
            return super().from_pretrained(name, **kwargs)

    ModelHost("cpu").load_pretrained(SpyBert, tiny_bert)
    assert seen == {"trust_remote_code": False, "dtype": torch.float32, "use_safetensors": True}


def test_load_pretrained_gives_tokenizers_only_trust_remote_code() -> None:
    seen: dict[str, Any] = {}

    class Tokenizer:
        @classmethod
        def from_pretrained(cls, name: str, **kwargs: Any) -> str:
            seen.update(kwargs)
            return name

    host = ModelHost("cpu", trust_remote_code=True)
    assert (
        host.load_pretrained(Tokenizer, "some/tokenizer", padding_side="left") == "some/tokenizer"
    )
    assert seen == {"trust_remote_code": True, "padding_side": "left"}


def test_load_pretrained_on_a_missing_directory_names_it(tmp_path: Path) -> None:
    from transformers import BertModel

    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelUnavailableError) as caught:
        ModelHost("cpu").load_pretrained(BertModel, missing)
    assert str(caught.value) == (
        f"model '{missing}' is not available (no such directory); give a local directory "
        "saved with save_pretrained, or a Hugging Face id on a machine with network access"
    )


def test_load_pretrained_on_an_uncached_hub_id_offline() -> None:
    from transformers import BertModel

    with pytest.raises(ModelUnavailableError) as caught:  # local_files_only: as if offline
        ModelHost("cpu").load_pretrained(
            BertModel, "nobody-here/no-such-model", local_files_only=True
        )
    assert str(caught.value) == (
        "model 'nobody-here/no-such-model' is not available (not in the local Hugging Face "
        "cache and the hub cannot be reached); give a local directory saved with "
        "save_pretrained, or a Hugging Face id on a machine with network access"
    )


def test_load_pretrained_refuses_remote_code_unless_configured(tmp_path: Path) -> None:
    from transformers import AutoModel

    auto_map = {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel"}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": auto_map}))
    for name in ("configuration_x.py", "modeling_x.py"):
        (tmp_path / name).write_text("raise RuntimeError('remote code ran')\n")
    with pytest.raises(ModelUnavailableError) as caught:
        ModelHost("cpu").load_pretrained(AutoModel, tmp_path)
    assert str(caught.value) == (
        f"model '{tmp_path}' ships its own code, which runs only with trust_remote_code turned "
        "on; turn it on (ModelHost(trust_remote_code=True)) only if you trust it"
    )


# -- the LRU memory budget ----------------------------------------------------------------


def linear(calls: list[str], name: str) -> Callable[[torch.device], torch.nn.Module]:
    """A loader for a 0.25 MB model (256x256 float32 weights) that records its calls."""

    def load(device: torch.device) -> torch.nn.Module:
        calls.append(name)
        return torch.nn.Linear(256, 256, bias=False).to(device)

    return load


def test_model_size_is_parameters_and_buffers() -> None:
    model = torch.nn.BatchNorm1d(64)  # 2x64 parameters, 2x64 float buffers, one int64 counter
    assert model_bytes(model) == 4 * 64 * 4 + 8
    assert model_bytes("not a model") == 0


def test_lru_evicts_least_recently_used_and_reloads_lazily() -> None:
    host = ModelHost("cpu", memory_budget_mb=0.6)  # room for two 0.25 MB models
    calls: list[str] = []
    for name in ("a", "b", "a", "c"):  # "a" used again, so "b" is the least recent
        host.get(name, linear(calls, name))
    assert host.loaded() == {"a": 0.25, "c": 0.25}
    assert host.evictions == 1
    host.get("b", linear(calls, "b"))  # reloads "b", evicting "a"
    assert list(host.loaded()) == ["c", "b"]
    assert calls == ["a", "b", "c", "b"]
    assert host.loads == {"a": 1, "b": 2, "c": 1}
    assert host.evictions == 2
    assert host.memory_mb() == 0.5


def test_a_pinned_model_is_never_evicted() -> None:
    host = ModelHost("cpu", memory_budget_mb=0.6)
    calls: list[str] = []
    with host.using("a", linear(calls, "a")) as model:
        assert isinstance(model, torch.nn.Linear)
        host.get("b", linear(calls, "b"))
        host.get("c", linear(calls, "c"))  # over budget: "a" is older but pinned
        assert list(host.loaded()) == ["a", "c"]
    host.get("d", linear(calls, "d"))  # "a" is no longer pinned and is now the oldest
    assert list(host.loaded()) == ["c", "d"]
    assert calls == ["a", "b", "c", "d"]


def test_a_model_bigger_than_the_budget_still_loads() -> None:
    host = ModelHost("cpu", memory_budget_mb=0.1)
    calls: list[str] = []
    host.get("a", linear(calls, "a"))
    host.get("b", linear(calls, "b"))
    assert host.loaded() == {"b": 0.25}


def test_size_of_hook_sizes_other_objects() -> None:
    host = ModelHost("cpu", size_of=lambda obj: 3 * MB if isinstance(obj, str) else None)
    host.get("text", lambda _device: "a big string")
    host.get("linear", lambda _device: torch.nn.Linear(256, 256, bias=False))
    host.get("unknown", lambda _device: object())
    assert host.loaded() == {"text": 3.0, "linear": 0.25, "unknown": 0.0}


def test_unload_then_get_loads_again() -> None:
    host = ModelHost("cpu")
    calls: list[str] = []
    host.get("a", linear(calls, "a"))
    host.unload("a")
    assert host.loaded() == {}
    host.get("a", linear(calls, "a"))
    assert calls == ["a", "a"]


def test_concurrent_first_gets_share_one_load() -> None:
    host = ModelHost("cpu")
    calls: list[str] = []
    slow = linear(calls, "a")

    def load(device: torch.device) -> torch.nn.Module:
        time.sleep(0.05)  # long enough for every thread to arrive
        return slow(device)

    models: list[torch.nn.Module] = []
    threads = [
        threading.Thread(target=lambda: models.append(host.get("a", load))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["a"]
    assert all(model is models[0] for model in models)


# -- micro-batching -----------------------------------------------------------------------


class Gated:
    """A batch function that records batch sizes and holds its first batch until `open()`,
    so a test can queue requests behind it and know exactly how they will be batched."""

    def __init__(self, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.fail = fail

    def __call__(self, items: list[int]) -> list[int]:
        self.sizes.append(len(items))
        self.entered.set()
        self.gate.wait(10)
        if self.fail:
            raise ValueError(f"boom on {items}")
        return [item * 10 for item in items]

    def open(self) -> None:
        self.gate.set()


@pytest.fixture
def gated() -> Iterator[tuple[Gated, MicroBatcher[int, int]]]:
    """A batcher of at most 4 items on a `Gated` function whose first batch is running."""
    fn = Gated()
    batcher = MicroBatcher(fn, max_batch=4, max_wait_ms=50, name="gated")
    first = batcher.submit_future(0)
    assert fn.entered.wait(10)
    yield fn, batcher
    fn.open()
    assert first.result(10) == 0
    batcher.close(timeout=10)


def test_queued_requests_form_batches_of_at_most_max_batch(
    gated: tuple[Gated, MicroBatcher[int, int]],
) -> None:
    fn, batcher = gated
    futures = [batcher.submit_future(i) for i in range(1, 11)]
    fn.open()
    assert [future.result(10) for future in futures] == [i * 10 for i in range(1, 11)]
    assert fn.sizes == [1, 4, 4, 2]
    assert list(batcher.batch_sizes) == [1, 4, 4, 2]
    assert (batcher.batches, batcher.items) == (4, 11)


def test_concurrent_callers_get_their_own_results_in_shared_batches() -> None:
    sizes: list[int] = []

    def fn(items: list[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.005)  # a forward pass, during which more callers queue up
        return [item * item for item in items]

    results: dict[int, int] = {}
    start = threading.Barrier(16)

    def caller(worker: int) -> None:
        start.wait()
        for step in range(8):
            item = worker * 100 + step
            results[item] = batcher.submit(item, timeout=30)

    with MicroBatcher(fn, max_batch=16, max_wait_ms=20) as batcher:
        threads = [threading.Thread(target=caller, args=(worker,)) for worker in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {item: item * item for item in results}
    assert len(results) == 16 * 8
    assert sum(sizes) == 16 * 8
    assert max(sizes) > 1  # batches formed
    assert max(sizes) <= 16


def test_an_exception_reaches_every_caller_of_the_batch() -> None:
    fn = Gated(fail=True)
    with MicroBatcher(fn, max_batch=8, max_wait_ms=50) as batcher:
        first = batcher.submit_future(0)
        assert fn.entered.wait(10)
        futures = [batcher.submit_future(i) for i in range(1, 4)]
        fn.open()
        errors = [future.exception(10) for future in [first, *futures]]
    assert [str(error) for error in errors] == ["boom on [0]"] + ["boom on [1, 2, 3]"] * 3
    assert all(isinstance(error, ValueError) for error in errors)


def test_a_wrong_number_of_results_is_an_error_for_every_caller() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: [*items, 0], name="extra")
    with batcher, pytest.raises(UserError) as caught:
        batcher.submit(1)
    assert str(caught.value) == (
        "batcher 'extra': the batch function returned 2 results for a batch of 1; "
        "it must return one per item, in order"
    )


def test_asubmit_from_asyncio() -> None:
    sizes: list[int] = []

    def fn(items: list[str]) -> list[str]:
        sizes.append(len(items))
        return [item.upper() for item in items]

    async def main(batcher: MicroBatcher[str, str]) -> list[str]:
        return await asyncio.gather(*(batcher.asubmit(word) for word in ["a", "b", "c", "d"]))

    with MicroBatcher(fn, max_batch=4, max_wait_ms=200) as batcher:
        assert asyncio.run(main(batcher)) == ["A", "B", "C", "D"]
    assert sum(sizes) == 4


def test_close_runs_what_is_queued_then_stops_the_worker() -> None:
    fn = Gated()
    batcher = MicroBatcher(fn, max_batch=2, max_wait_ms=50, name="closing")
    futures = [batcher.submit_future(0)]
    assert fn.entered.wait(10)
    futures += [batcher.submit_future(i) for i in range(1, 4)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    fn.open()
    closer.join(10)
    assert [future.result(0) for future in futures] == [0, 10, 20, 30]
    assert batcher.closed
    assert not batcher.running
    with pytest.raises(UserError, match=r"^batcher 'closing' is closed; create a new one$"):
        batcher.submit(4)
    batcher.close()  # a second close does nothing


def test_submit_timeout_drops_a_request_still_queued(
    gated: tuple[Gated, MicroBatcher[int, int]],
) -> None:
    fn, batcher = gated
    with pytest.raises(TimeoutError):
        batcher.submit(1, timeout=0.01)
    later: Future[int] = batcher.submit_future(2)
    fn.open()
    assert later.result(10) == 20
    assert fn.sizes == [1, 1]  # the timed-out request never ran


def test_submit_from_inside_the_batch_function_is_refused() -> None:
    def fn(items: list[int]) -> list[int]:
        return [batcher.submit(item) for item in items]

    with MicroBatcher(fn, name="loop") as batcher, pytest.raises(UserError) as caught:
        batcher.submit(1)
    assert str(caught.value).startswith(
        "batcher 'loop': submit was called from inside its own batch function"
    )


def test_bad_batcher_settings() -> None:
    with pytest.raises(UserError, match=r"^batcher 'x': max_batch must be at least 1, not 0$"):
        MicroBatcher(lambda items: items, max_batch=0, name="x")
    with pytest.raises(UserError, match=r"^batcher 'x': max_wait_ms must be >= 0, not -1$"):
        MicroBatcher(lambda items: items, max_wait_ms=-1, name="x")


def test_host_batcher_is_shared_runs_in_inference_mode_and_closes() -> None:
    host = ModelHost("cpu")
    model = host.get("double", lambda _device: torch.nn.Linear(1, 1, bias=False))
    torch.nn.init.constant_(model.weight, 2.0)

    def forward(items: list[float]) -> list[float]:
        assert torch.is_inference_mode_enabled()
        net = host.get("double", lambda _device: torch.nn.Linear(1, 1))
        return net(torch.tensor(items)[:, None])[:, 0].tolist()  # type: ignore[no-any-return]

    batcher = host.batcher("double", forward)
    assert host.batcher("double", lambda items: items) is batcher
    assert batcher.submit(1.5) == 3.0
    host.close()
    assert batcher.closed
    assert not batcher.running


def test_threads_missing_the_same_memo_slot_compute_it_once() -> None:
    host = ModelHost("cpu")
    calls: list[int] = []
    started = threading.Event()

    def compute() -> int:
        calls.append(1)
        started.set()
        time.sleep(0.2)  # long enough that the other threads arrive while it runs
        return 42

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(host.memo, "probs", "image-a", compute)
        started.wait()
        others = [pool.submit(host.memo, "probs", "image-a", compute) for _ in range(3)]
        results = [first.result(), *(f.result() for f in others)]
    assert results == [42] * 4 and len(calls) == 1
    assert host.memo("probs", "image-b", lambda: 7) == 7  # another slot computes on its own


def test_a_failed_memo_computation_is_retried() -> None:
    host = ModelHost("cpu")

    def boom() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        host.memo("probs", "x", boom)
    assert host.memo("probs", "x", lambda: 1) == 1


def test_host_submit_batches_concurrent_items_with_the_hosts_settings() -> None:
    host = ModelHost("cpu", max_batch=3, max_wait_ms=60_000)  # a batch closes at 3 items
    seen: list[tuple[list[int], str, bool]] = []

    def double(items: list[int]) -> list[int]:
        seen.append((items, threading.current_thread().name, torch.is_inference_mode_enabled()))
        return [item * 2 for item in items]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda item: host.submit("double", double, item), [1, 2, 3]))
    assert results == [2, 4, 6]
    ((items, thread, inference),) = seen
    assert sorted(items) == [1, 2, 3]
    assert thread == "microbatcher-double" and inference
    assert list(host.batchers()) == ["double"]
    assert host.batchers()["double"].max_wait_ms == 60_000
    host.close()


def test_host_submit_without_batching_runs_in_the_callers_thread() -> None:
    host = ModelHost("cpu", max_batch=1)
    seen: list[tuple[str, bool]] = []

    def double(items: list[int]) -> list[int]:
        seen.append((threading.current_thread().name, torch.is_inference_mode_enabled()))
        return [item * 2 for item in items]

    assert host.submit("double", double, 21) == 42
    assert seen == [(threading.current_thread().name, True)]
    assert host.batchers() == {}


@pytest.mark.parametrize("options", [{"max_batch": 0}, {"max_wait_ms": -1}])
def test_host_refuses_impossible_batching_settings(options: dict[str, float]) -> None:
    with pytest.raises(UserError, match="max_batch must be at least 1"):
        ModelHost("cpu", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_batch", [1, 4])
def test_host_asubmit_serves_asyncio_callers(max_batch: int) -> None:
    host = ModelHost("cpu", max_batch=max_batch, max_wait_ms=200)
    sizes: list[int] = []

    def upper(items: list[str]) -> list[str]:
        sizes.append(len(items))
        return [item.upper() for item in items]

    async def main() -> list[str]:
        return await asyncio.gather(*(host.asubmit("upper", upper, w) for w in "abcd"))

    assert asyncio.run(main()) == ["A", "B", "C", "D"]
    assert sizes == ([4] if max_batch == 4 else [1, 1, 1, 1])
    host.close()


def test_agents_with_other_host_settings_get_a_host_of_their_own(tmp_path: Path) -> None:
    from sensorium import Agent, LLMSettings, Settings

    plain = Settings(data_dir=tmp_path / "data", llm=LLMSettings(backend="none"))
    other = plain.model_copy(update={"dtype": "bfloat16", "memory_budget_mb": 512.0})
    first, second = Agent(plain), Agent(other)
    assert second.host is not first.host
    assert (second.host.dtype, second.host.memory_budget_mb) == (torch.bfloat16, 512.0)
    assert (first.host.dtype, first.host.memory_budget_mb) == (torch.float32, None)
    assert Agent(plain.model_copy()).host is first.host  # same settings: models are shared
