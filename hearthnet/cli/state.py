"""What every command gets from the group: where the config is, loaded on demand.

The config is loaded lazily (and inside the error boundary) so commands that do not need
it - `version`, `completion` - never read or validate config.toml.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hearthnet.config import Config


@dataclass
class CliState:
    config_path: Path | None = None
    _config: Any = field(default=None, repr=False)

    def config(self) -> "Config":
        """Load (once) and return the Config; raises ConfigError on a bad file."""
        if self._config is None:
            from hearthnet.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def with_config_path(self, path: Path | None) -> "CliState":
        """A command-level --config (as on `run`) overrides the group's."""
        if path is None or path == self.config_path:
            return self
        return CliState(config_path=path)

    def log_dir(self) -> Path | None:
        """Where the CLI writes details of an internal error: the node's log dir if the
        config has been loaded, else the default one."""
        if self._config is not None:
            return self._config.paths.log_dir
        from hearthnet.paths import default_paths

        return default_paths().log_dir
