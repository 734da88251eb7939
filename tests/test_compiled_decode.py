"""The compiled decode step gives the eager runner's greedy tokens (tiny model, one bucket).

One batch bucket of 2 keeps the compile to one body and one head graph (about a minute cold on a busy
2-core box; seconds from inductor's cache): two rows at different positions fill it, one row is
padded up to it (the scratch slot takes the padding). Speed is measured by ``chatref perf``,
never here.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from reference.engine.compiled import bucket_for, compile_unsupported, decode_buckets
from reference.engine.decode_graph import attend, rotary_table
from reference.engine.runner import ModelRunner
from reference.kernels import f32, q8
from reference.loading import LoadedModel, LoadMode, load_model
from reference.presets import TINY_MODEL, get_preset, materialize

PROMPTS = {0: list(range(5, 40)), 1: list(range(100, 117))}  # 35 and 17 positions


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    return load_model(materialize(preset), LoadMode(dtype="float32", device="cpu"))


def _greedy(runner: ModelRunner, rows: list[int], steps: int) -> tuple[dict[int, list[int]], torch.Tensor]:
    """Prefill each row's prompt, then ``steps`` batched decode steps; the tokens and last logits."""
    last = {r: int(torch.argmax(runner.prefill(r, PROMPTS[r], 0))) for r in rows}
    out: dict[int, list[int]] = {r: [] for r in rows}
    logits = torch.empty(0)
    for i in range(steps):
        logits = runner.decode(rows, [last[r] for r in rows], [len(PROMPTS[r]) + i for r in rows])
        for r, row in zip(rows, logits, strict=True):
            last[r] = int(torch.argmax(row))
            out[r].append(last[r])
    return out, logits


def test_buckets_cover_every_batch() -> None:
    assert decode_buckets(8) == (1, 2, 4, 8) and decode_buckets(6) == (1, 2, 4, 6)
    assert decode_buckets(1) == (1,)
    assert [bucket_for(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]


def test_compiled_greedy_tokens_equal_eager(tiny: LoadedModel) -> None:
    eager = ModelRunner(tiny.model, slots=2, capacity=128)
    compiled = ModelRunner(tiny.model, slots=2, capacity=128, compile=True, buckets=(1, 2))
    assert compiled.compiled is not None
    compiled.compiled.warm_up(lambda _: None)
    want, want_logits = _greedy(eager, [0, 1], 24)
    got, got_logits = _greedy(compiled, [0, 1], 24)
    assert got == want
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-4, atol=1e-4)
    # fp32 products run on chatref's kernel in both graphs where it builds (reference.kernels.f32)
    linears = [m for m in tiny.model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(getattr(m, "chatref_f32", False) for m in linears) == f32.available()
    # one row alone takes the single-row graph; its attended span crosses 16-position roundings
    alone, _ = _greedy(compiled, [1], 40)
    assert alone[1] == _greedy(eager, [1], 40)[0][1]


def test_cpu_buckets_are_batched_where_the_float_kernel_multiplies(tiny: LoadedModel) -> None:
    runner = ModelRunner(tiny.model, slots=4, capacity=64, compile=True)  # compiles at first decode
    assert runner.compiled is not None
    assert runner.compiled.buckets == ((1, 2, 4) if f32.available() else (1,))
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    int8 = load_model(materialize(preset), LoadMode(dtype="float32", device="cpu", quantization="int8"))
    runner = ModelRunner(int8.model, slots=4, capacity=64, compile=True)
    assert runner.compiled is not None  # the int8 kernel's products, not torch's: batched too
    assert runner.compiled.buckets == ((1, 2, 4) if q8.available() else (1,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_attention_is_sdpa(dtype: torch.dtype) -> None:
    """The CPU step's attention, written as fusable sums, against torch's SDPA: 8 heads over 2 kv
    heads, two rows whose masks end at different positions."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 8, 1, 16, generator=gen).to(dtype)  # [B, H, 1, D]
    keys = torch.randn(2, 2, 37, 16, generator=gen).to(dtype)  # [B, Hkv, L, D]
    values = torch.randn(2, 2, 37, 16, generator=gen).to(dtype)
    mask = (torch.arange(37)[None, :] <= torch.tensor([[20], [36]]))[:, None, None]  # [B, 1, 1, L]
    want = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=0.25, enable_gqa=True)
    got = attend(q, keys, values, mask, 0.25)
    assert got.dtype == dtype and got.shape == want.shape
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_rotary_table_rows_are_the_models_own(tiny: LoadedModel) -> None:
    inner = tiny.model.model
    table = rotary_table(inner, 64, torch.device("cpu"))  # [2, 64, D]
    pos = torch.tensor([[0, 7, 63]])
    cos, sin = inner.rotary_emb(inner.embed_tokens(pos), pos)  # [1, 3, D]
    assert torch.equal(table[0, pos[0]], cos[0]) and torch.equal(table[1, pos[0]], sin[0])


def test_unsupported_models_say_why() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    reason = compile_unsupported(model)
    assert reason is not None and "gpt2" in reason

    def llama(**rope: Any) -> LlamaForCausalLM:  # one small layer
        shape: dict[str, Any] = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64}
        config = LlamaConfig(vocab_size=64, num_attention_heads=2, **shape, **rope)
        return LlamaForCausalLM(config)

    assert compile_unsupported(llama()) is None
    # its angles change with the sequence's length, where the step reads them from a table
    reason = compile_unsupported(llama(rope_scaling={"rope_type": "dynamic", "factor": 2.0}))
    assert reason is not None and "dynamic" in reason
