"""Is a TCP port free, and who holds it: shared by `hearthnet run` and `hearthnet doctor`."""
from __future__ import annotations

import socket


def try_bind(host: str, port: int) -> OSError | None:
    """None if we could listen on host:port, else the bind error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # Same option the server uses, so a port in TIME_WAIT does not count as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host or "0.0.0.0", port))
        except OSError as exc:
            return exc
    return None


def listener(port: int) -> tuple[int | None, str]:
    """(pid, what it is) of the process listening on `port`, as far as we may know; pid is
    None when we cannot tell, and the text then says why."""
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return None, "another process (run as root to see which)"
    for c in conns:
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN:
            if c.pid is None:
                return None, "another user's process"
            try:
                proc = psutil.Process(c.pid)
                return c.pid, " ".join(proc.cmdline()[:3]) or proc.name()
            except psutil.Error:
                return c.pid, ""
    return None, "another process"
