"""The model table from flags and config files, and model lifetime on a real server:
concurrent first load, LRU eviction, idle unload, pinned models."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from reference.cli.serve import settings_from_args
from reference.config import ConfigError, is_hub_id, parse_model_spec
from reference.engine.compiled import COMPILE_DEFAULT
from reference.loading import SourceUnavailable
from reference.presets import DEFAULT_MODEL, PRESETS, TINY_MODEL, materialize
from reference.settings import hub_source, model_source
from tests.helpers import TIMEOUT, chat_body
from tests.server import serve


def _sources(*argv: str) -> dict[str, object]:
    return {s.id: s for s in settings_from_args(list(argv)).sources()}


def test_default_table_is_the_default_model() -> None:
    assert list(_sources()) == [DEFAULT_MODEL]


def test_model_spec_syntax() -> None:
    spec = parse_model_spec("fast=tiny,quantization=int8,alias=f,alias=quick,pinned,speculative-tokens=6")
    assert (spec.id, spec.source, spec.aliases, spec.pinned) == ("fast", "tiny", ("f", "quick"), True)
    assert spec.options.quantization == "int8" and spec.options.speculative_tokens == 6


def test_compile_is_a_mode_key_of_flags_specs_and_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[server]\ncompile = true\n[[model]]\nid = "off"\nsource = "tiny"\ncompile = false\n')
    settings = settings_from_args(["--config", str(config), "--model", "tiny"])
    table = {s.id: s.compile for s in settings.sources()}
    assert table == {"tiny-random-llama": True, "off": False}
    assert [s.compile for s in settings_from_args(["--model", "tiny,compile=yes"]).sources()] == [True]
    assert [s.compile for s in settings_from_args(["--no-compile"]).sources()] == [False]
    assert [s.compile for s in settings_from_args([]).sources()] == [COMPILE_DEFAULT]


@pytest.mark.parametrize(
    "spec",
    [
        "tiny,compile=maybe",
        "tiny,quantization=int4",
        "tiny,speculative=medusa",
        "tiny,color=red",
        "../x=tiny",
        "tiny,attn=org/kernel",
    ],
)
def test_bad_model_specs_stop_the_server_at_start(spec: str) -> None:
    with pytest.raises(ConfigError):
        settings_from_args(["--model", spec]).sources()


def test_preset_variants_flags_and_config_layers(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[server]\nmax_loaded = 3\ndtype = "bfloat16"\nquantization = "int8"\n'
        '[[model]]\nid = "spec"\nsource = "tiny"\nspeculative = "draft:tiny-bnb-4bit"\n'
        'quantization = "none"\n'
    )
    s = settings_from_args(["--config", str(config), "--model", "tiny-bnb-4bit", "--dtype", "float32"])
    assert s.max_loaded == 3
    table = {src.id: src for src in s.sources()}
    assert list(table) == [f"{TINY_MODEL}-bnb-4bit", "spec"]  # flags' models first: the default
    variant = table[f"{TINY_MODEL}-bnb-4bit"]
    assert variant.aliases == ("tiny-bnb-4bit",) and variant.mode.quantization == "bnb-4bit"
    assert variant.mode.dtype == "float32"  # the flag over the file's [server]
    spec = table["spec"]
    assert spec.mode.quantization == "none" and spec.speculative.draft == "tiny-bnb-4bit"


def test_config_errors_name_the_place(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[model]]\nsource = "tiny"\nquantisation = "int8"\n')
    with pytest.raises(ConfigError, match=r"\[\[model\]\] #1: unknown key\(s\) quantisation"):
        settings_from_args(["--config", str(config)])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "tiny", "--model", "x=tiny,alias=tiny"], "used by both"),
        (["--model", "a=tiny,speculative=draft:nope"], "not another servable model"),
        (["--model", "a=tiny,speculative=draft:a"], "not another servable model"),
        (["--model", "org/model"], "allowed with --allow-hub"),
        (["--model", "/nonexistent/model"], "neither a preset"),
    ],
)
def test_inconsistent_tables_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_args(argv).sources()


def test_symlink_out_of_a_model_dir_refused_at_start(tmp_path: Path) -> None:
    tiny = materialize(PRESETS[TINY_MODEL])
    model = tmp_path / "m"
    model.mkdir()
    for f in tiny.iterdir():
        (model / f.name).symlink_to(f)  # every file points into the preset's folder
    with pytest.raises(ConfigError, match="points outside the model directory"):
        model_source(parse_model_spec(str(model)))
    inside = tmp_path / "ok"
    inside.mkdir()
    (inside / "real").mkdir()
    (inside / "config.json").write_text("{}")
    (inside / "alias").symlink_to(inside / "real")  # a link that stays inside is fine
    assert model_source(parse_model_spec(f"ok={inside}")).id == "ok"


def test_hub_ids_never_resolve_as_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "org" / "model").mkdir(parents=True)
    (tmp_path / "org" / "model" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)  # `org/model` exists as a relative directory here…
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = hub_source("org/model", parse_model_spec("x").options)
    with pytest.raises(SourceUnavailable):  # …but a hub id is looked up in the hub cache only
        source.locate()
    assert not any(is_hub_id(n) for n in ("../x", "/abs/x", "a/../b", "a/b/c", "a", "./x"))


def _info(base: str) -> dict[str, dict[str, object]]:
    return {m["id"]: m for m in httpx.get(base + "/v1/models", timeout=TIMEOUT).json()["data"]}


def _ask(base: str, model: str) -> None:
    r = httpx.post(base + "/v1/chat/completions", json=chat_body(model=model, max_tokens=2), timeout=TIMEOUT)
    assert r.status_code == 200, r.text


def test_lifetime_concurrent_first_load_lru_idle_pinned(tmp_path: Path) -> None:
    args = ["--no-preload", "--max-loaded", "2", "--idle-timeout", "4"]
    args += ["--model", "a=tiny", "--model", "b=tiny", "--model", "c=tiny", "--model", "pin=tiny,pinned"]
    with serve(args, tmp_path / "log") as srv:
        base = srv.url
        info = _info(base)
        assert info["pin"]["loaded"] and not info["a"]["loaded"]  # pinned loads at start, a on first use

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as c:
                rs = await asyncio.gather(
                    *(
                        c.post("/v1/chat/completions", json=chat_body(model="a", max_tokens=2))
                        for _ in range(5)
                    )
                )
            return [r.status_code for r in rs]

        assert asyncio.run(burst()) == [200] * 5
        assert _info(base)["a"]["loads"] == 1  # five concurrent first requests, one load

        _ask(base, "b")  # third resident model: a (least recently used, not pinned) goes
        info = _info(base)
        assert info["b"]["loaded"] and info["pin"]["loaded"] and not info["a"]["loaded"]
        _ask(base, "c")
        _ask(base, "a")  # back again: reloaded
        info = _info(base)
        assert info["a"]["loads"] == 2 and info["pin"]["loads"] == 1
        assert "evicting a (least recently used" in srv.log() and "evicting b" in srv.log()

        deadline = time.monotonic() + 15
        while any(m["loaded"] for k, m in _info(base).items() if k != "pin"):
            assert time.monotonic() < deadline, "idle models were not unloaded"
            time.sleep(0.5)
        assert _info(base)["pin"]["loaded"]  # pinned: never unloaded
        assert "idle for" in srv.log()
