"""Direct chat: end-to-end delivery latency between two online nodes vs a raw signed peer call.

    .venv/bin/python bench/chat.py [--messages 60] [--rounds 3] [--rate 4]

Two real nodes on this host (loopback, multicast off, throw-away XDG homes): A founds a
community, B joins by invite, each is told where the other is (`peer add`), B runs the
echo worker. Alternating round by round:

- chat: `chat.send` on A's local API (encrypt, append to A's log, push to B's
  `chat.deliver` over HTTPS, B's ledger verifies and stores it), then B's local API is
  polled (`chat.history` since the last message) until the message is there, decrypted
  ("visible on B"), then A's until it carries B's `delivered` receipt (B's worker sees the
  event, appends the receipt, pushes it back: "receipt on A"). Times from just before
  the send.
- raw (baseline, same run): `experimental.echo` called on A and served by B: one signed
  HTTPS request and signed reply between the same two nodes, through both brokers.

Paced (--rate messages a second; each message is two `chat.deliver` calls, the peer API
allows 10 a second per capability). Prints p50/p99 of each as medians over rounds, and
the ratios to the raw call.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid

from hearthnet.testing.pair_bench import LocalCalls, NodePair, poll, raw_round, report, round_stats

CORE = ("broker", "gateway", "ledger", "discovery", "chat")


def chat_round(a: LocalCalls, b: LocalCalls, a_id: str, b_id: str, n: int, rate: float) -> dict[str, list[float]]:
    visible, receipt, direct = [], [], 0
    since = max([m["lamport"] for m in b.call("chat.history", {"peer": a_id})["messages"]] or [0])
    gap, nxt = 1.0 / rate, time.monotonic()
    for i in range(n):
        nxt += gap
        t0 = time.perf_counter()
        out = a.call("chat.send", {"client_id": uuid.uuid4().hex, "recipient": b_id, "body": f"bench {i} " + "x" * 100})
        direct += out["delivered"] == "direct"
        eid = out["event_id"]
        poll(lambda: any(m["event_id"] == eid and m["decrypted"]
                         for m in b.call("chat.history", {"peer": a_id, "since_lamport": since})["messages"]))
        visible.append((time.perf_counter() - t0) * 1000)
        poll(lambda: any(m["event_id"] == eid and m["delivered_at"]
                         for m in a.call("chat.history", {"peer": b_id, "since_lamport": out["lamport"] - 1})["messages"]))
        receipt.append((time.perf_counter() - t0) * 1000)
        since = out["lamport"] - 1
        time.sleep(max(0.0, nxt - time.monotonic()))
    return {"visible": visible, "receipt": receipt, "direct": [float(direct)]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=60, help="per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=4.0, help="messages (and raw calls) per second, <= 5")
    args = ap.parse_args()
    if args.rate > 5:
        ap.error("--rate at most 5: each message is two chat.deliver calls, the peer limit is 10/s")
    res: dict[str, list[dict[str, float]]] = {"visible": [], "receipt": [], "raw": []}
    direct = 0
    with NodePair("hn-bench-chat-", CORE) as pair:
        pair.wait_routes("chat.deliver", a_caps_on_b=("chat.deliver",))
        api_a, api_b = pair.local_calls()
        a_id, b_id = pair.a_id, pair.b_id
        chat_round(api_a, api_b, a_id, b_id, 5, args.rate)  # warm: TLS sessions, pins, boxes
        raw_round(api_a, 5, args.rate)
        for i in range(args.rounds):
            got = chat_round(api_a, api_b, a_id, b_id, args.messages, args.rate)
            direct += int(got["direct"][0])
            raw = raw_round(api_a, args.messages, args.rate)
            for name, lat in (("visible", got["visible"]), ("receipt", got["receipt"]), ("raw", raw)):
                res[name].append(round_stats(lat))
            print(f"round {i + 1}: visible p50 {res['visible'][-1]['p50_ms']:.1f} ms, receipt p50 "
                  f"{res['receipt'][-1]['p50_ms']:.1f} ms, raw p50 {res['raw'][-1]['p50_ms']:.1f} ms", flush=True)
    report(f"direct chat A -> B, medians of {args.rounds} rounds of {args.messages} at {args.rate:g}/s",
           {"raw": "raw signed peer call (echo on B)", "visible": "chat.send -> visible on B",
            "receipt": "chat.send -> delivered receipt on A"},
           res, {"direct": direct, "messages": args.messages * args.rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
