from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse: own XDG tree per test)
