"""The search for the events X rejects in a refused batch, against a model of X's rule:
a request is refused whole when it holds any bad event. The emulator-backed test in
test_delivery.py covers the same search through real requests."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from django_xconversions import isolation
from django_xconversions.errors import BadRequest


class ModelX:
    """Accepts a request unless it holds a bad event; remembers what each request did."""

    def __init__(self, bad: set[int], unavailable: frozenset[int] = frozenset()) -> None:
        self.bad = bad
        self.unavailable = unavailable  # events whose requests end in a 5xx
        self.requests = 0
        self.accepted: Counter[int] = Counter()
        self.failed: dict[int, BadRequest] = {}
        self.refused_groups: dict[int, frozenset[int]] = {}
        self.left_undecided: set[int] = set()

    def send(self, group: list[int]) -> BadRequest | bool:
        self.requests += 1
        if self.unavailable & set(group):
            self.left_undecided.update(group)
            return False
        if self.bad & set(group):
            refusal = BadRequest("refused")
            self.refused_groups[id(refusal)] = frozenset(group)
            return refusal
        self.accepted.update(group)
        return True

    def fail(self, event: int, refusal: BadRequest) -> None:
        assert event not in self.failed, "an event was failed twice"
        self.failed[event] = refusal

    def run(self, size: int) -> int:
        events = list(range(size))
        self.requests += 1  # X refused the whole batch first
        first = BadRequest("refused")
        self.refused_groups[id(first)] = frozenset(events)
        isolation.isolate(events, first, self.send, self.fail)
        return self.requests


def placements(size: int, bad_count: int, count: int, seed: int) -> list[set[int]]:
    rng = random.Random(seed)
    return [set(rng.sample(range(size), bad_count)) for _ in range(count)]


@pytest.mark.parametrize("bad_count", [1, 2, 3, 10, 40])
def test_every_good_event_is_sent_once_and_every_bad_one_failed(bad_count: int) -> None:
    for bad in placements(500, bad_count, 40, seed=bad_count):
        x = ModelX(bad)
        x.run(500)
        assert set(x.failed) == bad
        assert set(x.accepted) == set(range(500)) - bad
        assert max(x.accepted.values()) == 1, "a good event was sent twice"
        for event, refusal in x.failed.items():
            # X's message given to a failed event comes from a request whose every other
            # event X accepted, so the message is about that event.
            others = x.refused_groups[id(refusal)] - {event}
            assert others <= set(x.accepted)


def test_three_bad_events_in_500_take_28_requests_at_the_median() -> None:
    counts = [ModelX(bad).run(500) for bad in placements(500, 3, 300, seed=2026)]
    assert statistics.median(counts) <= 1 + 3 * 9
    # Without knowing how many are bad, a confirming request per bad event can be
    # needed in the worst placements.
    assert max(counts) <= 1 + 3 * (9 + 1)


def test_one_bad_event_costs_about_one_halving_search() -> None:
    counts = [ModelX(bad).run(500) for bad in placements(500, 1, 300, seed=7)]
    assert statistics.median(counts) <= 12 and max(counts) <= 13


def test_many_bad_events_cost_less_than_halving_each() -> None:
    counts = [ModelX(bad).run(500) for bad in placements(500, 10, 100, seed=10)]
    # Halving with one confirming request per bad event needs a median of about 90 here.
    assert statistics.median(counts) <= 80


def test_a_batch_of_two_with_one_bad_event_takes_one_more_request() -> None:
    x = ModelX({1})
    assert x.run(2) == 2 and set(x.failed) == {1} and set(x.accepted) == {0}


def test_events_whose_request_failed_otherwise_leave_the_search_undecided() -> None:
    x = ModelX(bad={3, 300}, unavailable=frozenset({450}))
    x.run(500)
    decided = set(x.accepted) | set(x.failed)
    assert 450 not in decided  # its request ended in a 5xx: retried later, not failed
    assert decided | x.left_undecided == set(range(500)), "an event was dropped"
    assert not decided & x.left_undecided and max(x.accepted.values()) == 1
    assert 3 in x.failed and set(x.failed) <= {3, 300}


def test_group_size_sends_everything_when_one_bad_event_is_expected() -> None:
    assert isolation.group_size(100, found=0, resolved=0) == 100
    assert isolation.group_size(100, found=0, resolved=4000) == 100  # evidence of few bad
    assert isolation.group_size(400, found=6, resolved=100) == 64  # evidence of many
    assert isolation.group_size(500, found=0, resolved=0) == 128
