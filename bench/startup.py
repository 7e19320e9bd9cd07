"""Start-up: `hearthnet run --no-ui` until every worker is healthy, vs raw supervisord
starting the same number of bare `python -c` programs until all are RUNNING.

    .venv/bin/python bench/startup.py [--runs 3]

No LLM model is configured (the llm worker starts and registers nothing). Target
(issue 2): <= 3 s.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from hearthnet.testing.nodes import Node

PROGRAMS = ("broker", "gateway", "llm")


def ours_once() -> float:
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        node = Node(Path(tmp), "bench")
        node.init()
        try:
            t0 = time.perf_counter()
            node.start(wait_workers=PROGRAMS)
            return time.perf_counter() - t0
        finally:
            node.cleanup()


def raw_once() -> float:
    with tempfile.TemporaryDirectory(prefix="hn-raw-", dir="/tmp") as tmp:
        progs = "".join(f"[program:p{i}]\ncommand={sys.executable} -c \"import time; time.sleep(600)\"\n"
                        f"startsecs=0\nstopasgroup=true\nkillasgroup=true\n" for i in range(len(PROGRAMS)))
        conf = Path(tmp) / "s.conf"
        conf.write_text(f"[unix_http_server]\nfile={tmp}/s.sock\n[supervisord]\nnodaemon=true\n"
                        f"logfile={tmp}/s.log\npidfile={tmp}/s.pid\n[rpcinterface:supervisor]\n"
                        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
                        + progs)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:  # polling also wakes supervisord's loop, as `hearthnet run` does
                rpc = xmlrpc.client.ServerProxy(
                    "http://x", transport=SupervisorTransport(None, None, f"unix://{tmp}/s.sock"))
                try:
                    infos = rpc.supervisor.getAllProcessInfo()
                    if len(infos) == len(PROGRAMS) and all(i["statename"] == "RUNNING" for i in infos):
                        return time.perf_counter() - t0
                except (OSError, http.client.HTTPException, xmlrpc.client.Error):
                    pass
                time.sleep(0.02)
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    raw = [raw_once() for _ in range(args.runs)]
    ours = [ours_once() for _ in range(args.runs)]
    r, o = statistics.median(raw), statistics.median(ours)
    print(json.dumps({"raw_supervisord_s": round(r, 3), "hearthnet_run_s": round(o, 3),
                      "ratio": round(o / r, 2), "runs": args.runs}, indent=2))
    print(f"\nrun --no-ui to all workers healthy: {o:.2f} s (raw supervisord {r:.2f} s, {o / r:.1f}x)")


if __name__ == "__main__":
    main()
