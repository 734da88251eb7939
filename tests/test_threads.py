"""Small forwards run on one thread, their wide products on every thread, and the count comes back.

The speed this buys is measured by ``chatref perf`` and docs/perf.md, never here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from reference.cli.serve import settings_from_args
from reference.engine import Engine, SchedulerConfig
from reference.engine.runner import ModelRunner
from reference.engine.threads import SERIAL_TOKENS, WIDE_WEIGHT_BYTES, ThreadPlan, default_serial_tokens
from reference.kernels import q8
from reference.loading import LoadedModel, LoadMode, load_model
from reference.presets import TINY_MODEL, get_preset, materialize
from reference.quant import Int8Linear
from reference.settings import SettingsError


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # on a one-core machine too: only the count is checked
    yield
    torch.set_num_threads(before)


def _tiny(quantization: str = "none") -> LoadedModel:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    return load_model(materialize(preset), LoadMode(dtype="float32", device="cpu", quantization=quantization))


class _Seen:
    """The thread count each product ran with, as a hook registered after the plan's observes it."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.counts: dict[int, list[int]] = {id(m): [] for m in modules}
        for m in modules:
            m.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, *_: Any) -> None:
        self.counts[id(module)].append(torch.get_num_threads())


def test_the_default_follows_the_wait_policy_and_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert default_serial_tokens(torch.device("cpu")) == SERIAL_TOKENS
    assert default_serial_tokens(torch.device("cuda")) == 0
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert default_serial_tokens(torch.device("cpu")) == 0  # spinning threads: a wake is cheap
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert default_serial_tokens(torch.device("cpu")) == 0


def test_a_small_forward_runs_one_thread_but_its_wide_products_every_thread(two_threads: None) -> None:
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 256), nn.Linear(256, 4))
    wide = 16 * 256 * 4  # bytes of the middle weight: only it is wide
    plan = ThreadPlan(model, serial_tokens=4, wide_bytes=wide)
    assert plan.wide_products == 1
    seen = _Seen([model[0], model[2], model[3]])
    with torch.inference_mode():
        with plan.forward(4):
            model(torch.randn(4, 16))
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with plan.forward(5):  # more tokens than serial_tokens: every kernel on every thread
            model(torch.randn(5, 16))
    assert seen.counts[id(model[0])] == [1, 2]
    assert seen.counts[id(model[2])] == [2, 2]
    assert seen.counts[id(model[3])] == [1, 2]


def test_a_layer_streams_wide_on_its_products_bytes_together(two_threads: None) -> None:
    layer = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))  # 2 x 4096 bytes
    plan = ThreadPlan(layer, serial_tokens=4, wide_bytes=16 * 64 * 4 + 1, wide_layer_bytes=2 * 16 * 64 * 4)
    assert not plan.is_wide(layer) and plan.wide_products == 0  # neither product alone
    assert plan.streams_wide(layer)  # both together, as one compiled layer reads them
    assert not ThreadPlan(layer, serial_tokens=4, wide_layer_bytes=2 * 16 * 64 * 4 + 1).streams_wide(layer)


def test_block_int8_products_split_on_their_own_and_leave_the_plan_narrow(two_threads: None) -> None:
    """chatref's int8 kernel splits a large product over its own workers, whatever torch's count: the
    plan neither widens it nor counts its bytes toward a compiled layer's threads."""
    big = nn.Linear(2048, 2048)  # 4 MiB of int8: wide at the thresholds below
    weight, scales = q8.quantize_blocks(big.weight)
    layer = nn.Sequential(Int8Linear(weight, scales, None))
    plan = ThreadPlan(layer, serial_tokens=4, wide_bytes=1, wide_layer_bytes=1)
    assert plan.wide_products == 0 and not plan.is_wide(layer) and not plan.streams_wide(layer)
    rows = nn.Sequential(Int8Linear.from_linear(big))  # torch's layout: torch's threads
    plan = ThreadPlan(rows, serial_tokens=4, wide_bytes=1, wide_layer_bytes=1)
    assert plan.wide_products == 1 and plan.is_wide(rows) and plan.streams_wide(rows)


def test_off_means_no_hooks_and_no_change(two_threads: None) -> None:
    model = nn.Sequential(nn.Linear(16, 256))
    plan = ThreadPlan(model, serial_tokens=0, wide_bytes=1)
    assert plan.wide_products == 0
    with plan.forward(1):
        assert torch.get_num_threads() == 2


def test_a_failed_forward_and_two_plans_interleaved_leave_every_thread(two_threads: None) -> None:
    a, b = ThreadPlan(nn.Linear(2, 2), serial_tokens=8), ThreadPlan(nn.Linear(2, 2), serial_tokens=8)
    with pytest.raises(RuntimeError), a.forward(1):
        raise RuntimeError("a forward failed")
    assert torch.get_num_threads() == 2
    entered_a, entered_b = a.forward(1), b.forward(1)
    entered_a.__enter__()
    entered_b.__enter__()  # b reads 1 here, and must not restore that
    built_meanwhile = ThreadPlan(nn.Linear(2, 2), serial_tokens=8)  # another model loading
    entered_a.__exit__(None, None, None)
    entered_b.__exit__(None, None, None)
    assert torch.get_num_threads() == 2
    assert built_meanwhile.threads == 2


def test_the_runner_decodes_the_same_tokens_on_one_thread(two_threads: None) -> None:
    for quantization in ("none", "int8"):
        serial, plain = _tiny(quantization), _tiny(quantization)
        one = ModelRunner(serial.model, slots=2, capacity=64, warm_rows=4, serial_tokens=SERIAL_TOKENS)
        every = ModelRunner(plain.model, slots=2, capacity=64, warm_rows=4, serial_tokens=0)
        head = serial.model.get_output_embeddings()  # 49152 x 64: wide in fp32, narrow in int8
        seen = _Seen([head])
        prompt = list(range(3, 40))  # 37 tokens: a prefill on every thread, then serial decode rows
        tokens: list[list[int]] = []
        for runner in (one, every):
            logits = runner.prefill(0, prompt, 0)
            out = [int(torch.argmax(logits))]
            for i in range(8):
                out.append(int(torch.argmax(runner.decode([0], [out[-1]], [len(prompt) + i])[0])))
            tokens.append(out)
            assert torch.get_num_threads() == 2
        assert tokens[0] == tokens[1]
        wide = head.weight.numel() * head.weight.element_size() >= WIDE_WEIGHT_BYTES
        assert seen.counts[id(head)] == [2] + [2 if wide else 1] * 8, quantization


def test_the_flag_reaches_the_engines_runner_and_is_checked(two_threads: None) -> None:
    assert settings_from_args(["--serial-tokens", "0"]).engine.serial_tokens == 0
    assert settings_from_args([]).engine.serial_tokens is None  # by the wait policy
    with pytest.raises(SettingsError, match="--serial-tokens must be a non-negative integer"):
        settings_from_args(["--serial-tokens", "-1"])
    tiny = _tiny()
    for serial_tokens in (0, 3):
        engine = Engine(
            tiny.model,
            context_length=tiny.context_length,
            vocab_size=tiny.vocab_size,
            config=SchedulerConfig(serial_tokens=serial_tokens),
        )
        try:
            assert engine.runner.threads.serial_tokens == serial_tokens
        finally:
            engine.close()
