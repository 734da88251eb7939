"""A model's ``generation_config.json`` supplies temperature/top_p when a request leaves them out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

from reference.presets import TINY_MODEL, get_preset, materialize
from tests.server import serve

ASK = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 12, "logit_bias": {"2": -100}}


def _greedy_copy(target: Path) -> Path:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    shutil.copytree(materialize(preset), target)
    config = json.loads((target / "generation_config.json").read_text())
    config.update({"temperature": 0.0, "do_sample": False})
    (target / "generation_config.json").write_text(json.dumps(config))
    return target


def test_model_defaults_apply_only_when_the_request_is_silent(tmp_path: Path) -> None:
    model_dir = _greedy_copy(tmp_path / "tiny-greedy")
    with serve(["--model", f"greedy={model_dir}", "--model", TINY_MODEL], tmp_path / "log") as srv:

        def texts(model: str, **extra: object) -> set[str]:
            out = set()
            for _ in range(3):
                r = httpx.post(
                    srv.base_url + "/chat/completions", json={"model": model, **ASK, **extra}, timeout=60
                )
                assert r.status_code == 200, r.text
                out.add(r.json()["choices"][0]["message"]["content"])
            return out

        assert len(texts("greedy")) == 1  # temperature 0 from the model's generation_config
        assert len(texts("greedy", temperature=1.0)) > 1  # the request still wins
        assert len(texts(TINY_MODEL)) > 1  # no defaults: OpenAI's temperature 1
