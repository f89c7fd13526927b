"""Prometheus metrics, through the optional ``prometheus-client`` package.

Counters and the request histogram are counted in the process where the work happens
(capture in web processes, delivery in ``send_conversions`` workers), once per batch or
request, never per event. The backlog gauges are read from the database only when scraped,
by ``BacklogCollector``: a handful of grouped queries on the partial indexes, whichever
process answers the scrape.

Everything lives in this module's own ``registry``; ``register(registry)`` adds it to
another one (``prometheus_client.REGISTRY`` behind an existing ``/metrics``). Without
``prometheus-client`` every counting function does nothing and ``AVAILABLE`` is False.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from django.db import connections, router
from django.db.models import Count, Min
from django.utils import timezone

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # pragma: no cover (exercised by the test that hides the package)
    prometheus_client = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

AVAILABLE = prometheus_client is not None
MISSING = (
    "Metrics need the prometheus-client package: "
    "pip install 'django-xconversions[metrics]' (or prometheus-client>=0.20)."
)
PERMISSION = "xconversions.view_metrics"
PERMISSION_CODENAME = "view_metrics"
PERMISSION_NAME = "Can view delivery metrics"
MULTIPROCESS_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")

# X usually answers in tens of milliseconds; its timeouts are tens of seconds.
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

if AVAILABLE:
    registry = CollectorRegistry(auto_describe=True)
    RECORDED = Counter(
        "xconversions_conversions_recorded",
        "Conversions handed to the store by track(), SOURCES or the REST API, after commit, "
        "by their status then (repeats of a stored conversion_id included).",
        ["status"],
        registry=registry,
    )
    SENT = Counter(
        "xconversions_conversions_sent",
        "Conversions X accepted.",
        registry=registry,
    )
    FAILED = Counter(
        "xconversions_conversions_failed",
        "Conversions failed for good, by reason.",
        ["reason"],
        registry=registry,
    )
    REQUESTS = Counter(
        "xconversions_requests",
        "Conversion requests sent to X, by HTTP status (or timeout / transport_error when "
        "no answer came).",
        ["status"],
        registry=registry,
    )
    RATE_LIMITED = Counter(
        "xconversions_rate_limited",
        "Answers 429 (rate limited) from X, by ad account.",
        ["account"],
        registry=registry,
    )
    REQUEST_SECONDS = Histogram(
        "xconversions_request_seconds",
        "Time a conversion request to X took, answer or not.",
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )
    PROCESS_METRICS: tuple[Any, ...] = (
        RECORDED,
        SENT,
        FAILED,
        REQUESTS,
        RATE_LIMITED,
        REQUEST_SECONDS,
    )


# -- counting (no-ops without prometheus-client) ----------------------------------------


def count_recorded(by_status: Mapping[str, int]) -> None:
    if AVAILABLE:
        for status, count in by_status.items():
            RECORDED.labels(status).inc(count)


def count_sent(count: int) -> None:
    if AVAILABLE and count:
        SENT.inc(count)


def count_failed(reason: str, count: int) -> None:
    if AVAILABLE and count:
        FAILED.labels(reason).inc(count)


def count_request(status: str, seconds: float, *, account_id: str, rate_limited: bool) -> None:
    if AVAILABLE:
        REQUESTS.labels(status).inc()
        REQUEST_SECONDS.observe(seconds)
        if rate_limited:
            RATE_LIMITED.labels(account_id).inc()


# -- backlog gauges, read at scrape time --------------------------------------------------


class BacklogCollector:
    """Per-account gauges of pending and sending conversions, the age of the oldest due
    one and whether the account is paused; held conversions per reason (a held row has
    no pixel, so no account yet).

    Five small queries per scrape: pending rows per pixel (the due-pending partial index
    holds both columns), sending rows per pixel (rows in flight, few), held rows per
    reason (few), the pixels' accounts and the accounts.
    """

    def __init__(self, *, close_connection: bool = False) -> None:
        # A scrape served by prometheus_client's own HTTP server runs on a fresh thread:
        # its database connection would outlive the scrape otherwise.
        self.close_connection = close_connection

    def describe(self) -> Iterable[Any]:
        # Registration calls describe(): names without samples, and no query.
        return list(self._families())

    def collect(self) -> Iterable[Any]:
        try:
            return list(self._collect())
        finally:
            if self.close_connection:
                connections.close_all()

    def _families(self) -> Iterator[Any]:
        account = ["account"]
        yield GaugeMetricFamily(
            "xconversions_pending_conversions",
            "Pending conversions per ad account.",
            labels=account,
        )
        yield GaugeMetricFamily(
            "xconversions_sending_conversions",
            "Conversions claimed by a worker and in flight, per ad account.",
            labels=account,
        )
        yield GaugeMetricFamily(
            "xconversions_oldest_pending_age_seconds",
            "How long the longest-waiting due conversion of the account has been due "
            "(0 when none is due).",
            labels=account,
        )
        yield GaugeMetricFamily(
            "xconversions_account_paused",
            "1 while the account is paused (its conversions wait for an admin).",
            labels=account,
        )
        yield GaugeMetricFamily(
            "xconversions_held_conversions",
            "Conversions no event tag can take yet, by reason.",
            labels=["reason"],
        )

    def _collect(self) -> Iterator[Any]:
        from django_xconversions.models import AdAccount, Conversion, Pixel

        using = router.db_for_read(Conversion)
        now = timezone.now()
        rows = Conversion.objects.using(using)
        status = Conversion.Status
        pending = (
            rows.filter(status=status.PENDING)
            .values("pixel_id")
            .annotate(n=Count("*"), due_since=Min("next_attempt_at"))
            .order_by()
        )
        sending = (
            rows.filter(status=status.SENDING).values("pixel_id").annotate(n=Count("*")).order_by()
        )
        held = (
            rows.filter(status=status.HELD)
            .values("error_reason")
            .annotate(n=Count("*"))
            .order_by("error_reason")
        )
        account_of = dict(Pixel.objects.using(using).values_list("pk", "account_id"))
        accounts = list(
            AdAccount.objects.using(using)
            .order_by("account_id")
            .values_list("pk", "account_id", "status")
        )

        pending_n: dict[int, int] = {}
        due_since: dict[int, dt.datetime] = {}
        for row in pending:
            owner = account_of.get(row["pixel_id"])
            if owner is None:
                continue
            pending_n[owner] = pending_n.get(owner, 0) + row["n"]
            if owner not in due_since or row["due_since"] < due_since[owner]:
                due_since[owner] = row["due_since"]
        sending_n: dict[int, int] = {}
        for in_flight in sending:
            owner = account_of.get(in_flight["pixel_id"])
            if owner is not None:
                sending_n[owner] = sending_n.get(owner, 0) + in_flight["n"]

        pending_g, sending_g, age_g, paused_g, held_g = self._families()
        for pk, account_id, account_status in accounts:
            pending_g.add_metric([account_id], pending_n.get(pk, 0))
            sending_g.add_metric([account_id], sending_n.get(pk, 0))
            since = due_since.get(pk)
            age = max(0.0, (now - since).total_seconds()) if since is not None else 0.0
            age_g.add_metric([account_id], age)
            paused_g.add_metric([account_id], int(account_status == AdAccount.Status.PAUSED))
        for reason in held:
            held_g.add_metric([reason["error_reason"]], reason["n"])
        yield from (pending_g, sending_g, age_g, paused_g, held_g)


if AVAILABLE:
    registry.register(BacklogCollector())


# -- exposing --------------------------------------------------------------------------


def multiprocess_mode() -> bool:
    """prometheus-client's multiprocess mode: counters of every process on this host are
    kept in files under PROMETHEUS_MULTIPROC_DIR and summed when scraped."""
    return any(name in os.environ for name in MULTIPROCESS_VARIABLES)


def register(target: Any) -> None:
    """Add our counters, histogram and backlog gauges to ``target`` (a CollectorRegistry,
    e.g. ``prometheus_client.REGISTRY`` behind an existing /metrics)."""
    if not AVAILABLE:
        raise RuntimeError(MISSING)
    for metric in PROCESS_METRICS:
        target.register(metric)
    target.register(BacklogCollector())


def collecting_registry(*, backlog: bool = True, close_connection: bool = False) -> Collector:
    """What a scrape reads: this process's counters (in multiprocess mode, those of every
    process, from PROMETHEUS_MULTIPROC_DIR), with the backlog gauges if ``backlog``."""
    if not AVAILABLE:
        raise RuntimeError(MISSING)
    if backlog and not close_connection and not multiprocess_mode():
        return registry
    scraped = CollectorRegistry(auto_describe=True)
    if multiprocess_mode():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(scraped)  # type: ignore[no-untyped-call]
    else:
        for metric in PROCESS_METRICS:
            scraped.register(metric)
    if backlog:
        scraped.register(BacklogCollector(close_connection=close_connection))
    return scraped


def render(accept: str = "") -> tuple[bytes, str]:
    """The scrape's body and content type (OpenMetrics when ``accept`` asks for it)."""
    if not AVAILABLE:
        raise RuntimeError(MISSING)
    encode, content_type = prometheus_client.exposition.choose_encoder(accept)
    return encode(collecting_registry()), content_type


def serve(port: int, addr: str = "127.0.0.1", *, backlog: bool = False) -> Any:
    """Serve this process's counters on ``http://addr:port/`` (a worker on a host of its
    own); returns prometheus-client's server and thread. The backlog gauges are the same
    from every process (they are read from the database): by default only the metrics
    view reports them."""
    if not AVAILABLE:
        raise RuntimeError(MISSING)
    served = collecting_registry(backlog=backlog, close_connection=backlog)
    return prometheus_client.start_http_server(port, addr, registry=served)


# -- the permission -------------------------------------------------------------------


def create_permission(**kwargs: Any) -> None:
    """post_migrate: create ``xconversions.view_metrics`` (read the metrics view; it
    shows no conversion), so it can be granted to a scraping user alone."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    from django_xconversions.models import AdAccount

    using = kwargs.get("using", "default")
    if not router.allow_migrate_model(using, Permission):
        return
    content_type = ContentType.objects.db_manager(using).get_for_model(AdAccount)
    Permission.objects.using(using).get_or_create(
        content_type=content_type,
        codename=PERMISSION_CODENAME,
        defaults={"name": PERMISSION_NAME},
    )
