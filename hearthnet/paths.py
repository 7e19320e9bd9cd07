"""Where a node keeps its files (XDG via platformdirs; spec core-identity-config §9).

Every path honours XDG_*_HOME, so several nodes can share one host in tests. The run dir
holds the ipc sockets and the local API token; it must be short (ipc paths are limited to
~107 bytes) and private (0700), so it lives under /tmp keyed by the data dir unless
HEARTHNET_RUN_DIR says otherwise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Where the running node is, without dataclasses (hearthnet.rundir: `status --json` is fast).
from hearthnet.rundir import APP, _user_dir, run_dir_for, run_dir_name  # noqa: F401


@dataclass(frozen=True)
class NodePaths:
    data_dir: Path
    config_dir: Path
    cache_dir: Path
    log_dir: Path
    run_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def communities_dir(self) -> Path:
        return self.data_dir / "communities"

    @property
    def api_token_file(self) -> Path:
        return self.run_dir / "api.token"

    @property
    def api_socket(self) -> Path:
        """The local (owner-only) API: HTTP over this unix socket in the 0700 run dir."""
        return self.run_dir / "api.sock"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def api_endpoint_file(self) -> Path:
        """{"socket"} of the running node's local API (plus the peer port), written by
        `hearthnet run`: the CLI finds the node here without loading config.toml."""
        return self.run_dir / "api.json"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def supervisor_conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def broker_workers_endpoint(self) -> str:
        return f"ipc://{self.run_dir}/workers.ipc"

    @property
    def broker_clients_endpoint(self) -> str:
        return f"ipc://{self.run_dir}/clients.ipc"


def default_paths(env: dict[str, str] | None = None) -> NodePaths:
    """Resolve the XDG default locations (respecting XDG_* and HEARTHNET_RUN_DIR)."""
    env = dict(os.environ) if env is None else env
    data = Path(_user_dir("data"))
    return NodePaths(
        data_dir=data,
        config_dir=Path(_user_dir("config")),
        cache_dir=Path(_user_dir("cache")),
        log_dir=Path(_user_dir("state")) / "log",
        run_dir=run_dir_for(data, env),
    )


def ensure_private_dir(path: Path) -> Path:
    """Create `path` as a 0700 directory owned by us; refuse one owned by someone else."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.getuid():
        from hearthnet.errors import HearthNetError

        raise HearthNetError("unauthorized", f"{path} belongs to another user; refusing to use it")
    os.chmod(path, 0o700)
    return path
