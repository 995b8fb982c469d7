"""Rate limits in the adapter contract (Adapter.take_rate, djjobs/ratelimits.py): an exact
sliding window per key, on every adapter."""
import pytest

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def test_a_window_admits_limit_starts_then_says_when_the_next_may(adapter):
    taken = [adapter.take_rate("api", 3, 10.0, f"m{i}") for i in range(3)]
    assert taken == [0.0, 0.0, 0.0]
    adapter.clock.advance(4)
    assert adapter.take_rate("api", 3, 10.0, "m3") == pytest.approx(6.0)  # the first leaves at +10
    adapter.clock.advance(5.5)
    assert adapter.take_rate("api", 3, 10.0, "m4") == pytest.approx(0.5)  # refused calls counted nothing
    adapter.clock.advance(0.5)
    # exactly one period after the first three: they have left the window (it is (now - period, now])
    assert [adapter.take_rate("api", 3, 10.0, f"m{i}") for i in (5, 6, 7)] == [0.0, 0.0, 0.0]
    assert adapter.take_rate("api", 3, 10.0, "m8") == pytest.approx(10.0)


def test_no_window_ever_holds_more_than_the_limit(adapter):
    """Offered a start every 0.25 s for 30 s, a 5-per-2-s window admits starts such that any
    two that are 5 apart are at least 2 s apart (no burst at a window's edge)."""
    admitted = []
    for i in range(120):
        if adapter.take_rate("steady", 5, 2.0, f"m{i}") == 0:
            admitted.append(adapter.clock())
        adapter.clock.advance(0.25)
    assert all(later - earlier >= 2.0 - 1e-9 for earlier, later in zip(admitted, admitted[5:]))
    assert len(admitted) >= 5 * 14  # and it admits up to the limit: ~5 per 2 s over 30 s


def test_keys_are_independent_and_listed_with_their_use(adapter):
    assert adapter.take_rate("a", 1, 60.0, "x") == 0.0
    assert adapter.take_rate("b", 2, 30.0, "y") == 0.0
    assert adapter.take_rate("a", 1, 60.0, "z") > 0
    uses = {u.key: (u.limit, u.period, u.used) for u in adapter.rate_uses()}
    assert uses == {"a": (1, 60.0, 1), "b": (2, 30.0, 1)}
    adapter.clock.advance(61)
    assert adapter.rate_uses() == []
