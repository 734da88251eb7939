"""bf16 weights in oneDNN's blocked layout compute what the dense ones do, and free the dense copy.

Speed is measured by ``chatref perf`` (the bf16 mode), never here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference.engine.blocked import block_bf16_weights, onednn_bf16
from reference.engine.compiled import compile_unsupported
from reference.engine.linear import FusedLinear, fuse_projections, use_onednn_linears
from reference.engine.runner import ModelRunner
from reference.loading import LoadedModel, LoadMode, load_model
from reference.presets import TINY_MODEL, get_preset, materialize

pytestmark = pytest.mark.skipif(not onednn_bf16(), reason="oneDNN has no bf16 kernels here")


def _tiny_bf16() -> LoadedModel:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    return load_model(materialize(preset), LoadMode(dtype="bfloat16", device="cpu"))


def test_a_blocked_product_is_the_dense_one() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48, bias=True).to(torch.bfloat16))
    use_onednn_linears(model)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        dense = model[0](x)
        assert block_bf16_weights(model) == 1
        blocked = model[0](x)
    assert model[0].weight.is_meta and model[0].weight.shape == (48, 64)  # the dense bytes are gone
    # bit for bit on the AVX-512 BF16 box this was measured on; another CPU's kernels may sum apart
    torch.testing.assert_close(blocked, dense)


def test_fp32_and_the_tied_head_stay_dense() -> None:
    model = nn.Sequential(nn.Linear(8, 8))
    use_onednn_linears(model)
    assert block_bf16_weights(model) == 0 and not model[0].weight.is_meta
    loaded = _tiny_bf16()
    ModelRunner(loaded.model, slots=2, capacity=64)
    head, embedding = loaded.model.get_output_embeddings(), loaded.model.get_input_embeddings()
    assert loaded.model.config.tie_word_embeddings and head.weight is embedding.weight
    assert not head.weight.is_meta and head.blocked is None


def test_the_runner_blocks_every_stack_and_decodes_as_the_dense_model_does() -> None:
    blocked, dense = _tiny_bf16(), _tiny_bf16()
    runner = ModelRunner(blocked.model, slots=2, capacity=64)
    for layer in blocked.model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        assert type(attn.q_proj) is FusedLinear and attn.q_proj.weight.is_meta
        assert attn.q_proj.stack.product.blocked is not None and mlp.down_proj.blocked is not None
    use_onednn_linears(dense.model)  # the same products on dense weights
    fuse_projections(dense.model)
    prompt = list(range(3, 40))
    with torch.inference_mode():
        got = runner.prefill(0, prompt, 0)  # [vocab]
        want = dense.model(input_ids=torch.tensor([prompt])).logits[0, -1].float()
    # bf16 products: equal here, within bf16 rounding wherever the kernels or the runner's attention
    # (slot KV, explicit mask) sum in another order
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
    assert "blocked" in (compile_unsupported(blocked.model) or "")  # its dense weights are gone
    assert compile_unsupported(dense.model) is None
    again = ModelRunner(blocked.model, slots=2, capacity=64)  # a second eager runner reuses the blocks
    with torch.inference_mode():
        torch.testing.assert_close(again.prefill(0, prompt, 0), got, rtol=0, atol=0)
