from __future__ import annotations

from pipeline.receiverhelper.budget import (
    DEFAULT_MAX_IN_FLIGHT_BYTES,
    ListenerBudget,
    Pool,
    Reservation,
)


def test_a_listener_holds_at_most_its_budget() -> None:
    pool = Pool()
    budget = ListenerBudget(1000, pool)
    budget.open()
    first, second = Reservation(budget), Reservation(budget)
    assert first.take(600)
    assert not second.take(600)
    assert second.take(400)
    assert (budget.used, pool.used) == (1000, 1000)
    first.release()
    second.release()
    assert (budget.used, pool.used) == (0, 0)


def test_the_pool_is_the_largest_listener_budget() -> None:
    pool = Pool()
    assert pool.capacity == DEFAULT_MAX_IN_FLIGHT_BYTES
    small, big = ListenerBudget(1000, pool), ListenerBudget(5000, pool)
    small.open()
    big.open()
    assert pool.capacity == 5000
    on_big = Reservation(big)
    assert on_big.take(4500)
    # `small` has room of its own, but the process-wide pool has not.
    assert not Reservation(small).take(600)
    assert Reservation(small).take(500)
    big.close()
    assert pool.capacity == 1000


def test_one_request_alone_is_admitted_even_beyond_the_budget() -> None:
    pool = Pool()
    budget = ListenerBudget(1000, pool)
    budget.open()
    alone = Reservation(budget)
    assert alone.take(5000)
    assert alone.take(5000)  # it may grow (chunked, inflated) while alone
    assert not Reservation(budget).take(1)
    alone.release()
    assert Reservation(budget).take(1)


def test_release_is_idempotent_and_zero_takes_nothing() -> None:
    pool = Pool()
    budget = ListenerBudget(10, pool)
    r = Reservation(budget)
    assert r.take(0)
    assert r.take(5)
    r.release()
    r.release()
    assert (budget.used, pool.used, r.held) == (0, 0, 0)
