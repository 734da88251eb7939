"""int8 loading lets go of the fp32 checkpoint: nothing left points into its storage.

The RSS this saves on the default model (1018 → 613 MiB in one process) is measured by
``chatref perf soak --serve-args "--quantization int8"``, never here.
"""

from __future__ import annotations

import torch

from reference.loading import LoadMode, load_model
from reference.presets import TINY_MODEL, get_preset, materialize
from reference.quant import Int8Linear, quantize_int8_


def test_no_float_tensor_of_an_int8_model_shares_the_loaded_storage() -> None:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    model = load_model(materialize(preset), LoadMode(dtype="float32", device="cpu")).model
    loaded = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    embedding = model.get_input_embeddings().weight.detach().clone()
    quantize_int8_(model)
    assert any(isinstance(m, Int8Linear) for m in model.modules())
    floats = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    assert floats and not {t.untyped_storage().data_ptr() for t in floats} & loaded
    torch.testing.assert_close(model.get_input_embeddings().weight, embedding, rtol=0, atol=0)
