from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hearthnet import profile
from hearthnet.profile import detect_hardware, detect_profile
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)


def test_detect_hardware_shape(tmp_path: Path) -> None:
    hw = detect_hardware(tmp_path / "does" / "not" / "exist" / "yet")
    assert set(hw) == {"gpu", "vram_gb", "ram_gb", "cpu_cores", "disk_free_gb"}
    assert hw["vram_gb"] == 0.0
    assert isinstance(hw["cpu_cores"], int) and hw["cpu_cores"] >= 1
    assert isinstance(hw["ram_gb"], float) and hw["ram_gb"] > 0
    assert isinstance(hw["disk_free_gb"], float) and hw["disk_free_gb"] >= 0
    assert round(hw["ram_gb"], 1) == hw["ram_gb"]
    assert hw["gpu"] is None or isinstance(hw["gpu"], str)


def test_gpu_name_from_proc(tmp_path: Path) -> None:
    assert profile._gpu_name(tmp_path / "absent") is None
    info = tmp_path / "nvidia" / "gpus" / "0000:01:00.0" / "information"
    info.parent.mkdir(parents=True)
    (tmp_path / "nvidia" / "version").write_text("NVRM version: 550\n")
    assert profile._gpu_name(tmp_path / "nvidia") == "nvidia"
    info.write_text("Model: \t NVIDIA GeForce RTX 3060\nIRQ: 42\n")
    assert profile._gpu_name(tmp_path / "nvidia") == "NVIDIA GeForce RTX 3060"


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ({"gpu": None, "ram_gb": 2.0, "cpu_cores": 4}, "spark"),  # Pi 2 GB
        ({"gpu": None, "ram_gb": 3.5, "cpu_cores": 2}, "spark"),  # small, two cores
        ({"gpu": None, "ram_gb": 3.5, "cpu_cores": 4}, "hearth"),
        ({"gpu": None, "ram_gb": 4.0, "cpu_cores": 2}, "hearth"),
        ({"gpu": None, "ram_gb": 8.0, "cpu_cores": 4}, "hearth"),
        ({"gpu": None, "ram_gb": 16.0, "cpu_cores": 6}, "hearth"),
        ({"gpu": None, "ram_gb": 15.9, "cpu_cores": 8}, "hearth"),
        ({"gpu": None, "ram_gb": 16.0, "cpu_cores": 8}, "anchor"),
        ({"gpu": "NVIDIA RTX 3060", "ram_gb": 8.0, "cpu_cores": 4}, "anchor"),
        ({"gpu": "NVIDIA", "ram_gb": 2.0, "cpu_cores": 4}, "spark"),  # spark rule first
    ],
)
def test_detect_profile(hw: dict[str, Any], expected: str) -> None:
    assert detect_profile(hw) == expected


@pytest.mark.parametrize(("host", "expected"), [
    ("kitchen.local", "kitchen"),
    (" attic ", "attic"),
    ("x" * 100 + ".lan", "x" * 64),
    ("", "hearthnet-node"),
])
def test_default_display_name_is_the_short_host_name(monkeypatch: pytest.MonkeyPatch, host: str,
                                                     expected: str) -> None:
    monkeypatch.setattr(profile.socket, "gethostname", lambda: host)
    assert profile.default_display_name() == expected
