"""`scripts/mesh-lab`: N real HearthNet nodes, each in its own network namespace on one
private bridge (hearthnet.testing.netns.MeshLab), joined into one community and left to
find each other by UDP multicast and mDNS. Needs root (namespaces); never sends a packet
outside the namespaces it creates.

    scripts/mesh-lab [--nodes 3] [--keep] [--bench] [--timeout 60] [--prefix hnlab]
    scripts/mesh-lab --separate ...      every node founds its own community instead: they
                                         must see each other as foreign nodes, never as peers
    scripts/mesh-lab --cleanup [--prefix hnlab]   remove a kept (or crashed) lab

Node 1 founds the community (`hearthnet init`) and runs; every other node gets a device
key, `hearthnet id`, an invite from node 1 (`hearthnet invite create`) and redeems it
(`hearthnet invite redeem`, inside its namespace) before it ever runs. Then every node is
stopped, its peer cache emptied (so what follows is discovery, not the cache) and all N are
launched together; the table shows, per node, the peers it lists (`community.peers.list`),
how they were found and how long after the launch its list was complete.

Without --keep everything (processes, namespaces, /tmp/<prefix>) is removed at the end,
also on Ctrl-C or SIGTERM; with --keep a completed lab keeps running and the command to
reach each node is printed. A run first removes whatever an earlier run with the same
prefix left behind.

Exit: 0 every node found all others within --timeout seconds of the launch; 1 it did not
(or a node failed); 2 usage; 3 cannot run here (not root, no `ip`, invite commands missing).
"""
from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any, Callable

from hearthnet.testing.netns import (
    Discovered,
    LabError,
    MeshLab,
    forget_peers,
    form_community,
    found,
    invite_commands_missing,
    lists_peers,
    remove_leftovers,
    sees_foreign,
    unavailable_reason,
    wait_mesh,
)

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwind (and clean up) like Ctrl-C does."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/mesh-lab", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    ap.add_argument("--keep", action="store_true", help="leave the lab running (remove it with --cleanup)")
    ap.add_argument("--bench", action="store_true", help="print the discovery time")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for full discovery (default 60)")
    ap.add_argument("--prefix", default="hnlab", help="namespace name prefix (default hnlab)")
    ap.add_argument("--separate", action="store_true",
                    help="no invites: each node founds its own community (they must stay foreign)")
    ap.add_argument("--cleanup", action="store_true", help="remove the lab of --prefix and exit")
    args = ap.parse_args(argv)
    if not 2 <= args.nodes <= 200:
        ap.error("--nodes must be 2..200")
    return args


def say(text: str) -> None:
    print(text, flush=True)


def separate_communities(lab: MeshLab) -> dict[int, str]:
    """Every node founds its own community; returns k -> short node id."""
    out = {}
    for k in lab.ks:
        out[k] = found(lab.node(k))["node_id_short"]
        say(f"node{k}  founded its own community ({out[k]})")
    return out


def table(lab: MeshLab, state: dict[int, Discovered], t0: float, separate: bool) -> str:
    head = ("node", "address", "peers found", "how found", "foreign seen" if separate else "time to full discovery")
    rows = [head]
    others = lab.n - 1
    for k in lab.ks:
        d = state[k]
        if separate:
            how = d.sources(foreign=True)
            count = f"{len(d.peers)} (foreign {len(d.foreign)}/{others})"
        else:
            how = d.sources()
            count = f"{len(d.peers)}/{others}"
        when = f"{d.done_at - t0:.2f} s" if d.done_at is not None else "not complete"
        rows.append((f"node{k}", f"{lab.addr(k)}:{lab.node(k).port}", count,
                     ", ".join(f"{s} {c}" for s, c in sorted(how.items())) or "-", when))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def bench_lines(state: dict[int, Discovered], t0: float) -> list[str]:
    done = [d.done_at for d in state.values()]
    if any(t is None for t in done):
        return ["discovery time: not complete"]
    last_done = max(t for t in done if t is not None)
    ups = [d.discovery_up_at for d in state.values() if d.discovery_up_at is not None]
    lines = [f"discovery time: {last_done - t0:.2f} s from launching {len(state)} nodes until every node "
             f"listed the {len(state) - 1} others"]
    if len(ups) == len(state):
        lines.append(f"                {last_done - max(ups):.2f} s after the last node's discovery worker "
                     f"was up ({max(ups) - t0:.2f} s after launch)")
    return lines


def print_keep(lab: MeshLab) -> None:
    say(f"\nkept: namespaces {lab.hub}, {lab.ns(1)} .. {lab.ns(lab.n)}; node dirs under {lab.root}")
    for k in lab.ks:
        env_file = lab.node(k).root / "env.sh"
        say(f"  node{k}: ip netns exec {lab.ns(k)} bash -c '. {env_file} && {sys.executable} -m hearthnet status'")
    say(f"  remove: scripts/mesh-lab --cleanup --prefix {lab.prefix}")


def run(args: argparse.Namespace) -> int:
    lab = MeshLab(args.nodes, args.prefix)
    finished = False
    try:
        lab.build()
        say(f"lab {args.prefix}: {args.nodes} namespaces on bridge br0 in {lab.hub}, "
            f"10.231.0.1-{args.nodes}/24, nodes under {lab.root}")
        for k in lab.ks:
            lab.node(k)
        if args.separate:
            expected: dict[int, str] = separate_communities(lab)
            done: Callable[[int, dict[str, Any]], bool] = sees_foreign(expected)
        else:
            expected = form_community(lab, say)
            done = lists_peers(expected)
        for k in lab.ks:
            forget_peers(lab.node(k))
            (lab.node(k).root / "env.sh").write_text(lab.node(k).shell_env())
        t0 = lab.launch_all()
        say(f"launched {args.nodes} nodes; waiting up to {args.timeout:g} s for full discovery")
        state = wait_mesh(lab.nodes, done, args.timeout)
        say("")
        say(table(lab, state, t0, args.separate))
        complete = all(d.done_at is not None for d in state.values())
        if args.bench:
            say("")
            for line in bench_lines(state, t0):
                say(line)
        if not complete:
            for k, d in state.items():
                if d.done_at is None:
                    say(f"node{k}: diagnose: {'; '.join(d.diagnose) or '-'}")
                    if not lab.node(k).running():
                        say(f"node{k}: not running; output:\n{lab.node(k).proc_output()}")
        finished = True
        return EXIT_OK if complete else EXIT_INCOMPLETE
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if args.keep and finished:
            lab.keep = True
            lab.cleanup()
            print_keep(lab)
        elif lab.lock.held:  # else the lab never started (e.g. its prefix is in use): nothing is ours
            say("cleaning up ...")
            lab.cleanup()
            say(f"removed: no namespace of prefix {args.prefix} is left")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C must reach the cleanup even when started from a background job or nohup, which
    # hand SIGINT down ignored (Python then installs no KeyboardInterrupt handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    if args.cleanup:
        if (reason := unavailable_reason()):
            print(f"mesh-lab: {reason}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        try:
            left = remove_leftovers(args.prefix)
        except LabError as exc:
            print(f"mesh-lab: {exc}", file=sys.stderr)
            return EXIT_INCOMPLETE
        say(f"namespaces left: {', '.join(left)}" if left else f"removed lab {args.prefix}")
        return EXIT_INCOMPLETE if left else EXIT_OK
    if (reason := unavailable_reason()):
        print(f"mesh-lab: {reason}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if not args.separate and (missing := invite_commands_missing()):
        print(f"mesh-lab: blocked: this install lacks {', '.join(missing)} (needed to join nodes into one "
              "community); try --separate", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        return run(args)
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"mesh-lab: interrupted ({exc or 'SIGINT'}); the lab was removed", file=sys.stderr)
        return 130
    except LabError as exc:
        print(f"mesh-lab: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
