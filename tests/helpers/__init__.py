"""What tests share besides fixtures (those live in tests/conftest.py): waiting on a
condition, a clock to move forward, and how to start the processes tests talk to."""

from tests.helpers.clock import ShiftedClock
from tests.helpers.waiting import holds_for, wait_until

__all__ = ["ShiftedClock", "holds_for", "wait_until"]
