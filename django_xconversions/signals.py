"""Public signals: connect a receiver to follow conversions without touching the engine.

Each is sent once the transaction that did the work has committed (never for work rolled
back), with ``send_robust``: a receiver that raises is logged by ``django.dispatch`` and
neither stops the other receivers nor breaks the save, the request or the send that led to
it. Receivers run in the process that did the work (a web process for
``conversion_recorded``, usually a ``send_conversions`` worker for the others). The README
shows a receiver for each.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A conversion was stored by track(), a bound model (SOURCES) or the REST API, in any
#: status: pending, held (no tag can take it yet), skipped (no consent) or failed (a value
#: broke a rule). ``created`` is False for a repeat of a stored (event, conversion_id),
#: which leaves the stored row as it was.
#: sender: Conversion; provides args: conversion, created
conversion_recorded = Signal()

#: X accepted a batch of conversions (HTTP 200); their rows are now ``sent``.
#: sender: Pixel; provides args: pixel, pks, debug_id, count
conversions_sent = Signal()

#: Conversions are now ``failed`` for good: refused before sending (invalid), rejected by
#: X, not found on X, or given up after MAX_ATTEMPTS. Retries are not failures.
#: sender: Pixel; provides args: pixel, pks, reason, message, count
conversions_failed = Signal()

#: The engine paused an account (X refused its credentials, could not find its pixel, or
#: its stored secrets cannot be read); its conversions wait until an admin resumes it.
#: sender: AdAccount; provides args: account, reason
account_paused = Signal()
