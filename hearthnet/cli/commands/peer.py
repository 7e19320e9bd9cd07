"""`hearthnet peer add HOST:PORT`: a peer to reach directly (unicast), for networks that
drop multicast discovery. With the node running, the discovery worker remembers it and
contacts it at once (`community.peers.add`); otherwise it goes into the peer cache that
the node tries at its next start."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState


@dataclass
class PeerAdded:
    address: str
    node_running: bool
    entry: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "node_running": self.node_running, "entry": self.entry}

    def human(self, out: Output) -> None:
        if self.node_running:
            out.echo(f"Added peer {self.address}; the node is contacting it now (see `hearthnet status`).")
        else:
            out.echo(f"Added peer {self.address} to the peer cache; the node is not running, "
                     "so it will be tried at the next start.")


def add_peer(state: "CliState", address: str) -> PeerAdded:
    from hearthnet.discovery.cache import PeerCache, format_address, parse_host_port
    from hearthnet.errors import NodeNotRunning
    from hearthnet.localapi import LocalApi

    host, port = parse_host_port(address)
    where = format_address(host, port)
    cfg = state.config()
    try:
        api = LocalApi.for_running_node(cfg.paths)
        reply = api.call("community.peers.add", "1.0", {"params": {}, "input": {"address": where}})
    except NodeNotRunning:
        entry = PeerCache.for_data_dir(cfg.paths.data_dir).add_manual(host, port)
        return PeerAdded(where, False, entry.to_json())
    output = reply.get("output") if isinstance(reply, dict) else None
    entry = (output or {}).get("entry")
    return PeerAdded(where, True, entry if isinstance(entry, dict) else {})


@click.group("peer")
def cli() -> None:
    """Peers this node reaches directly, beside the ones it discovers."""


@cli.command("add")
@click.argument("address", metavar="HOST:PORT")
@click.option("--json", "as_json", is_flag=True, help="Print {address, node_running, entry}.")
@click.pass_obj
def add_cmd(state: "CliState", address: str, as_json: bool) -> None:
    """Remember HOST:PORT (default port 7080) as a peer and try it.

    Exit 0 when added, 2 for an address that is not HOST:PORT.
    """
    boundary.run(lambda: add_peer(state, address), as_json=as_json, state=state)
