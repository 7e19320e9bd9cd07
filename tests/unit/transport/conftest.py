"""Transport tests: isolated XDG tree per test (no HEARTHNET_* leaks)."""
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)
