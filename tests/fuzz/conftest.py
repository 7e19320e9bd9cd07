"""Hypothesis profiles for the fuzz tests: modest example counts so the suite stays fast
(`HYPOTHESIS_PROFILE=fuzz-long` for a deeper run), no deadline (a 2-core machine shared
by several test runs has no stable timing)."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
            HealthCheck.filter_too_much]
settings.register_profile("fuzz", max_examples=150, deadline=None, suppress_health_check=_SLOW_OK,
                          derandomize=False, print_blob=True)
settings.register_profile("fuzz-long", max_examples=3000, deadline=None, suppress_health_check=_SLOW_OK,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fuzz"))
