"""What every command gets from the group: where the config is, loaded on demand.

The config is loaded lazily (and inside the error boundary) so commands that do not need
it - `version`, `completion` - never read or validate config.toml.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from hearthnet.config import Config
    from hearthnet.localapi import LocalApi


@dataclass
class CliState:
    config_path: "Path | None" = None
    _config: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.config_path, str):  # click hands over a str (see hearthnet.cli)
            from pathlib import Path

            self.config_path = Path(self.config_path)

    def config(self) -> "Config":
        """Load (once) and return the Config; raises ConfigError on a bad file."""
        if self._config is None:
            from hearthnet.config import ConfigError, config_path_for, load_config

            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                # Name the file so the error's hint can say what to fix.
                exc.details.setdefault("path", str(config_path_for(self.config_path)))
                raise
        return self._config

    def api(self) -> "LocalApi":
        """The local API of the node this config describes (NodeNotRunning when none runs)."""
        from hearthnet.localapi import LocalApi

        return LocalApi.for_running_node(self.config().paths)

    def call(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        """One unary call on the running node: its whole response {output, meta}."""
        reply = self.api().call(cap, "1.0", {"params": {}, "input": inp})
        assert isinstance(reply, dict)
        return reply

    def with_config_path(self, path: "Path | None") -> "CliState":
        """A command-level --config (as on `run`) overrides the group's."""
        if path is None or path == self.config_path:
            return self
        return CliState(config_path=path)

    def log_dir(self) -> "Path | None":
        """Where the CLI writes details of an internal error: the node's log dir if the
        config has been loaded, else the default one."""
        if self._config is not None:
            return self._config.paths.log_dir
        from hearthnet.paths import default_paths

        return default_paths().log_dir
