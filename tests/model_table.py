"""One server with a table of models in several modes, shared by the switching and mode tests.

Built from a TOML config file, as an operator would write it: the tiny model plain, quantized
and speculative; a second tiny model with other weights; a broken directory; a directory the
tests later booby-trap with a symlink; a fake Hugging Face cache with one hub model; the real
SmolLM2 in several modes (loaded only by the ``slow`` tests that use it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file

from reference.presets import DEFAULT_MODEL, PRESETS, TINY_MODEL, cache_dir, materialize
from tests.helpers import TIMEOUT
from tests.server import RunningServer, serve

__all__ = ["HUB_ID", "TableServer", "ask", "model_info", "table_server"]

HUB_ID = "chatref-test/tiny-from-cache"
_GGUF = cache_dir() / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"

_CONFIG = """
[server]
max_loaded = 16

[[model]]
source = "{tiny}"

[[model]]
id = "tiny-b"
source = "tiny-b"

[[model]]
id = "tiny-pl"
source = "{tiny}"
speculative = "prompt-lookup"

[[model]]
id = "tiny-draft"
source = "{tiny}"
speculative = "draft:tiny-int8"

[[model]]
source = "tiny-int8"

[[model]]
source = "tiny-bnb-4bit"

[[model]]
id = "broken"
source = "broken"

[[model]]
id = "linked"
source = "linked"

[[model]]
source = "{default}"

[[model]]
id = "smol-pl"
source = "{default}"
speculative = "prompt-lookup"
speculative_tokens = 6

[[model]]
id = "smol-draft"
source = "{default}"
speculative = "draft:{default}-int8"

[[model]]
source = "{default}-int8"
"""


def _copy_model(src: Path, dst: Path, reseed: int | None = None) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".complete"))
    if reseed is not None:  # same architecture and tokenizer, other weights: other answers
        weights = dst / "model.safetensors"
        tensors = load_file(weights)
        gen = torch.Generator().manual_seed(reseed)
        for t in tensors.values():
            if t.is_floating_point() and t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=gen) * float(t.std()))
        save_file(tensors, weights, metadata={"format": "pt"})
    return dst


def _fake_hub_cache(root: Path, tiny: Path) -> Path:
    """The layout huggingface_hub reads with ``local_files_only``: refs/main → snapshots/<rev>."""
    repo = root / ("models--" + HUB_ID.replace("/", "--"))
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    _copy_model(tiny, repo / "snapshots" / revision)
    return root


class TableServer:
    def __init__(self, server: RunningServer, root: Path) -> None:
        self.server = server
        self.root = root  # the config file's folder: broken/, linked/, tiny-b/, outside/
        self.http = httpx.Client(base_url=server.url, timeout=TIMEOUT)


_started: list[TableServer] = []  # one server for every module that imports the fixture


@pytest.fixture(scope="session")
def table_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TableServer]:
    # pytest makes one fixture per importing module; the first one starts and owns the server
    if _started:
        yield _started[0]
        return
    root = tmp_path_factory.mktemp("table")
    tiny = materialize(PRESETS[TINY_MODEL])
    _copy_model(tiny, root / "tiny-b", reseed=1)
    _copy_model(tiny, root / "linked")
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text('{"model_type": "llama", "hidden_size": "wide"}')
    config = root / "models.toml"
    text = _CONFIG.format(tiny=TINY_MODEL, default=DEFAULT_MODEL)
    if _GGUF.is_file():
        text += f'\n[[model]]\nid = "smol-gguf"\nsource = "{_GGUF}"\n'
    config.write_text(text)
    env = {"HF_HUB_CACHE": str(_fake_hub_cache(root / "hf-cache", tiny))}
    with _environ(env), serve(["--config", str(config), "--allow-hub"], root / "server.log") as srv:
        _started.append(TableServer(srv, root))
        try:
            yield _started[0]
        finally:
            _started.pop().http.close()


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)  # the server process copies the environment when it starts
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ask(http: httpx.Client, model: str, content: str = "Hello there", **body: Any) -> dict[str, Any]:
    """One chat completion; returns the JSON body, whatever the status (tests check it)."""
    payload = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8, **body}
    r = http.post("/v1/chat/completions", json=payload)
    out = dict(r.json())
    out["status"] = r.status_code
    return out


def model_info(http: httpx.Client, model: str) -> dict[str, Any]:
    r = http.get(f"/v1/models/{model}")
    assert r.status_code == 200, r.text
    return dict(r.json())
