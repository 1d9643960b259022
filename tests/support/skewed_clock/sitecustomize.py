"""Put this folder on a worker's PYTHONPATH to shift its wall clock by VUQ_TEST_CLOCK_SKEW_S seconds
(time.time and time.time_ns): a host whose clock is off, for the one-clock tests."""

import os
import time

_SKEW_S = float(os.environ.get("VUQ_TEST_CLOCK_SKEW_S", "0") or 0)
if _SKEW_S:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _SKEW_S
    time.time_ns = lambda: _time_ns() + int(_SKEW_S * 1_000_000_000)
