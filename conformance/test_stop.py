"""Stop strings: trimmed, several at once, overlapping, and one that spans streamed chunks.

Owns the ``stop`` parameter. Generation stops at the first stop string to appear while the text
is generated, and the returned text excludes it; so of several stops the one that completes
first wins, even when a longer one began earlier. Stop strings are picked from the server's own
unstopped greedy output (the language model's, and its streamed chunks where a chunk boundary
matters). Knows nothing about other sampling parameters (``test_params``).
"""

from __future__ import annotations

import pytest

from conformance.api import Api, ChatResult
from conformance.checks import ConformanceError

pytestmark = pytest.mark.conformance("stop")
__all__: list[str] = []
NEVER = "\u2603never\u2603"


def _stop_word(text: str, start: int | None = None) -> str:
    """A short piece of ``text`` from ``start`` on (default: the middle) to use as a stop string.

    Preferably one that occurs there first, so that it stops generation at that place.
    """
    start = max(1, len(text) // 2) if start is None else start
    pieces = [text[i : i + 3] for i in range(start, len(text) - 3)]
    usable = [p for p in pieces if _usable(p)]
    first = [p for i, p in enumerate(pieces, start) if _usable(p) and text.find(p) == i]
    return (first or usable or [text[start : start + 3]])[0]


def _usable(piece: str) -> bool:
    return bool(piece.strip()) and piece.strip() == piece and piece.isprintable() and "\ufffd" not in piece


def _first_cut(text: str, stops: list[str]) -> int:
    """Where generation stops: at the start of the stop whose first occurrence ends first."""
    hits = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
    return min(hits)[1] if hits else len(text)


def _expect(r: ChatResult, stop: str | list[str], expected: str, base: str) -> None:
    if r.content != expected or r.finish != "stop":
        raise ConformanceError(
            f"stop={stop!r} gave {r.content!r}/{r.finish}, expected {expected!r}/stop (unstopped: {base!r})"
        )


@pytest.fixture(scope="module")
def streamed_base(api: Api) -> tuple[str, list[str]]:
    """The unstopped greedy text of the language model and its streamed chunks' contents."""
    r = api.chat(stream=True, model=api.target.chat_model, max_tokens=24)
    if r.content != api.chat(model=api.target.chat_model, max_tokens=24).content:
        pytest.skip("the stream differs from the JSON answer (see test_fold_equals_non_stream)")
    pieces = [(c["choices"][0].get("delta") or {}).get("content") or "" for c in r.chunks if c.get("choices")]
    return r.content, [p for p in pieces if p]


@pytest.mark.parametrize("as_list", [False, True], ids=["string", "list"])
def test_stop_trims(api: Api, stream: bool, as_list: bool) -> None:
    base = api.chat(max_tokens=16).content
    if len(base) < 6:
        pytest.skip(f"the model produced too little text to pick a stop string: {base!r}")
    word = _stop_word(base)
    stop = [word, NEVER] if as_list else word
    _expect(
        api.chat(stream=stream, feature="stop", max_tokens=16, stop=stop), stop, base[: base.find(word)], base
    )


def test_stop_several(api: Api, streamed_base: tuple[str, list[str]]) -> None:
    """Of several stop strings the first to appear stops, wherever it is in the list."""
    base = streamed_base[0]
    early, late = _stop_word(base, len(base) // 4), _stop_word(base, 2 * len(base) // 3)
    if len(base) < 12 or base.find(late) <= base.find(early) + len(early):
        pytest.skip(f"the model produced too little text to pick two stop strings: {base!r}")
    stops = [late, NEVER, early]
    expected = base[: _first_cut(base, stops)]
    r = api.chat(feature="stop", model=api.target.chat_model, max_tokens=24, stop=stops)
    _expect(r, stops, expected, base)


def test_stop_overlapping(api: Api, streamed_base: tuple[str, list[str]]) -> None:
    """Two overlapping stops: the shorter completes first and wins over the longer one begun earlier."""
    base, pieces = streamed_base
    end = 0
    for k, piece in enumerate(pieces[:-1]):
        end += len(piece)
        inner = base[end - 2 : end]  # ends where chunk k ends ...
        outer = base[end - 3 : end + 1]  # ... inside one that began a character earlier
        if k and _usable(inner) and base.find(inner) == end - 2 and base.find(outer) == end - 3:
            break
    else:
        pytest.skip(f"no two overlapping stop strings found in {base!r}")
    stops = [inner, outer]
    r = api.chat(stream=True, feature="stop", model=api.target.chat_model, max_tokens=24, stop=stops)
    _expect(r, stops, base[: end - 2], base)


def test_stop_spanning_chunks(api: Api, streamed_base: tuple[str, list[str]]) -> None:
    """A stop string that spans three streamed chunks is still found, and none of it is sent."""
    base, pieces = streamed_base
    start = 0
    for k in range(len(pieces) - 2):
        start += len(pieces[k])
        stop = base[start - 1 : start + len(pieces[k + 1]) + 1]  # a chunk and a character either side
        if k and _usable(stop.strip()) and base.find(stop) == start - 1:
            break
    else:
        pytest.skip(f"no stop string spanning three chunks found in {pieces!r}")
    r = api.chat(stream=True, feature="stop", model=api.target.chat_model, max_tokens=24, stop=stop)
    _expect(r, stop, base[: start - 1], base)
