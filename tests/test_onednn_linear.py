"""The runner's oneDNN linears compute what ``nn.Linear`` computes, on the tiny model's own modules.

Speed is measured by ``python -m perf.linear_rows``, ``chatref perf`` and ``chatref perf load``,
never here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference.engine.linear import (
    MAX_EXACT_ROWS,
    FusedInt8Linear,
    FusedLinear,
    OneDnnLinear,
    fuse_projections,
    onednn_available,
    row_bucket,
    use_onednn_linears,
    warm_onednn_linears,
)
from reference.engine.runner import ModelRunner
from reference.loading import LoadedModel, LoadMode, load_model
from reference.presets import TINY_MODEL, get_preset, materialize
from reference.quant import Int8Linear

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    return load_model(materialize(preset), LoadMode(dtype="float32", device="cpu"))


@pytest.fixture(scope="module")
def runner(tiny: LoadedModel) -> ModelRunner:
    return ModelRunner(tiny.model, slots=4, capacity=64)


def test_the_runner_retypes_every_linear_and_keeps_the_head_tied(
    tiny: LoadedModel, runner: ModelRunner
) -> None:
    linears = [m for m in tiny.model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(isinstance(m, OneDnnLinear) for m in linears)
    for layer in tiny.model.model.layers:  # each input's projections are stacked: q, k, v and gate, up
        attn, mlp = layer.self_attn, layer.mlp
        assert all(
            type(p) is FusedLinear
            for p in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj)
        )
        assert attn.q_proj.stack is attn.v_proj.stack and mlp.gate_proj.stack is mlp.up_proj.stack
        assert type(attn.o_proj) is OneDnnLinear and type(mlp.down_proj) is OneDnnLinear
    head = tiny.model.get_output_embeddings()
    if tiny.model.config.tie_word_embeddings:
        assert head.weight is tiny.model.get_input_embeddings().weight
    assert use_onednn_linears(tiny.model) == 0  # a second runner over the same model changes nothing
    assert fuse_projections(tiny.model) == 0


@pytest.mark.parametrize("rows", [1, 2, 8, 64, 300])
def test_products_match_f_linear(tiny: LoadedModel, runner: ModelRunner, rows: int) -> None:
    head = tiny.model.get_output_embeddings()
    x = torch.randn(rows, 1, head.in_features, generator=torch.Generator().manual_seed(rows))  # [M, 1, in]
    with torch.inference_mode():
        got, want = head(x), F.linear(x, head.weight, head.bias)  # [M, 1, vocab]
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 8, 300])
def test_stacked_projections_keep_their_weights_and_products(tiny: LoadedModel, runner: ModelRunner,
                                                             rows: int) -> None:  # fmt: skip
    fresh = load_model(materialize(get_preset(TINY_MODEL)), LoadMode(dtype="float32", device="cpu"))  # type: ignore[arg-type]
    attn, ref = tiny.model.model.layers[1].self_attn, fresh.model.model.layers[1].self_attn
    projections = (attn.q_proj, attn.k_proj, attn.v_proj)
    x = torch.randn(rows, 1, attn.q_proj.in_features, generator=torch.Generator().manual_seed(rows))
    with torch.inference_mode():
        got = [p(x) for p in projections]  # the model's calling pattern: one input, in turn
    for p, want, name in zip(projections, got, ("q_proj", "k_proj", "v_proj"), strict=True):
        original = getattr(ref, name).weight
        torch.testing.assert_close(p.weight, original, rtol=0, atol=0)  # the same values, a view now
        assert (
            p.weight.untyped_storage().data_ptr()
            == attn.q_proj.stack.product.weight.untyped_storage().data_ptr()
        )
        torch.testing.assert_close(want, F.linear(x, original), rtol=1e-5, atol=1e-5)
    other = torch.randn(rows, 1, attn.k_proj.in_features)
    with torch.inference_mode():
        attn.q_proj(x)
        k_other = attn.k_proj(other)  # another input than q's: its own product, not q's stacked one
    torch.testing.assert_close(k_other, F.linear(other, ref.k_proj.weight), rtol=1e-5, atol=1e-5)


def test_one_row_of_a_batched_step_equals_that_row_alone(runner: ModelRunner) -> None:
    for slot in range(3):
        runner.prefill(slot, list(range(10 + slot, 30 + slot)), 0)
    both = runner.decode([0, 1, 2], [5, 6, 7], [20, 20, 20])  # [3, vocab]
    alone = runner.decode([1], [6], [20])  # [1, vocab]
    torch.testing.assert_close(both[1], alone[0], rtol=1e-4, atol=1e-4)
    assert int(both[1].argmax()) == int(alone[0].argmax())


def test_bf16_with_a_bias_and_a_three_d_input() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8).to(torch.bfloat16))
    assert use_onednn_linears(model) == 1 and type(model[0]) is OneDnnLinear
    x = torch.randn(2, 3, 16, dtype=torch.bfloat16)  # [B, T, in]
    with torch.inference_mode():
        got = model[0](x)
    want = F.linear(x.float(), model[0].weight.float(), model[0].bias.float())
    assert got.shape == (2, 3, 8)
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)


def test_with_autograd_it_is_a_plain_linear() -> None:
    lin = nn.Linear(4, 3)
    use_onednn_linears(nn.Sequential(lin))
    x = torch.randn(2, 4, requires_grad=True)
    lin(x).sum().backward()  # oneDNN's inference op records no graph; the fallback does
    assert x.grad is not None and x.grad.shape == (2, 4)


def test_other_dtypes_and_module_types_are_left_alone() -> None:
    class Custom(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(4, 4).to(torch.float16), Custom(4, 4), nn.Linear(4, 4))
    assert use_onednn_linears(model) == 1
    assert type(model[0]) is nn.Linear and type(model[1]) is Custom and type(model[2]) is OneDnnLinear


@pytest.mark.parametrize("exact", [8, 72])
def test_row_buckets_waste_at_most_an_eighth_and_hold_eight_per_doubling(exact: int) -> None:
    for rows in range(1, 4097):
        bucket = row_bucket(rows, exact)
        assert rows <= bucket <= rows * 9 / 8
        assert bucket == rows if rows <= exact else row_bucket(bucket, exact) == bucket
    for lo in (128, 256, 512, 1024, 2048):  # above the exact range the kernels per shape are bounded
        assert len({row_bucket(r, exact) for r in range(lo + 1, 2 * lo + 1)}) == 8


def test_warming_compiles_each_shape_once_and_wider_products_still_match() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 48), nn.Linear(32, 48), nn.Linear(48, 32, bias=False))
    assert use_onednn_linears(model) == 3
    assert warm_onednn_linears(model, 12) == 2 * 12  # two shapes; the second (32, 48) shares the first's
    assert all(m.exact_rows == 12 for m in model)
    assert warm_onednn_linears(model, 10_000) == 2 * MAX_EXACT_ROWS  # a huge budget: a bounded range
    assert all(m.exact_rows == MAX_EXACT_ROWS for m in model)
    second = model[1]
    assert isinstance(second, OneDnnLinear)
    for rows in (5, 12, 13, 100):  # 13 and 100 run padded to 14 and 104 rows
        x = torch.randn(rows, 32)
        with torch.inference_mode():
            got = second(x)
        assert got.shape == (rows, 48) and got.is_contiguous()
        torch.testing.assert_close(got, F.linear(x, second.weight, second.bias), rtol=1e-5, atol=1e-5)


def test_a_runner_built_with_warm_rows_runs_that_many_rows_unpadded(tiny: LoadedModel) -> None:
    ModelRunner(tiny.model, slots=2, capacity=64, warm_rows=20)
    head = tiny.model.get_output_embeddings()
    body = [m for m in tiny.model.modules() if isinstance(m, OneDnnLinear) and m is not head]
    products = [m.stack.product if isinstance(m, FusedLinear) else m for m in body]  # what multiplies
    assert products and all(m.exact_rows == 20 for m in products)
    assert head.exact_rows == 3  # only one position per slot reaches the head in a round


def test_int8_projections_stack_with_their_row_scales() -> None:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    model = load_model(
        materialize(preset), LoadMode(dtype="float32", device="cpu", quantization="int8")
    ).model
    attn = model.model.layers[0].self_attn
    separate = [
        Int8Linear(p.weight.clone(), p.scales.clone(), p.bias)
        for p in (attn.q_proj, attn.k_proj, attn.v_proj)
    ]
    assert fuse_projections(model) == 2 * len(model.model.layers)
    assert all(type(p) is FusedInt8Linear for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    x = torch.randn(3, 1, attn.q_proj.in_features, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got = [attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)]
        want = [p(x) for p in separate]
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-2, atol=1e-2)  # bf16 products, each row its own scale
