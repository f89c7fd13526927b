"""The search for the events X rejects in a refused batch, against a model of X's rule:
a request is refused whole when it holds any bad event. The emulator-backed test in
test_delivery.py covers the same search through real requests."""

from __future__ import annotations

import hashlib
import random
import statistics
from collections import Counter
from typing import Any

import pytest

from django_xconversions import delivery, isolation
from django_xconversions.emulator import EmulatorServer
from django_xconversions.errors import APIErrorDetail, BadRequest
from django_xconversions.models import Conversion, EventTag

from .conftest import configure, make_conversions, received_ids


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


# -- X's messages matched to the events ---------------------------------------------------

GOOD_TIME = "2026-11-30T04:00:00.000Z"


def event(n: int) -> dict[str, Any]:
    """A rich event: every value differs from every other event's."""
    return {
        "conversion_time": GOOD_TIME,
        "event_id": "o8z6k",
        "identifiers": [
            {"hashed_email": hashlib.sha256(f"user{n}@example.com".encode()).hexdigest()},
            {"ip_address": f"10.0.{n // 250}.{n % 250}", "user_agent": "Mozilla/5.0 (X11)"},
        ],
        "conversion_id": f"order-{n}",
        "value": f"{n}.00",
        "description": f"Order {n}",
        "contents": [{"content_id": f"sku-{n}", "content_price": n + 0.5, "num_items": 1}],
    }


def hash_message(value: str) -> str:
    return f"hashed_email ({value}) is not a valid SHA-256 hash"


class NamingX:
    """Refuses a request holding a bad event, with an error per bad event in it (X's
    wording, deduplicated as X's list is); ``names`` says which: "all", "first" (only the
    first bad event's), or a function giving the detail for a bad event."""

    def __init__(
        self,
        events: list[dict[str, Any]],
        bad: dict[int, APIErrorDetail],
        *,
        names: str = "all",
    ) -> None:
        self.events = events
        self.bad = bad
        self.names = names
        self.requests = 0
        self.accepted: Counter[int] = Counter()
        self.failed: dict[int, BadRequest] = {}

    def send(self, group: list[int]) -> BadRequest | bool:
        self.requests += 1
        details = list(dict.fromkeys(self.bad[n] for n in group if n in self.bad))
        if not details:
            self.accepted.update(group)
            return True
        if self.names == "first":
            details = details[:1]
        return BadRequest(details[0].message, status=400, errors=tuple(details))

    def fail(self, n: int, refusal: BadRequest) -> None:
        assert n not in self.failed, "an event was failed twice"
        self.failed[n] = refusal

    def run(self) -> int:
        everything = list(range(len(self.events)))
        first = self.send(everything)
        assert isinstance(first, BadRequest)
        isolation.isolate(everything, first, self.send, self.fail, self.events.__getitem__)
        assert set(self.failed) == set(self.bad)
        assert set(self.accepted) == set(everything) - set(self.bad)
        assert max(self.accepted.values()) == 1, "a good event was sent twice"
        return self.requests


def bad_hash(events: list[dict[str, Any]], n: int, value: str = "") -> APIErrorDetail:
    """Event ``n`` now carries a malformed hash (X names it)."""
    value = value or f"{n:x}-not-a-hash"
    events[n]["identifiers"][0]["hashed_email"] = value
    return APIErrorDetail("INVALID_PARAMETER", hash_message(value), "hashed_email")


def test_one_bad_event_x_names_costs_two_requests_wherever_it_is() -> None:
    for place in random.Random(1).sample(range(500), 40):
        events = [event(n) for n in range(500)]
        x = NamingX(events, {place: bad_hash(events, place)})
        assert x.run() == 2
        assert x.failed[place].messages == [hash_message(f"{place:x}-not-a-hash")]


@pytest.mark.parametrize("names", ["all", "first"])
def test_three_bad_events_x_names_cost_five_or_six_requests(names: str) -> None:
    for seed in range(20):
        events = [event(n) for n in range(500)]
        bad = {n: bad_hash(events, n) for n in random.Random(seed).sample(range(500), 3)}
        # All named: the batch, the rest, each suspect alone. Only the first named: each
        # refusal names the next, the rest is then taken, the other two go alone.
        assert NamingX(events, bad, names=names).run() == (5 if names == "all" else 6)


def test_the_value_in_a_field_x_names_beats_the_same_value_elsewhere() -> None:
    events = [event(n) for n in range(500)]
    detail = bad_hash(events, 300, value="Order 7")  # event 7's description
    x = NamingX(events, {300: detail})
    assert x.run() == 2 and set(x.failed) == {300}


def test_a_value_two_events_carry_is_searched_between_them() -> None:
    # X names a value events 10 and 20 both carry, yet refuses only event 20 (its rule
    # may be about more than that value): neither is failed on the message alone.
    events = [event(n) for n in range(500)]
    detail = bad_hash(events, 20, value="shared-value")
    events[10]["identifiers"][0]["hashed_email"] = "shared-value"
    x = NamingX(events, {20: detail})
    # The batch, the rest, event 10 alone (accepted): event 20 is the bad one.
    assert x.run() == 3
    assert set(x.failed) == {20} and x.accepted[10] == 1


def test_a_message_naming_no_event_of_the_batch_leaves_the_search_as_before() -> None:
    events = [event(n) for n in range(500)]
    wrong = APIErrorDetail("INVALID_PARAMETER", hash_message("rejected"), "hashed_email")
    for place in random.Random(3).sample(range(500), 20):
        x = NamingX(events, {place: wrong})
        assert x.run() <= 13  # 1 + 9 halvings, plus the rest when the last probe is refused


def test_a_message_naming_a_clean_events_value_costs_a_little_and_loses_nothing() -> None:
    # X (or a proxy) names event 5's value while event 400 is the bad one.
    events = [event(n) for n in range(500)]
    lie = APIErrorDetail(
        "INVALID_PARAMETER",
        hash_message(events[5]["identifiers"][0]["hashed_email"]),
        "hashed_email",
    )
    x = NamingX(events, {400: lie})
    assert x.run() <= 2 + 13
    assert set(x.failed) == {400} and x.accepted[5] == 1


@pytest.mark.parametrize(
    ("message", "parameter", "change"),
    [
        # The reference's error table: no value, only the field (capitalised).
        ("Hashed_email is not a valid SHA-256 hash", "hashed_email", "email only here"),
        ("Event_id (tw-o8z6k-o8z6j) is not a single event tag (SET)", "event_id", "event"),
        (
            "Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, "
            'got "2026-11-30T04:00:00.000" for conversion_time',
            "conversion_time",
            "time",
        ),
        ("value (1e3) is not a valid number", "value", "value"),
        ("price_currency (XBT) is not a valid ISO-4217 currency code", None, "currency"),
    ],
)
def test_x_wordings_that_name_the_value_or_a_field_only_some_events_have(
    message: str, parameter: str | None, change: str
) -> None:
    events = [event(n) for n in range(500)]
    bad = 123
    if change == "email only here":
        for n in range(500):
            if n != bad:
                del events[n]["identifiers"][0]
    elif change == "event":
        events[bad]["event_id"] = "tw-o8z6k-o8z6j"
    elif change == "time":
        events[bad]["conversion_time"] = "2026-11-30T04:00:00.000"
    elif change == "value":
        events[bad]["value"] = "1e3"
    else:
        events[bad]["price_currency"] = "XBT"
    x = NamingX(events, {bad: APIErrorDetail("INVALID_PARAMETER", message, parameter)})
    assert x.run() == 2


def test_suspects_and_an_unnamed_bad_event_in_the_rest() -> None:
    # X names event 50's hash; event 60 is bad too, for a reason X words without a value.
    events = [event(n) for n in range(500)]
    silent = APIErrorDetail(
        "INVALID_PARAMETER", "At least one user identifier must be provided", ""
    )
    x = NamingX(events, {50: bad_hash(events, 50), 60: silent}, names="first")
    assert x.run() <= 1 + 1 + 13 + 1


# -- through the engine and X's own messages (the emulator over HTTP) -----------------------


@pytest.mark.django_db
@pytest.mark.parametrize("bad_count", [1, 3])
def test_rows_routed_to_the_pixels_base_id_cost_two_requests_and_a_search_of_them(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag, bad_count: int
) -> None:
    # A tag mapped by hand to the pixel's base id passes our checks; X refuses the batch
    # with "event_id (<pixel id>) is not a single event tag (SET)", naming that id.
    configure(settings, BATCH_SIZE=500)
    pixel = purchase_tag.pixel
    assert pixel is not None
    misrouted = EventTag.objects.create(
        account=pixel.account,
        pixel=pixel,
        remote_id="o3bkx",
        website_tag_id=pixel.pixel_id,
        key="purchase_misrouted",
        name="Purchase",
        type=EventTag.Type.PURCHASE,
    )
    make_conversions(purchase_tag, 200)
    bad = random.Random(bad_count).sample(range(200), bad_count)
    Conversion.objects.filter(conversion_id__in=[f"order:{n}" for n in bad]).update(
        event_tag=misrouted
    )

    summary = delivery.send_pending()

    # One refusal, the rest sent, then (several suspects) each suspect on its own.
    assert summary.requests == (2 if bad_count == 1 else 2 + 3)
    assert summary.sent == 200 - bad_count
    failed = Conversion.objects.filter(status="failed")
    assert sorted(failed.values_list("conversion_id", flat=True)) == sorted(
        f"order:{n}" for n in bad
    )
    expected = f"event_id ({pixel.pixel_id}) is not a single event tag (SET)"
    assert set(failed.values_list("last_error", flat=True)) == {expected}
    assert Counter(received_ids(emulator)) == Counter(
        {f"order:{n}": 1 for n in range(200) if n not in bad}
    )


@pytest.mark.django_db
def test_a_message_naming_no_value_of_the_batch_still_finds_the_event(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    configure(settings, BATCH_SIZE=500)
    make_conversions(purchase_tag, 200)
    emulator.reject_event_ids("order:77")  # its message names "rejected", no value of ours

    summary = delivery.send_pending()

    assert summary.sent == 199 and summary.requests <= 1 + 8 + 2
    assert list(
        Conversion.objects.filter(status="failed").values_list("conversion_id", flat=True)
    ) == ["order:77"]
    assert Counter(received_ids(emulator)).most_common(1)[0][1] == 1


def test_many_events_carrying_the_named_value_all_bad_cost_one_request_each() -> None:
    # Forty rows of a tag mapped to the pixel's base id: X names that id, all are bad.
    events = [event(n) for n in range(500)]
    place = random.Random(40).sample(range(500), 40)
    detail = APIErrorDetail(
        "INVALID_PARAMETER", "event_id (o8z6j) is not a single event tag (SET)", "event_id"
    )
    for n in place:
        events[n]["event_id"] = "o8z6j"
    assert NamingX(events, dict.fromkeys(place, detail)).run() == 1 + 1 + 40


def test_a_named_value_sixty_events_carry_but_one_is_bad_is_searched_after_two() -> None:
    # X's name proves a weak guide once it has accepted two of those named: searched.
    events = [event(n) for n in range(500)]
    carriers = random.Random(60).sample(range(500), 60)
    for n in carriers:
        events[n]["identifiers"][0]["hashed_email"] = "shared-value"
    detail = APIErrorDetail("INVALID_PARAMETER", hash_message("shared-value"), "hashed_email")
    bad = carriers[30]
    x = NamingX(events, {bad: detail})
    assert x.run() <= 2 + 2 + 1 + 6 + 1  # two singles accepted, then halving 58
