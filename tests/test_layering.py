"""The import rules between this project's packages, read from the source with ``ast``.

- ``wire`` (SSE parsing, stream folding) imports no package of this project: every client shares it.
- ``reference`` (the runtime) never imports ``conformance``, ``perf`` or ``fixtures``. One
  exception: the ``chatref`` dispatcher imports ``perf.cli`` inside the function that runs
  ``chatref perf``. The tool-trained fixture's preset names its builder in ``fixtures`` as
  ``module:function`` text (``reference.presets.outside_builder``), imported by ``importlib``
  only when that preset is built; that text is the runtime's one mention of ``fixtures``, and
  no other dynamic import names a package outside the runtime.
- ``conformance`` imports ``reference`` only to launch it as a subprocess: ``reference.launch``,
  from ``conformance/launcher.py`` alone, so the checks share no code with what they judge.
- ``perf`` and ``fixtures`` may import ``reference`` (and ``wire``), not each other, not
  ``conformance`` and not the tests; nothing in ``reference`` or ``conformance`` imports them.
- Test modules import shared helpers from ``tests/helpers.py``, never from a ``conftest``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.launcher import DEFAULT_MODELS
from reference.presets import DEFAULT_MODEL, THINK_MODEL, TINY_MODEL, PresetUnavailable, outside_builder

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reference", "conformance", "perf", "fixtures", "wire", "tests")


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root
    module: str  # the imported module, absolute
    top_level: bool  # at module level (not inside a function or class body)


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    rel = str(path.relative_to(ROOT))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
              for n in ast.walk(f) if n is not f}  # fmt: skip
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(rel, a.name, id(node) not in nested) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append(Import(rel, base, id(node) not in nested))
    return found


def _dynamic_targets(path: Path) -> list[str]:
    """String arguments of ``importlib.import_module``, ``__import__`` and ``outside_builder``."""
    names = {"import_module", "__import__", "outside_builder"}
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in names and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            out.append(node.args[0].value.partition(":")[0])
    return out


def _all_imports(package: str) -> list[Import]:
    return [i for path in _sources(package) for i in _imports(path)]


def _into(imports: list[Import], *targets: str) -> list[Import]:
    return [i for i in imports if i.module.split(".")[0] in targets]


def test_the_scan_sees_the_imports_it_judges() -> None:
    # a scan that found nothing would pass every rule below
    assert _into(_all_imports("reference"), "reference")
    assert _into(_all_imports("fixtures"), "reference")
    assert _into(_all_imports("perf"), "reference", "wire")
    assert [i.module for i in _into(_all_imports("conformance"), "reference")]


def test_wire_imports_no_package_of_this_project() -> None:
    assert _into(_all_imports("wire"), *(p for p in PACKAGES if p != "wire")) == []


def test_the_runtime_never_imports_conformance_perf_or_fixtures() -> None:
    outside = _into(_all_imports("reference"), "conformance", "perf", "fixtures")
    allowed = [Import("reference/cli/main.py", "perf.cli", top_level=False)]
    assert outside == allowed, "the runtime may reach perf only through chatref perf's lazy dispatch"


def test_the_runtimes_only_dynamic_imports_outside_it_are_the_fixture_builders() -> None:
    dynamic = {str(p.relative_to(ROOT)): _dynamic_targets(p) for p in _sources("reference")}
    outside = {f: [t for t in ts if not t.startswith("reference")] for f, ts in dynamic.items()}
    assert {f: ts for f, ts in outside.items() if ts} == {
        "reference/presets/__init__.py": ["fixtures.tool_model", "fixtures.think_model"]
    }


def test_conformance_imports_the_runtime_only_to_launch_it() -> None:
    into = _into(_all_imports("conformance"), "reference", "fixtures", "perf")
    assert {(i.file, i.module) for i in into} == {("conformance/launcher.py", "reference.launch")}


def test_perf_and_fixtures_stay_off_each_other_and_conformance() -> None:
    assert _into(_all_imports("perf"), "conformance", "fixtures", "tests") == []
    assert _into(_all_imports("fixtures"), "conformance", "perf", "tests") == []


def test_nothing_imports_a_conftest() -> None:
    everything = [i for p in PACKAGES for i in _all_imports(p)]
    assert [i for i in everything if i.module.endswith("conftest")] == []


def test_the_conformance_self_start_serves_the_runtimes_presets() -> None:
    # conformance names its own ids (it may not import the runtime's table); they must match
    assert DEFAULT_MODELS == (TINY_MODEL, DEFAULT_MODEL, THINK_MODEL)


def test_an_outside_builder_that_is_not_installed_says_so(tmp_path: Path) -> None:
    build = outside_builder("no_such_package_here.recipe:build")
    with pytest.raises(PresetUnavailable, match=r"no_such_package_here\.recipe:build"):
        build(tmp_path)
