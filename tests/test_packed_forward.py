"""A packed forward (decode rows and prompt chunks of several slots in one row of tokens) gives the
logits, and leaves the keys/values, that the same work done as separate forwards does (tiny model).
"""

from __future__ import annotations

import pytest
import torch

from reference.engine.runner import ModelRunner
from reference.loading import LoadedModel, LoadMode, load_model
from reference.presets import TINY_MODEL, get_preset, materialize

PROMPTS = {0: list(range(5, 40)), 1: list(range(100, 117)), 2: list(range(200, 290)), 3: list(range(60, 83))}


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    return load_model(materialize(preset), LoadMode(dtype="float32", device="cpu"))


def _top(logits: torch.Tensor) -> list[int]:
    return [int(t) for t in torch.argmax(logits, dim=-1)]


def test_packed_rounds_equal_separate_forwards(tiny: LoadedModel) -> None:
    separate = ModelRunner(tiny.model, slots=4, capacity=256)
    packed = ModelRunner(tiny.model, slots=4, capacity=256)
    assert packed.can_pack
    # slots 0 and 1 are decoding; slot 2's 90-token prompt arrives in chunks of 40, 40 and 10,
    # and slot 3's prompt in the second round beside them, all but its last token, which comes
    # alone in the third (as after a prefix-cache hit): a one-token chunk after a longer one
    last = {r: int(torch.argmax(separate.prefill(r, PROMPTS[r], 0))) for r in (0, 1)}
    assert last == {r: int(torch.argmax(packed.prefill(r, PROMPTS[r], 0))) for r in (0, 1)}
    pos = {0: len(PROMPTS[0]), 1: len(PROMPTS[1])}
    rounds = [[(2, 0, 40)], [(2, 40, 40), (3, 0, len(PROMPTS[3]) - 1)], [(2, 80, 10), (3, 22, 1)], [], []]
    for chunks in rounds:
        want = [*separate.decode([0, 1], [last[0], last[1]], [pos[0], pos[1]])]
        want += [separate.prefill(s, PROMPTS[s][a : a + n], a) for s, a, n in chunks]
        pieces = [(r, [last[r]], pos[r]) for r in (0, 1)]
        pieces += [(s, PROMPTS[s][a : a + n], a) for s, a, n in chunks]
        got = packed.packed(pieces)
        assert got.shape == (2 + len(chunks), tiny.model.config.vocab_size)
        torch.testing.assert_close(got, torch.stack(want), rtol=1e-4, atol=1e-4)
        assert _top(got) == _top(torch.stack(want))
        for r in (0, 1):
            last[r] = int(torch.argmax(got[r]))
            pos[r] += 1
    # what the packed forwards left in the KV memory decodes on as the separate ones' does
    rows, tokens, at = [0, 1, 2, 3], [last[0], last[1], 7, 9], [pos[0], pos[1], 90, len(PROMPTS[3])]
    torch.testing.assert_close(
        packed.decode(rows, tokens, at), separate.decode(rows, tokens, at), rtol=1e-4, atol=1e-4
    )
