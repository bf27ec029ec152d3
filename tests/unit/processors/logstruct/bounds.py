"""Helpers of the bound tests: hostile lines, the configs they go through, and timing that
holds on a loaded machine: both the bound and the growth are CPU time of this process
(`process_time`): what one line costs the event loop on a core of its own. Wall time would
measure the machine's other work too: on a loaded machine (CI beside other jobs) a
wall-time bound fails for lines that cost a few milliseconds of CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: The bound of DESIGN.md "Robustness rules": no line holds the event loop longer.
BOUND_S = 0.100
#: 40 KB versus 5 KB: linear work grows 8x, quadratic 64x. Below `_NOISE_S` the timer,
#: allocation and a busy machine dominate, and the ratio says nothing.
MAX_GROWTH = 20.0
_NOISE_S = 0.002

#: Shapes of hostile lines (issue 11): `'a.' * 20000 + '!'` froze grok
#: %{COMBINEDAPACHELOG} 18.9 s, `'1:' * 20000` the template miner 33.7 s.
SHAPES: dict[str, Callable[[int], str]] = {
    "a.": lambda n: "a." * (n // 2) + "!",
    "1:": lambda n: "1:" * (n // 2),
    "a": lambda n: "a" * n,
    "spaces": lambda n: "x" + " " * (n - 2) + "y",
    "%": lambda n: "%" * n,
    "]": lambda n: "<34>1 2003-10-11T22:14:15.003Z host app - ID47 [" + "]" * n + "!",
    '\\"': lambda n: '1.2.3.4 - - [01/Mar/2024:12:00:00 +0000] "GET / HTTP/1.1" 200 5 "'
                     + '\\"' * (n // 2),
    "{": lambda n: "{" * n,
    "k=": lambda n: "k=" * (n // 2),
    "words": lambda n: " ".join(f"w{i}" for i in range(n // 6)),
}

#: Every parser type, and grok with the commonly used top-level patterns.
GROK_TOP = ["COMBINEDAPACHELOG", "COMMONAPACHELOG", "SYSLOGLINE", "SYSLOGBASE",
            "SYSLOG5424LINE", "HTTPD_ERRORLOG", "URI", "JAVACLASS"]
CONFIGS: dict[str, dict[str, Any]] = {
    "auto": {"auto": True},
    "json": {"parsers": [{"type": "json"}]},
    "logfmt": {"parsers": [{"type": "logfmt"}]},
    "syslog": {"parsers": [{"type": "syslog"}]},
    "access_log": {"parsers": [{"type": "access_log"}]},
    "apache_error": {"parsers": [{"type": "apache_error"}]},
    "klog": {"parsers": [{"type": "klog"}]},
    "container": {"parsers": [{"type": "container"}], "auto": True},
    "regex": {"parsers": [{"type": "regex", "pattern":
                           r'(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] '
                           r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" '
                           r'(?P<status>\d{3}) (?P<size>\d+)'}]},
    "grok_combined": {"parsers": [{"type": "grok", "pattern": "%{COMBINEDAPACHELOG}"}]},
    "grok_top": {"parsers": [{"type": "grok",
                              "pattern": ["%{" + p + "}" for p in GROK_TOP]}]},
    "templates": {"templates": {"enabled": True}},
    "auto_templates": {"auto": True, "templates": {"enabled": True}},
}


def best_of(run: Callable[[], object], reps: int = 3,
            clock: Callable[[], float] = time.process_time) -> float:
    """The shortest of `reps` timed runs of `run`, in seconds of `clock` (a run the
    machine interrupted is slower, never faster)."""
    best = float("inf")
    for _ in range(reps):
        t0 = clock()
        run()
        best = min(best, clock() - t0)
    return best


def assert_linear(timed: Callable[[int], float], small: int = 5_000,
                  big: int = 40_000, what: str = "") -> tuple[float, float]:
    """`timed(n)` (seconds for an input of n characters) grows about linearly: the big
    input within MAX_GROWTH times the small one's time (linear is 8x, quadratic 64x).
    Returns both times."""
    t_small = timed(small)
    t_big = timed(big)
    if t_big > _NOISE_S:
        assert t_big / max(t_small, 1e-6) < MAX_GROWTH, (
            f"{what}: {small} chars {t_small * 1e3:.2f} ms, {big} chars "
            f"{t_big * 1e3:.2f} ms: not linear")
    return t_small, t_big
