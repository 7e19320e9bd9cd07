"""`hearthnet version`: package, contract, Python and OS versions on one line."""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output
from hearthnet.version import CONTRACT_VERSION, __version__


@dataclass(frozen=True)
class VersionResult:
    version: str
    contract_version: str
    python: str
    platform: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def human(self, out: Output) -> None:
        out.echo(
            f"hearthnet {self.version} (contract {self.contract_version}) "
            f"Python {self.python} {self.platform}"
        )


def _platform() -> str:
    if hasattr(os, "uname"):  # cheap; `platform.platform()` costs ~10 ms of startup
        u = os.uname()
        return f"{u.sysname}-{u.release}-{u.machine}"
    import platform

    return platform.platform()


def version_info() -> VersionResult:
    v = sys.version_info
    return VersionResult(
        version=__version__,
        contract_version=CONTRACT_VERSION,
        python=f"{v.major}.{v.minor}.{v.micro}",
        platform=_platform(),
    )


@click.command("version")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
def cli(as_json: bool) -> None:
    """Print the HearthNet, contract, Python and OS versions."""
    boundary.run(version_info, as_json=as_json)
