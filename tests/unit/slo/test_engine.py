from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.slo.engine import Engine, SLOTracker
from pipeline.slo.model import SLO, AlertingConfig
from pipeline.slo.native import parse_native
from pipeline.slo.persistence import StateFile
from tests.unit.slo.sim import HOUR, MINUTE, T0_S, Clock


def slo(window: str = "30d", objective: float = 99.9, name: str = "s") -> SLO:
    [s] = parse_native([{"name": name, "service": "api", "objective": objective,
                         "window": window, "sli": {"type": "availability"}}])
    return s


def test_windows_and_bounded_buckets() -> None:
    tr = SLOTracker(slo(), AlertingConfig())
    assert list(tr.windows) == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    assert {name: (w.tier.res, w.k) for name, w in tr.windows.items()} == {
        "5m": (60, 5), "30m": (60, 30), "1h": (60, 60), "2h": (60, 120), "6h": (60, 360),
        "1d": (300, 288), "3d": (300, 864), "30d": (3600, 720)}
    assert sum(t.size for t in tr.tiers.values()) == 360 + 864 + 720


def test_page_threshold_scaled_for_a_7_day_period() -> None:
    # 7d period: 2% of the budget in an hour is a burn rate of 3.36 (14.4 * 7/30).
    clock = Clock()
    eng = Engine([slo("7d")], AlertingConfig.model_validate(
        {"rules": [{"severity": "page", "long_window": "1h", "short_window": "5m",
                    "burn_rate": 14.4}]}), clock)
    assert eng.trackers["s"].rules[0].threshold == pytest.approx(3.36)
    for minute in range(120):
        clock.advance(MINUTE)
        errors = 4 if minute >= 60 else 0  # 0.4% errors = 4x burn from minute 60
        eng.record("s", total=1000, bad=errors)
        fired = eng.evaluate()
        if fired:
            break
    # 4x over 1h passes 3.36 once 50.4 of its 60 minutes are bad: the 51st.
    assert minute == 60 + 50
    assert fired[0].severity == "page"
    assert fired[0].state == "firing"
    assert fired[0].threshold == pytest.approx(3.36)


def test_for_delays_firing() -> None:
    clock = Clock()
    alerting = AlertingConfig.model_validate(
        {"rules": [{"severity": "page", "long_window": "1h", "short_window": "5m",
                    "burn_rate": 14.4, "for": "3m"}], "min_events": 0})
    eng = Engine([slo()], alerting, clock)
    states = []
    for _ in range(12):
        clock.advance(MINUTE)
        eng.record("s", total=100, bad=100)
        states.append([t.state for t in eng.evaluate()])
    assert states[:3] == [[], [], []]
    assert states[3] == ["firing"]
    st = eng.get("s")
    assert st.alerts[0].firing
    assert st.alerts[0].since == T0_S + 4 * MINUTE


def test_state_round_trip(tmp_path: Path) -> None:
    clock = Clock()
    eng = Engine([slo(), slo(name="t")], AlertingConfig(), clock)
    for _ in range(3 * 24):
        clock.advance(HOUR)
        eng.record("s", total=60_000, bad=6)
        eng.record("t", total=100, good=100)
        eng.evaluate()
    path = tmp_path / "state.json"
    StateFile(path).save(eng.dump_state())
    eng2 = Engine([slo(), slo(name="t")], AlertingConfig(), clock)
    assert eng2.load_state(StateFile(path).load() or {}) == []
    for name in ("s", "t"):
        a, b = eng.get(name), eng2.get(name)
        assert a.windows == b.windows
        assert a.error_budget_remaining == b.error_budget_remaining
        assert a.budget_history == b.budget_history
    # A changed indicator starts afresh, with a note.
    [changed] = parse_native([{"name": "s", "service": "api", "objective": 99.9,
                               "sli": {"type": "availability", "match": {"x": "y"}}}])
    eng3 = Engine([changed], AlertingConfig(), clock)
    notes = eng3.load_state(StateFile(path).load() or {})
    assert notes == ["SLO s: its indicator changed; counting afresh",
                     "SLO t: saved state dropped (no longer defined)"]
    assert eng3.get("s").window("30d").total == 0


def test_no_events_means_no_sli_and_a_full_budget() -> None:
    eng = Engine([slo()], AlertingConfig(), Clock())
    st = eng.get("s")
    assert st.sli is None
    assert st.error_budget_remaining == 1.0
    assert all(w.burn_rate is None for w in st.windows)
    assert st.to_dict()["windows"]["5m"] == {"sli": None, "burn_rate": None, "good": 0.0,
                                             "bad": 0.0, "total": 0.0}
    assert eng.evaluate() == []


def test_state_file_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    sf = StateFile(path)
    assert sf.load() is None
    sf.save({"version": 1, "a": [1, 2]})
    sf.save({"version": 1, "a": [3]})
    assert sf.load() == {"version": 1, "a": [3]}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp files left
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="unreadable SLO state"):
        sf.load()
    assert not path.exists()
