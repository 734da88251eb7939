"""The scheduler, slot table and prompt cache as pure policy: admission, queue limits, prefill chunks,
prefix reuse; and the serve flags that configure it."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from reference.cli.serve import settings_from_args
from reference.engine.prompt_cache import BLOCK_TOKENS, BlockCopy, PromptCache
from reference.engine.scheduler import QueueFull, Scheduler, SchedulerConfig
from reference.engine.sequence import Sequence, State
from reference.engine.slots import SlotTable
from reference.engine.types import SamplingParams
from reference.settings import SettingsError


class _Handle:
    """What the scheduler reads of a handle: whether its client cancelled."""

    def __init__(self) -> None:
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


_ids = iter(range(10**6))


def seq(prompt: list[int], max_new: int = 4) -> Sequence:
    # the scheduler reads only ``handle.cancelled``; sampler and constraint are the engine's business
    handle, sampler = cast(Any, _Handle()), cast(Any, None)
    return Sequence(next(_ids), prompt, SamplingParams(max_new), handle, sampler, None, max_length=1000)


def test_admission_fills_slots_then_queues_then_refuses() -> None:
    s = Scheduler(SchedulerConfig(max_running=2, max_waiting=2))
    s.add([seq([1, 2]), seq([3, 4])])
    s.add([seq([5, 6]), seq([7, 8])])  # two free slots plus two waiting places
    with pytest.raises(QueueFull):
        s.add([seq([9, 10])])
    plan = s.schedule()
    assert len(plan.admitted) == 2 and s.num_running == 2 and s.num_waiting == 2
    with pytest.raises(QueueFull):  # the queue is full while both slots are busy
        s.add([seq([11, 12])])


def test_n_choices_are_queued_all_or_none() -> None:
    s = Scheduler(SchedulerConfig(max_running=1, max_waiting=1))
    with pytest.raises(QueueFull):
        s.add([seq([1]), seq([1]), seq([1])])
    assert s.num_waiting == 0


def test_long_prompt_is_prefilled_in_chunks_beside_decoding_sequences() -> None:
    s = Scheduler(SchedulerConfig(max_running=4, max_prefill_tokens=100, long_prefill_tokens=0))
    short = seq(list(range(10)))
    s.add([short])
    plan = s.schedule()
    assert plan.prefill == [(short, 10)]
    short.computed, short.state = 10, State.DECODE
    short.output.append(5)
    long = seq(list(range(1000, 1350)))
    s.add([long])
    chunks = []
    for _ in range(4):
        plan = s.schedule()
        assert plan.decode == [short], "the running sequence decodes every round"
        ((who, n),) = plan.prefill
        assert who is long and n <= 100
        chunks.append(n)
        long.computed += n
    assert chunks == [100, 100, 100, 50]


def test_cancelled_sequences_are_dropped_and_free_their_slot() -> None:
    s = Scheduler(SchedulerConfig(max_running=1))
    a, b = seq([1, 2, 3]), seq([4, 5, 6])
    s.add([a, b])
    s.schedule()
    a.handle.cancel()
    assert s.drop_cancelled() == [a]
    assert s.schedule().admitted[0][0] is b


def test_slot_reuse_takes_the_longest_prefix_and_keeps_the_last_prompt_token() -> None:
    t = SlotTable(3)
    first = t.assign(1, [1, 2, 3, 4, 5])
    assert first is not None and first.reused == 0
    t.extend(first.slot, [1, 2, 3, 4, 5, 9])
    t.release(first.slot)
    same = t.assign(2, [1, 2, 3, 4, 5])  # exact duplicate: all but the last token
    assert same is not None and (same.slot, same.reused) == (first.slot, 4)
    t.release(same.slot)
    edited = t.assign(3, [1, 2, 7, 4, 5])  # an edit in the middle: only the part before it
    assert edited is not None and edited.reused == 2


def test_prefix_in_a_busy_slot_is_copied_and_lru_evicts_the_oldest_free_slot() -> None:
    t = SlotTable(2, min_copy=2)
    a = t.assign(1, [1, 2, 3, 4])
    assert a is not None
    t.extend(a.slot, [1, 2, 3, 4])
    b = t.assign(2, [1, 2, 3, 9])  # a still owns its slot: copy its first 3 positions
    assert b is not None and b.copy_from == a.slot and b.reused == 3
    assert t.assign(3, [5]) is None  # no free slot
    t.extend(b.slot, [9])  # the copied 3 positions are already recorded
    t.release(a.slot)
    t.release(b.slot)
    c = t.assign(3, [7, 7, 7])  # no prefix anywhere: evict the least recently used (a's)
    assert c is not None and c.slot == a.slot and c.reused == 0
    assert t.tokens(b.slot) == [1, 2, 3, 9]


def test_a_prompt_waits_for_a_prefill_it_can_reuse() -> None:
    s = Scheduler(SchedulerConfig(max_running=4))
    prompt = list(range(100))
    first, second = seq(prompt), seq(prompt)
    s.add([first, second])
    plan = s.schedule()
    assert [x for x, _ in plan.admitted] == [first], "the twin waits for the first prefill"
    s.slots.extend(first.slot, prompt)
    first.computed, first.state = 100, State.DECODE
    first.output.append(1)
    plan = s.schedule()
    ((twin, a),) = plan.admitted
    assert twin is second and a.copy_from == first.slot and a.reused == 99


def test_without_prefix_cache_nothing_is_reused() -> None:
    t = SlotTable(1, prefix_cache=False)
    a = t.assign(1, [1, 2, 3])
    assert a is not None
    t.extend(a.slot, [1, 2, 3])
    t.release(a.slot)
    b = t.assign(2, [1, 2, 3])
    assert b is not None and b.reused == 0


def test_with_nobody_decoding_a_prompt_takes_the_idle_budget() -> None:
    s = Scheduler(
        SchedulerConfig(max_running=4, max_prefill_tokens=64, idle_prefill_tokens=500, long_prefill_tokens=0)
    )
    long = seq(list(range(1000, 1700)))
    s.add([long])
    ((who, n),) = s.schedule().prefill
    assert who is long and n == 500  # nobody waits on this chunk
    long.computed += n
    short = seq(list(range(10)))
    short.state = State.DECODE  # now a stream decodes: the small budget applies again
    s.running.append(short)
    ((who, n),) = s.schedule().prefill
    assert who is long and n == 64


def _decoding(s: Scheduler, prompt: list[int]) -> Sequence:
    stream = seq(prompt)
    s.add([stream])
    s.schedule()
    stream.computed, stream.state = len(prompt), State.DECODE
    stream.output.append(5)
    return stream


def test_a_long_prompt_takes_smaller_chunks_only_while_others_decode() -> None:
    s = Scheduler(
        SchedulerConfig(max_running=4, max_prefill_tokens=64, long_prompt_tokens=256, long_prefill_tokens=32)
    )
    long, short = seq(list(range(1000, 1300))), seq(list(range(2000, 2100)))
    s.add([long])
    assert s.schedule().prefill == [(long, 300)], "nobody decodes: the idle budget, uncapped"
    s.finish(long)
    long = seq(list(range(1000, 1300)))
    stream = _decoding(s, [1, 2, 3])
    s.add([long, short])
    plan = s.schedule()
    assert plan.decode == [stream]
    # 300 tokens to compute is long: 32 a round; the short prompt after it takes the rest of the budget
    assert plan.prefill == [(long, 32), (short, 32)]


def test_a_prompt_mostly_in_the_prefix_cache_is_not_long() -> None:
    s = Scheduler(SchedulerConfig(max_running=4, long_prompt_tokens=256, long_prefill_tokens=32))
    prefix = list(range(100))
    earlier = s.slots.assign(99, prefix)
    assert earlier is not None
    s.slots.extend(earlier.slot, prefix)
    s.slots.release(earlier.slot)
    _decoding(s, [7, 8, 9])
    follow_up = seq(prefix + list(range(5000, 5200)))  # 300 tokens, 100 of them reused: 200 to compute
    s.add([follow_up])
    plan = s.schedule()
    assert follow_up.cached == 100
    assert plan.prefill == [(follow_up, 64)]


def test_a_reused_slots_tokens_go_to_the_prompt_cache_and_come_back() -> None:
    t = SlotTable(1, min_copy=2, cache=PromptCache(64))
    a = t.assign(1, [1, 2, 3, 4, 5])
    assert a is not None and a.save is None  # an empty slot: nothing to keep
    t.extend(a.slot, [1, 2, 3, 4, 5, 6])
    t.release(a.slot)
    b = t.assign(2, [9, 9, 9, 9])  # the only slot goes to another prompt: its tokens are saved first
    assert b is not None and b.reused == 0
    assert b.save == BlockCopy((0,), (1, 2, 3, 4, 5, 6)) and b.save.positions() == [0, 1, 2, 3, 4, 5]
    t.extend(b.slot, [9, 9, 9, 9, 8])
    t.release(b.slot)
    again = t.assign(3, [1, 2, 3, 4, 5, 7])  # loaded back from the cache, the slot's own saved in turn
    assert again is not None and again.load == BlockCopy((0,), (1, 2, 3, 4, 5)) and again.reused == 5
    assert again.save is not None and again.save.tokens == (9, 9, 9, 9, 8) and again.save.blocks == (1,)
    assert t.tokens(again.slot) == [1, 2, 3, 4, 5]


def test_prompt_cache_evicts_least_recently_used_and_never_stores_twice() -> None:
    cache = PromptCache(3 * BLOCK_TOKENS + 5)  # three blocks: the odd positions are never used
    assert cache.capacity == 48
    a, b, c = [1] * 20, [2] * 10, [3] * 16  # two blocks, one, one
    assert cache.store(a) is not None and cache.store(b) is not None
    assert cache.store(a[:12]) is None, "a prefix of an entry is already held"
    assert cache.match([2] * 11)[1] == 10  # b used last: a is now the oldest
    stored = cache.store(c)
    assert stored is not None and len(stored.blocks) == 1
    assert cache.peek([*a, 0]) == 0 and cache.peek([2] * 11) == 10, "a (least recent) went first"
    longer = cache.store(b + [4] * 30)  # b's extension replaces b rather than keep both
    assert longer is not None and len(cache) == 1 and cache.stored_tokens() == 40
    assert cache.store([5] * 100) is not None and cache.stored_tokens() == 48, "cut to the pool"


def test_without_a_pool_the_prompt_cache_keeps_nothing() -> None:
    cache = PromptCache(BLOCK_TOKENS - 1)
    assert cache.store([1, 2, 3]) is None and cache.match([1, 2, 3, 4]) == (None, 0)


def test_the_chunk_flags_reach_the_scheduler_and_are_checked() -> None:
    engine = settings_from_args(["--long-prefill-tokens", "16", "--long-prompt-tokens", "512"]).engine
    assert (engine.long_prefill_tokens, engine.long_prompt_tokens) == (16, 512)
    assert settings_from_args(["--long-prefill-tokens", "0"]).engine.long_prefill_tokens == 0  # off
    with pytest.raises(SettingsError, match="--long-prefill-tokens must be a non-negative integer"):
        settings_from_args(["--long-prefill-tokens", "-1"])
    with pytest.raises(SettingsError, match="--long-prompt-tokens must be a positive integer"):
        settings_from_args(["--long-prompt-tokens", "0"])
