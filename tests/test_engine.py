"""The engine built directly on the tiny model (no HTTP): batching, limits, prefix reuse, faults."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from reference.engine import (
    Engine,
    EngineFailure,
    EngineUnavailable,
    QueueFull,
    SamplingParams,
    SchedulerConfig,
    TokenEvent,
)
from reference.engine.engine import MAX_WORKER_RESTARTS
from reference.engine.handle import SequenceHandle
from reference.engine.scheduler import Round
from reference.loading import LoadedModel, load_model
from reference.presets import TINY_MODEL, get_preset, materialize

GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    return load_model(materialize(preset))


@pytest.fixture
def make_engine(tiny: LoadedModel) -> Iterator[Any]:
    engines: list[Engine] = []

    def make(**config: Any) -> Engine:
        kv = config.pop("kv_cache_tokens", None)
        e = Engine(
            tiny.model,
            context_length=tiny.context_length,
            vocab_size=tiny.vocab_size,
            config=SchedulerConfig(**config),
            kv_cache_tokens=kv,
        )
        engines.append(e)
        return e

    yield make
    for e in engines:
        e.close()


def prompt(seed: int, length: int = 12) -> list[int]:
    return [(seed * 7919 + i * 104729) % 40000 + 100 for i in range(length)]


async def tokens(handle: SequenceHandle) -> list[int]:
    out = []
    async for ev in handle:
        assert isinstance(ev, TokenEvent), ev
        out.append(ev.token_id)
    return out


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_concurrent_greedy_sequences_match_each_alone(make_engine: Any) -> None:
    engine = make_engine(max_running=8)

    async def main() -> tuple[list[list[int]], list[list[int]]]:
        alone = [await tokens(engine.submit(prompt(i, 5 + i), GREEDY)) for i in range(8)]
        together = await asyncio.gather(*(tokens(engine.submit(prompt(i, 5 + i), GREEDY)) for i in range(8)))
        return alone, list(together)

    alone, together = run(main())
    assert together == alone


def test_queue_limit_refuses_past_running_and_waiting(make_engine: Any) -> None:
    engine = make_engine(max_running=2, max_waiting=1)
    long = SamplingParams(max_new_tokens=400, temperature=0.0)

    async def main() -> None:
        handles = [engine.submit(prompt(i), long) for i in range(3)]
        with pytest.raises(QueueFull):
            engine.submit(prompt(9), long)
        await asyncio.sleep(0.2)
        assert (engine.num_running, engine.num_waiting) == (2, 1)
        for h in handles:
            h.cancel()
        await asyncio.gather(*(tokens(h) for h in handles))

    run(main())
    assert engine.live == 0


def test_long_prefill_is_chunked_between_running_decodes(make_engine: Any) -> None:
    engine = make_engine(max_running=4, max_prefill_tokens=32)
    order: list[str] = []
    forwards: list[int] = []  # sequences in each forward
    engine.forward_hook = lambda round_: forwards.append(len(round_.decode))

    async def follow(name: str, handle: SequenceHandle) -> None:
        async for _ in handle:
            order.append(name)

    async def main() -> None:
        short = engine.submit(prompt(1), SamplingParams(max_new_tokens=60, temperature=0.0))
        task = asyncio.create_task(follow("short", short))
        while order.count("short") < 3:
            await asyncio.sleep(0.01)
        order.append("long submitted")
        long = engine.submit(prompt(2, 400), SamplingParams(max_new_tokens=2, temperature=0.0))
        await asyncio.gather(task, follow("long", long))

    run(main())
    between = order[order.index("long submitted") : order.index("long")]
    # 400 prompt tokens in 32-token chunks take 13 rounds; the short stream decodes in each,
    # in the same (packed) forward as the chunk
    assert between.count("short") >= 11, order
    assert forwards.count(2) >= 11, forwards


def test_cancelling_one_sequence_leaves_the_batch_running(make_engine: Any) -> None:
    engine = make_engine(max_running=4)
    params = SamplingParams(max_new_tokens=30, temperature=0.0)

    async def main() -> list[int]:
        handles = [engine.submit(prompt(i), params) for i in range(3)]
        victim = handles[1]
        got = 0
        async for _ in victim:
            got += 1
            if got == 3:
                victim.cancel()
        outs = await asyncio.gather(tokens(handles[0]), tokens(handles[2]))
        return [got, *map(len, outs)]

    got, first, third = run(main())
    assert got < 30 and (first, third) == (30, 30)
    assert engine.live == 0


def test_a_failing_forward_fails_its_rows_and_the_engine_serves_on(make_engine: Any) -> None:
    engine = make_engine(max_running=4)
    failures: list[Round] = []

    def fail_once(round_: Round) -> None:
        if round_.decode and len(round_.decode) == 2 and not failures:
            failures.append(round_)
            raise RuntimeError("injected forward fault")

    engine.forward_hook = fail_once

    async def events(handle: SequenceHandle) -> list[object]:
        return [ev async for ev in handle]

    async def main() -> tuple[list[list[object]], list[int]]:
        hit = await asyncio.gather(*(events(engine.submit(prompt(i), GREEDY)) for i in range(2)))
        after = await tokens(engine.submit(prompt(5), GREEDY))
        return list(hit), after

    hit, after = run(main())
    assert failures, "the injected fault never fired"
    for evs in hit:
        assert isinstance(evs[-1], EngineFailure) and "injected forward fault" in evs[-1].message
    assert len(after) == GREEDY.max_new_tokens
    assert engine.live == 0


def test_prefix_cache_reuses_prompts_without_changing_greedy_output(make_engine: Any) -> None:
    cached, plain = make_engine(max_running=2), make_engine(max_running=2, prefix_cache=False)
    system = prompt(3, 40)

    async def chat(engine: Engine) -> tuple[list[list[int]], list[int]]:
        first = engine.submit(system + prompt(4), GREEDY)
        reply = await tokens(first)
        turn2 = system + prompt(4) + reply + prompt(6)
        second = engine.submit(turn2, GREEDY)
        answer = await tokens(second)
        edited = [*system[:20], 7, *system[21:], *prompt(4)]  # an edit in the middle of the prefix
        third = engine.submit(edited, GREEDY)
        await tokens(third)
        dup = engine.submit(edited, GREEDY)
        await tokens(dup)
        return [reply, answer], [first.cached_tokens, second.cached_tokens, third.cached_tokens,
                                 dup.cached_tokens]  # fmt: skip

    with_cache, hits = run(chat(cached))
    without, none = run(chat(plain))
    assert with_cache == without
    assert none == [0, 0, 0, 0]
    n1 = len(system) + len(prompt(4))
    assert hits[0] == 0 and hits[1] >= n1 and hits[2] == 20 and hits[3] == n1 - 1


def test_prefix_eviction_under_a_small_budget(make_engine: Any) -> None:
    engine = make_engine(max_running=1, prompt_cache_mib=0)
    a, b = prompt(1, 30), prompt(2, 30)

    async def main() -> list[int]:
        seen = []
        for p in (a, a, b, a):
            h = engine.submit(p, GREEDY)
            await tokens(h)
            seen.append(h.cached_tokens)
        return seen

    assert run(main()) == [0, 29, 0, 0]  # one slot and no prompt cache: b evicts a


def test_the_prompt_cache_keeps_prefixes_past_their_slot_without_changing_output(make_engine: Any) -> None:
    kept, plain = make_engine(max_running=1), make_engine(max_running=1, prefix_cache=False)
    assert kept.runner.pool_size > 0 and plain.runner.pool_size == 0
    a, b = prompt(1, 30), prompt(2, 30)

    async def main(engine: Engine) -> tuple[list[list[int]], list[int]]:
        outs, seen = [], []
        for p in (a, b, a, [*b, 5, 6, 7], a):
            h = engine.submit(p, GREEDY)
            outs.append(await tokens(h))
            seen.append(h.cached_tokens)
        return outs, seen

    with_cache, hits = run(main(kept))
    without, _ = run(main(plain))
    assert with_cache == without
    # one slot: each prompt's keys/values come back from the cache after the other took the slot
    assert hits == [0, 0, 29, 30, 29]
    assert 0 < kept.prompt_cache_usage < 1


def test_kv_budget_caps_a_sequence(make_engine: Any) -> None:
    engine = make_engine(max_running=2, kv_cache_tokens=64)  # 32 positions per sequence
    assert engine.context_length == 32

    async def main() -> list[int]:
        with pytest.raises(ValueError):
            engine.submit(prompt(1, 40), GREEDY)
        return await tokens(engine.submit(prompt(1, 20), SamplingParams(max_new_tokens=50, temperature=0.0)))

    assert len(run(main())) == 12  # prompt + output stop at the slot's 32 positions


def test_a_failing_round_fails_everyone_in_flight_and_the_worker_serves_on(
    make_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(max_running=4)
    real = engine._scheduler.schedule
    calls = {"n": 0}

    def broken_once() -> Round:
        calls["n"] += 1
        if calls["n"] == 2:  # after the first round: both sequences are in flight
            raise RuntimeError("injected scheduler fault")
        return real()

    monkeypatch.setattr(engine._scheduler, "schedule", broken_once)

    async def events(handle: SequenceHandle) -> list[object]:
        return [ev async for ev in handle]

    async def main() -> tuple[list[list[object]], list[int]]:
        hit = await asyncio.gather(*(events(engine.submit(prompt(i), GREEDY)) for i in range(2)))
        return list(hit), await tokens(engine.submit(prompt(7), GREEDY))

    hit, after = run(main())
    for evs in hit:
        assert isinstance(evs[-1], EngineFailure) and "injected scheduler fault" in evs[-1].message
    assert len(after) == GREEDY.max_new_tokens and engine.stats.worker_restarts == 1
    assert engine.live == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death
def test_a_dying_worker_fails_its_sequences_and_is_replaced(make_engine: Any) -> None:
    engine = make_engine(max_running=4)
    killed: list[Round] = []

    def kill_once(round_: Round) -> None:
        if round_.decode and not killed:
            killed.append(round_)
            raise SystemExit("injected worker death")  # not an Exception: ends the thread

    engine.forward_hook = kill_once

    async def main() -> tuple[list[object], list[int]]:
        hit = [ev async for ev in engine.submit(prompt(1), GREEDY)]
        return hit, await tokens(engine.submit(prompt(2), GREEDY))

    hit, after = run(main())
    assert killed, "the injected death never happened"
    assert isinstance(hit[-1], EngineFailure) and "worker thread stopped" in hit[-1].message
    assert len(after) == GREEDY.max_new_tokens
    assert engine.stats.worker_deaths == 1 and engine.stats.worker_alive
    assert engine.live == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death
def test_a_worker_that_keeps_dying_makes_the_engine_refuse_work(make_engine: Any) -> None:
    engine = make_engine(max_running=4)

    def always_die(round_: Round) -> None:
        raise SystemExit("injected worker death")

    engine.forward_hook = always_die

    async def main() -> list[list[object]]:
        out = []
        for i in range(MAX_WORKER_RESTARTS + 1):
            out.append([ev async for ev in engine.submit(prompt(i), GREEDY)])
        return out

    for evs in run(main()):
        assert len(evs) == 1 and isinstance(evs[0], EngineFailure)
    assert not engine.stats.worker_alive
    assert engine.stats.worker_deaths == MAX_WORKER_RESTARTS + 1

    async def refused() -> None:
        engine.submit(prompt(9), GREEDY)

    with pytest.raises(EngineUnavailable):
        run(refused())
