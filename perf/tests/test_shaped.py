"""A shape-only copy: from a model's config and tokenizer alone, the same tensors (names, shapes,
dtypes, so the same bytes per token) with other, seeded values, loadable by the server's loader."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from perf.accounting import account
from perf.shaped import COPIED, main, random_copy
from reference.loading import LoadMode, load_model
from reference.presets import TINY_MODEL, get_preset, materialize


def _shape_only(tmp_path: Path) -> tuple[Path, Path]:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    real = materialize(preset)
    source = tmp_path / "shape"
    source.mkdir()
    for name in COPIED:
        if (real / name).is_file():
            shutil.copyfile(real / name, source / name)
    assert not list(source.glob("*.safetensors"))
    return real, source


def test_random_copy_has_the_real_models_tensors_and_bytes(tmp_path: Path) -> None:
    real, source = _shape_only(tmp_path)
    copy = random_copy(source, tmp_path / "copy", seed=1)
    mode = LoadMode(dtype="float32", device="cpu")
    a, b = load_model(real, mode), load_model(copy, mode)
    want, got = a.model.state_dict(), b.model.state_dict()
    assert {k: (v.shape, v.dtype) for k, v in got.items()} == {k: (v.shape, v.dtype) for k, v in want.items()}
    assert account(b.model, 64).total == account(a.model, 64).total
    weight = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(got[weight], want[weight])
    assert b.tokenizer.encode("hello there") == a.tokenizer.encode("hello there")


def test_the_seed_decides_the_weights(tmp_path: Path) -> None:
    _, source = _shape_only(tmp_path)
    assert main([str(source), str(tmp_path / "one"), "--seed", "3"]) == 0
    random_copy(source, tmp_path / "two", seed=3)
    random_copy(source, tmp_path / "three", seed=4)
    load = [
        load_model(tmp_path / n, LoadMode(dtype="float32", device="cpu")).model
        for n in ("one", "two", "three")
    ]
    w = [m.get_input_embeddings().weight for m in load]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
