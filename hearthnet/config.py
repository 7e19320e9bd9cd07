"""config.toml <-> `Config` (spec core-identity-config §10, X04; DESIGN.md §5).

Precedence, lowest first: dataclass defaults < config.toml < `HEARTHNET_<SECTION>_<KEY>`
environment variables. `${VAR}` inside TOML strings is replaced from the environment
when loading. Path values left empty ("" in the file) resolve to the XDG locations of
`NodePaths`; `save_config` writes such defaults back as "" so the file stays portable
(it follows XDG_* instead of pinning today's absolute paths).

No secret ever lives here: LLM API keys are referenced by env-var NAME (`api_key_env`).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from hearthnet.constants import CORPUS_NAME_RE, STREAM_STALL_TIMEOUT_SECONDS
from hearthnet.errors import ConfigError
from hearthnet.fsutil import atomic_write
from hearthnet.paths import NodePaths, default_paths

LOG_LEVELS = ("debug", "info", "warning", "error")
PROFILES = ("", "anchor", "hearth", "spark", "bridge")
LLM_BACKENDS = ("llama_cpp", "openai", "ollama")
# Other names users know from the spec or their server; all speak the OpenAI API.
LLM_BACKEND_ALIASES = {"lmstudio": "openai", "vllm": "openai", "localai": "openai"}
EMBEDDING_DEVICES = ("auto", "cpu", "cuda")
EMBEDDING_BACKENDS = ("minilm", "openai")
# Written by `init` before the embedding worker existed and never served by anything:
# read as "the backend's default model".
EMBEDDING_LEGACY_MODEL = "BAAI/bge-small-en-v1.5"
RAG_RETRIEVAL = ("hybrid", "vector")
MAX_REPLICAS = 16
MINILM_MODEL_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")

# Environment variables in the HEARTHNET_ namespace that are not config keys.
_NON_CONFIG_ENV = frozenset({"HEARTHNET_CONFIG", "HEARTHNET_RUN_DIR"})
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_UNSET_PATH = Path()  # "" in the file: resolve to the XDG default


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class NodeConfig:
    display_name: str = ""
    profile: str = ""


@dataclass(frozen=True)
class IdentityConfig:
    keys_dir: Path = _UNSET_PATH
    auto_generate: bool = True


@dataclass(frozen=True)
class CommunityConfig:
    community_id: str | None = None
    name: str = ""
    # None until the community is known; then <DATA>/communities/<community_id>.
    state_dir: Path | None = None


@dataclass(frozen=True)
class TransportConfig:
    host: str = "0.0.0.0"
    port: int = 7080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Request bodies the peer port holds at once, in total and per sender (gateway/bodybudget.py)
    peer_body_budget_mib: int = 64
    peer_body_per_sender_mib: int = 16


@dataclass(frozen=True)
class DiscoveryConfig:
    mdns_enabled: bool = True
    udp_enabled: bool = True
    udp_multicast_group: str = "239.255.42.42"
    udp_port: int = 42424
    relay_urls: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()  # () = every interface


@dataclass(frozen=True)
class BusConfig:
    prefer_local: bool = True
    local_load_threshold: float = 0.8
    # A stream whose reader consumed nothing this long (window full) is ended `timeout`.
    stream_stall_seconds: float = STREAM_STALL_TIMEOUT_SECONDS


@dataclass(frozen=True)
class LlmBackendConfig:
    name: str
    url: str = ""
    model: str = ""
    model_path: str = ""
    api_key_env: str = ""  # NAME of the env var holding the key, never the key
    ctx: int = 0  # 0 = backend default
    max_concurrent: int = 0  # 0 = backend default
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normalise aliases once so every consumer sees only LLM_BACKENDS names.
        canonical = LLM_BACKEND_ALIASES.get(self.name, self.name)
        object.__setattr__(self, "name", canonical)
        object.__setattr__(self, "models", tuple(self.models))


@dataclass(frozen=True)
class LlmConfig:
    backends: tuple[LlmBackendConfig, ...] = ()


@dataclass(frozen=True)
class EmbeddingConfig:
    # The worker runs when enabled and its backend can run here (minilm: the weights
    # package is installed); otherwise status and doctor say why not.
    enabled: bool = True
    backend: str = "minilm"  # minilm (in-process, English) | openai (any /v1/embeddings server)
    model: str = ""  # "" = the backend's default (minilm: all-MiniLM-L6-v2); openai: required
    url: str = ""  # openai: the server, e.g. http://127.0.0.1:11434/v1 (Ollama)
    api_key_env: str = ""  # openai: NAME of the env var holding the key, never the key
    window_tokens: int = 0  # openai: tokens the model reads per text (0 = unknown)
    batch_size: int = 32  # texts per forward pass / HTTP request
    device: str = "auto"  # kept for old config files; minilm runs on the CPU


@dataclass(frozen=True)
class RagConfig:
    enabled: bool = True  # run the rag worker (rag.query, rag.ingest, rag.list_corpora)
    corpora_dir: Path = _UNSET_PATH
    embedding_model: str = ""  # "" = [embedding] model; a corpus keeps the model it was built with
    retrieval: str = "hybrid"  # rag.query's default mode: hybrid (BM25 + vector, RRF) | vector
    relevance_threshold: float = 0.3  # cosine under which `ask` says nothing relevant was found
    default_corpus: str = ""  # the corpus `ask` searches when none is named ("" = every corpus listed)
    auto_replicate: bool = False  # index documents other members ingested (fetched with file.get)
    pdf_cpu_seconds: float = 60.0  # CPU one PDF may cost to read (rag.extract.PDF_CPU_SECONDS); a costlier one is refused


@dataclass(frozen=True)
class FileConfig:
    blobs_dir: Path = _UNSET_PATH
    gc_threshold: float = 0.8  # evict unpinned blobs (LRU) above this fraction of the disk ...
    gc_target: float = 0.7  # ... down to this one
    min_free_bytes: int = 1_000_000_000  # a put that would leave less free is refused
    capacity_bytes: int = 0  # the store's own "disk" size; 0 = the filesystem it is on


@dataclass(frozen=True)
class MarketConfig:
    enabled: bool = True
    default_ttl_seconds: int = 604800
    max_ttl_seconds: int = 2592000
    search_cache_entries: int = 5000  # post vectors market.search keeps (LRU)
    sweep_seconds: float = 60.0  # the stale sweeper's period (trusted/anchor nodes only)


@dataclass(frozen=True)
class ChatConfig:
    enabled: bool = True
    store_and_forward: bool = True


@dataclass(frozen=True)
class AlertsConfig:
    enabled: bool = True  # the alerts worker (signed emergency alerts, issue 10)


@dataclass(frozen=True)
class EmergencyConfig:
    enabled: bool = True
    # Kind-prefixed targets (dns:IP[:PORT], http204:URL, https:URL, route:default, peers:any|N);
    # unprefixed keep the spec's meaning: an IP -> DNS query, a name -> HTTPS HEAD.
    probe_targets: tuple[str, ...] = ("1.1.1.1", "8.8.8.8", "cloudflare.com", "quad9.net")
    # PEM CA bundle that https:// probes trust INSTEAD of the system store (tests, a LAN
    # "internet"); unset = the system store. Chain and hostname are always verified.
    https_ca_file: Path | None = None


@dataclass(frozen=True)
class UiConfig:
    enabled: bool = True  # `hearthnet run --no-ui` leaves it out too
    host: str = "127.0.0.1"
    port: int = 7860
    launch_browser: bool = True
    lan_access: bool = False  # true: every interface, behind the owner's pairing code


@dataclass(frozen=True)
class ObservabilityConfig:
    log_level: str = "info"
    log_dir: Path = _UNSET_PATH
    metrics_enabled: bool = True
    otlp_endpoint: str | None = None
    metrics_port: int = 0  # a TCP port for a Prometheus scraper (GET /metrics, no token); 0: off
    metrics_host: str = "127.0.0.1"  # where metrics_port listens; anything else is the owner's choice


@dataclass(frozen=True)
class ModelsConfig:
    """`hearthnet model` (hearthnet/models/): where `model pull` downloads from and which
    loopback servers `init`/`doctor` look for."""
    catalogue_url_base: str = ""  # "" = each entry's own URL; else <base>/<file name>
    catalogue_file: str = ""  # a JSON catalogue whose entries add to / replace the built-in ones
    detect_ollama_url: str = "http://127.0.0.1:11434"  # loopback only
    detect_llama_cpp_url: str = "http://127.0.0.1:8080"  # loopback only
    load_check_seconds: float = 120.0  # the llama.cpp load check of `model add`


@dataclass(frozen=True)
class WorkersConfig:
    llm_replicas: int = 1  # supervisord numprocs of the llm worker
    echo: bool = False  # run the experimental.echo demo worker (tests, tutorials)


@dataclass(frozen=True, kw_only=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    community: CommunityConfig = field(default_factory=CommunityConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    rag: RagConfig = field(default_factory=RagConfig)
    file: FileConfig = field(default_factory=FileConfig)
    market: MarketConfig = field(default_factory=MarketConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    emergency: EmergencyConfig = field(default_factory=EmergencyConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    paths: NodePaths
    # Where this config was read from; not part of equality (a saved-then-loaded
    # config equals the original).
    source: Path | None = field(default=None, compare=False)

    @property
    def initialised(self) -> bool:
        return self.community.community_id is not None

    @property
    def community_manifest_path(self) -> Path | None:
        sd = self.community.state_dir
        return None if sd is None else sd / "manifest.json"


# Section name -> dataclass, in the order they are written to config.toml.
SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("paths", "source")
}

LLM_BACKEND_SNIPPET = '''\
# In-process llama.cpp running a local GGUF model file:
[[llm.backends]]
name = "llama_cpp"
model_path = "/path/to/model.gguf"
ctx = 4096
max_concurrent = 1

# Any OpenAI-compatible server (llama.cpp server, LM Studio, vLLM, LocalAI):
[[llm.backends]]
name = "openai"
url = "http://127.0.0.1:8080"          # server base URL
model = "qwen2.5-7b-instruct"
api_key_env = "OPENAI_API_KEY"          # NAME of the env var holding the key (optional)
'''

CONFIG_HEADER = """\
# HearthNet node configuration.
# Sections: [node] [identity] [community] [transport] [discovery] [bus] [llm]
#   ([[llm.backends]] entries) [embedding] [rag] [file] [market] [chat] [alerts] [emergency]
#   [ui] [observability] [models] [workers]
# Path values "" mean the default location (XDG data/cache/state directories).
# "${VAR}" inside a string is replaced by the environment variable VAR when loading.
# Every key can be overridden from the environment as HEARTHNET_<SECTION>_<KEY>,
#   e.g. HEARTHNET_TRANSPORT_PORT=7081 (handy for several nodes on one host).
# hearthnet writes this file whole on init; later it edits only the keys it changes
# (rename, model add/rm, join), keeping your comments.

"""


# --------------------------------------------------------------------------- types


def _kind(tp: Any) -> str:
    """Classify a field's annotation into the handful of shapes config uses."""
    if tp in (str, int, float, bool, Path):
        return tp.__name__.lower()
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return "opt_" + _kind(inner)
    if origin is tuple and args and args[0] is str:
        return "str_tuple"
    if origin is tuple and args and args[0] is LlmBackendConfig:
        return "backends"
    raise TypeError(f"unsupported config field type {tp!r}")


def _field_kinds(cls: type) -> dict[str, str]:
    hints = typing.get_type_hints(cls)
    return {f.name: _kind(hints[f.name]) for f in dataclasses.fields(cls)}


_KINDS: dict[str, dict[str, str]] = {name: _field_kinds(cls) for name, cls in SECTIONS.items()}
_BACKEND_KINDS = _field_kinds(LlmBackendConfig)


def _show(value: Any) -> str:
    """A value as the user wrote it: strings quoted, everything else plain."""
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)
    return str(value)


def _bad(where: str, value: Any, why: str) -> ConfigError:
    return ConfigError("invalid_field", f"{where}: {_show(value)} {why}", field=where, value=str(value))


def _resolve_user_path(text: str, base_dir: Path) -> Path:
    if text == "":
        return _UNSET_PATH
    p = Path(text).expanduser()
    # Relative paths in a config file mean "next to the config file".
    return p if p.is_absolute() else (base_dir / p)


def _from_toml(value: Any, kind: str, where: str, base_dir: Path) -> Any:
    """Check and convert one TOML value to the field's type."""
    if kind.startswith("opt_"):
        if value == "":
            return None
        kind = kind[4:]
    if kind == "str":
        if not isinstance(value, str):
            raise _bad(where, value, "is not a string")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, value, "is not an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(where, value, "is not a number")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _bad(where, value, "is not true or false")
        return value
    if kind == "path":
        if not isinstance(value, str):
            raise _bad(where, value, "is not a path string")
        return _resolve_user_path(value, base_dir)
    if kind == "str_tuple":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(where, value, "is not a list of strings")
        return tuple(value)
    if kind == "backends":
        return _backends_from_toml(value, where, base_dir)
    raise TypeError(kind)


def _backends_from_toml(value: Any, where: str, base_dir: Path) -> tuple[LlmBackendConfig, ...]:
    if not isinstance(value, list):
        raise _bad(where, value, "is not a list of [[llm.backends]] tables")
    out = []
    for i, entry in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise _bad(here, entry, "is not a table")
        kwargs = {}
        for key, v in entry.items():
            if key not in _BACKEND_KINDS:
                raise _bad(f"{here}.{key}", v, "is not a known backend key")
            kwargs[key] = _from_toml(v, _BACKEND_KINDS[key], f"{here}.{key}", base_dir)
        if "name" not in kwargs:
            raise ConfigError("invalid_field", f"{here}.name: missing", field=f"{here}.name")
        out.append(LlmBackendConfig(**kwargs))
    return tuple(out)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _from_env(text: str, kind: str, where: str) -> Any:
    """Parse an environment override by the field's type."""
    if kind.startswith("opt_"):
        if text == "":
            return None
        kind = kind[4:]
    if kind == "str":
        return text
    if kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise _bad(where, text, "is not an integer") from None
    if kind == "float":
        try:
            return float(text.strip())
        except ValueError:
            raise _bad(where, text, "is not a number") from None
    if kind == "bool":
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise _bad(where, text, "is not a boolean (true/false/1/0/yes/no)")
    if kind == "path":
        # Relative paths from the environment are relative to the current directory.
        return _resolve_user_path(text, Path.cwd())
    if kind == "str_tuple":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    raise _bad(where, text, "cannot be set from the environment; edit config.toml")


# --------------------------------------------------------------------------- loading


def _expand_env_refs(obj: Any, env: Mapping[str, str], where: str) -> Any:
    """Replace ${VAR} in every string of the parsed TOML tree."""
    if isinstance(obj, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(
                    "invalid_field",
                    f"{where}: environment variable {name} (used as ${{{name}}}) is not set",
                    field=where,
                    value=obj,
                )
            return env[name]

        return _ENV_REF.sub(sub, obj)
    if isinstance(obj, dict):
        return {k: _expand_env_refs(v, env, f"{where}.{k}" if where else k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand_env_refs(v, env, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError("path_resolution", f"cannot read {path}: {exc.strerror}", path=str(path)) from exc
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # TOMLDecodeError's text already says "(at line L, column C)".
        raise ConfigError("invalid_toml", f"{path}: {exc}", path=str(path)) from exc


def _sections_from_toml(raw: dict[str, Any], base_dir: Path) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for section, table in raw.items():
        if section not in SECTIONS:
            raise _bad(section, section, f"is not a config section ({', '.join(SECTIONS)})")
        if not isinstance(table, dict):
            raise _bad(section, table, "must be a [table]")
        kinds = _KINDS[section]
        for key, value in table.items():
            where = f"{section}.{key}"
            if key not in kinds:
                raise _bad(where, value, f"is not a known key of [{section}]")
            values[section][key] = _from_toml(value, kinds[key], where, base_dir)
    return values


def _apply_env_overrides(values: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    for name, text in env.items():
        if not name.startswith("HEARTHNET_") or name in _NON_CONFIG_ENV:
            continue
        section, _, key = name[len("HEARTHNET_"):].lower().partition("_")
        if section not in SECTIONS:
            continue  # another component's HEARTHNET_* variable, not a config key
        where = f"{section}.{key}"
        if key not in _KINDS[section]:
            # A known section with an unknown key is almost certainly a typo.
            raise _bad(where, text, f"({name}) is not a known key of [{section}]")
        values[section][key] = _from_env(text, _KINDS[section][key], f"{where} ({name})")


def _build(values: dict[str, dict[str, Any]], paths: NodePaths, source: Path | None) -> Config:
    sections = {name: SECTIONS[name](**values.get(name, {})) for name in SECTIONS}
    return resolve_paths(Config(paths=paths, source=source, **sections))


def community_state_dir(paths: NodePaths, community_id: str) -> Path:
    """Where a community's manifest, event log and snapshots live."""
    return paths.communities_dir / community_id


def _default_path_values(paths: NodePaths, community_id: str | None) -> dict[str, Path | None]:
    """The XDG default of every path key, as `section.key` -> path."""
    return {
        "identity.keys_dir": paths.data_dir / "keys",
        "community.state_dir": community_state_dir(paths, community_id) if community_id else None,
        "observability.log_dir": paths.log_dir,
        "file.blobs_dir": paths.data_dir / "blobs",
        "rag.corpora_dir": paths.cache_dir / "embeddings",
    }


def resolve_paths(cfg: Config) -> Config:
    """Fill unset paths from `cfg.paths`; idempotent. An explicit observability.log_dir
    also becomes `paths.log_dir`, so every component logs to the same place."""
    paths = cfg.paths
    log_dir = cfg.observability.log_dir
    if log_dir != _UNSET_PATH:
        paths = dataclasses.replace(paths, log_dir=log_dir)
    defaults = _default_path_values(paths, cfg.community.community_id)
    return dataclasses.replace(
        cfg,
        paths=paths,
        identity=_fill(cfg.identity, "keys_dir", defaults["identity.keys_dir"]),
        community=dataclasses.replace(
            cfg.community, state_dir=cfg.community.state_dir or defaults["community.state_dir"]
        ),
        observability=_fill(cfg.observability, "log_dir", paths.log_dir),
        file=_fill(cfg.file, "blobs_dir", defaults["file.blobs_dir"]),
        rag=_fill(cfg.rag, "corpora_dir", defaults["rag.corpora_dir"]),
    )


def _fill(section: Any, key: str, default: Path) -> Any:
    if getattr(section, key) == _UNSET_PATH:
        return dataclasses.replace(section, **{key: default})
    return section


def config_path_for(path: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The config file to use: explicit path > $HEARTHNET_CONFIG > <CONFIG>/config.toml."""
    env = os.environ if env is None else env
    if path is not None:
        return Path(path).expanduser()
    if env.get("HEARTHNET_CONFIG"):
        return Path(env["HEARTHNET_CONFIG"]).expanduser()
    return default_paths(dict(env)).config_file


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, expand, override, resolve and validate. A missing file gives the defaults
    (a node that has not been initialised: community_id None).

    XDG_* variables are read by platformdirs from the process environment; `env` feeds
    ${VAR} expansion, HEARTHNET_* overrides and HEARTHNET_RUN_DIR."""
    env = os.environ if env is None else env
    source = config_path_for(path, env)
    raw = _expand_env_refs(_read_toml(source), env, "")
    values = _sections_from_toml(raw, source.parent.absolute())
    _apply_env_overrides(values, env)
    cfg = _build(values, default_paths(dict(env)), source)
    validate(cfg)
    return cfg


def default_config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    return _build({}, default_paths(dict(env)), None)


# --------------------------------------------------------------------------- validation


def _check_port(problems: list[str], where: str, port: int) -> None:
    if not 1 <= port <= 65535:
        problems.append(f"{where}: {port} is not a port (1-65535)")


def _check_backend(problems: list[str], i: int, b: LlmBackendConfig) -> None:
    where = f"llm.backends[{i}]"
    if b.name not in LLM_BACKENDS:
        known = ", ".join(LLM_BACKENDS + tuple(LLM_BACKEND_ALIASES))
        problems.append(f"{where}.name: {_show(b.name)} is not a known backend ({known})")
        return
    if b.name == "llama_cpp" and not b.model_path:
        problems.append(f"{where}.model_path: llama_cpp needs the path of a GGUF model file")
    if b.name in ("openai", "ollama"):
        if not b.url:
            problems.append(f"{where}.url: {b.name} needs the server URL")
        elif not b.url.startswith(("http://", "https://")):
            problems.append(f"{where}.url: {_show(b.url)} is not an http(s) URL")
    if b.ctx < 0:
        problems.append(f"{where}.ctx: {b.ctx} must be 0 (backend default) or more")
    if b.max_concurrent < 0:
        problems.append(f"{where}.max_concurrent: {b.max_concurrent} must be 0 (backend default) or more")


def _check_embedding(problems: list[str], e: EmbeddingConfig) -> None:
    if e.device not in EMBEDDING_DEVICES:
        problems.append(f"embedding.device: {_show(e.device)} is not one of {', '.join(EMBEDDING_DEVICES)}")
    if e.backend not in EMBEDDING_BACKENDS:
        problems.append(f"embedding.backend: {_show(e.backend)} is not one of {', '.join(EMBEDDING_BACKENDS)}")
    elif e.backend == "minilm" and e.model not in ("", EMBEDDING_LEGACY_MODEL, *MINILM_MODEL_NAMES):
        problems.append(f"embedding.model: {_show(e.model)}: the minilm backend serves only "
                        f"{MINILM_MODEL_NAMES[0]}; for another model use backend = \"openai\"")
    elif e.backend == "openai":
        if not e.url.startswith(("http://", "https://")):
            problems.append(f"embedding.url: {_show(e.url)}: the openai backend needs the server's "
                            "http(s) URL, e.g. http://127.0.0.1:11434/v1")
        if not e.model or e.model == EMBEDDING_LEGACY_MODEL:
            problems.append("embedding.model: the openai backend needs the server's model name")
    if not 1 <= e.batch_size <= 256:
        problems.append(f"embedding.batch_size: {e.batch_size} must be 1-256")
    if e.window_tokens < 0:
        problems.append(f"embedding.window_tokens: {e.window_tokens} must be 0 (unknown) or more")


def embedding_model(e: EmbeddingConfig) -> str:
    """The model name the embedding worker advertises for this config."""
    return MINILM_MODEL_NAMES[0] if e.backend == "minilm" else e.model


def _problems(cfg: Config) -> list[str]:
    p: list[str] = []
    _check_port(p, "transport.port", cfg.transport.port)
    _check_port(p, "discovery.udp_port", cfg.discovery.udp_port)
    _check_port(p, "ui.port", cfg.ui.port)
    if cfg.transport.port == cfg.discovery.udp_port:
        p.append(f"discovery.udp_port: {cfg.discovery.udp_port} must differ from transport.port")
    if cfg.ui.port == cfg.transport.port:
        p.append(f"ui.port: {cfg.ui.port} must differ from transport.port")
    t = cfg.transport
    if t.peer_body_budget_mib < 1 or not 1 <= t.peer_body_per_sender_mib <= t.peer_body_budget_mib:
        p.append(f"transport.peer_body_per_sender_mib: need 1 <= {t.peer_body_per_sender_mib} <= "
                 f"peer_body_budget_mib ({t.peer_body_budget_mib})")
    if (cfg.transport.tls_cert is None) != (cfg.transport.tls_key is None):
        p.append("transport.tls_cert: tls_cert and tls_key must be set together")
    try:
        if not ipaddress.ip_address(cfg.discovery.udp_multicast_group).is_multicast:
            p.append(f"discovery.udp_multicast_group: {_show(cfg.discovery.udp_multicast_group)} is not a multicast address")
    except ValueError:
        p.append(f"discovery.udp_multicast_group: {_show(cfg.discovery.udp_multicast_group)} is not an IP address")
    if not 0 < cfg.bus.local_load_threshold <= 1:
        p.append(f"bus.local_load_threshold: {cfg.bus.local_load_threshold} must be in (0, 1]")
    if not 0 < cfg.bus.stream_stall_seconds <= 86_400:
        p.append(f"bus.stream_stall_seconds: {cfg.bus.stream_stall_seconds} must be in (0, 86400]")
    if not 0 < cfg.file.gc_threshold <= 1:
        p.append(f"file.gc_threshold: {cfg.file.gc_threshold} must be in (0, 1]")
    mport = cfg.observability.metrics_port
    if not 0 <= mport <= 65535 or (mport and mport in (cfg.transport.port, cfg.ui.port)):
        p.append(f"observability.metrics_port: {cfg.observability.metrics_port} must be 0 (off) or a port other than transport.port and ui.port")
    if cfg.observability.log_level not in LOG_LEVELS:
        p.append(f"observability.log_level: {_show(cfg.observability.log_level)} is not one of {', '.join(LOG_LEVELS)}")
    if cfg.node.profile not in PROFILES:
        p.append(f"node.profile: {_show(cfg.node.profile)} is not one of anchor, hearth, spark, bridge")
    _check_embedding(p, cfg.embedding)
    if cfg.rag.default_corpus and not CORPUS_NAME_RE.match(cfg.rag.default_corpus):
        p.append(f"rag.default_corpus: {_show(cfg.rag.default_corpus)} must match [a-z0-9-]{{1,64}} or be empty")
    if cfg.rag.retrieval not in RAG_RETRIEVAL:
        p.append(f"rag.retrieval: {_show(cfg.rag.retrieval)} is not one of {', '.join(RAG_RETRIEVAL)}")
    if not 0 < cfg.rag.pdf_cpu_seconds <= 3600:
        p.append(f"rag.pdf_cpu_seconds: {cfg.rag.pdf_cpu_seconds} must be in (0, 3600]")
    if not -1 <= cfg.rag.relevance_threshold <= 1:
        p.append(f"rag.relevance_threshold: {cfg.rag.relevance_threshold} must be a cosine similarity in [-1, 1]")
    if not 1 <= cfg.workers.llm_replicas <= MAX_REPLICAS:
        p.append(f"workers.llm_replicas: {cfg.workers.llm_replicas} must be 1-{MAX_REPLICAS}")
    m = cfg.market
    if m.default_ttl_seconds <= 0 or m.max_ttl_seconds < m.default_ttl_seconds:
        p.append(
            f"market.default_ttl_seconds: {m.default_ttl_seconds} must be > 0 and "
            f"<= market.max_ttl_seconds ({m.max_ttl_seconds})"
        )
    if m.search_cache_entries < 1 or not m.sweep_seconds > 0:
        p.append(f"market.search_cache_entries ({m.search_cache_entries}) and market.sweep_seconds "
                 f"({m.sweep_seconds}) must be positive")
    for i, backend in enumerate(cfg.llm.backends):
        _check_backend(p, i, backend)
    _check_probe_targets(p, cfg.emergency.probe_targets)
    if cfg.emergency.https_ca_file is not None and not cfg.emergency.https_ca_file.is_file():
        p.append(f"emergency.https_ca_file: {_show(str(cfg.emergency.https_ca_file))} is not a file")
    return p


def _check_probe_targets(p: list[str], targets: tuple[str, ...]) -> None:
    from hearthnet.emergency.probes import parse_target

    for t in targets:
        try:
            parse_target(t)
        except ValueError as exc:
            p.append(f"emergency.probe_targets: {exc}")


def validate(cfg: Config) -> None:
    """Raise ConfigError("invalid_field") listing every problem, one per line; each
    names the field and the bad value."""
    problems = _problems(cfg)
    if problems:
        first_field = problems[0].split(":", 1)[0]
        raise ConfigError("invalid_field", "\n".join(problems), field=first_field, problems=problems)


# --------------------------------------------------------------------------- saving


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _backend_dict(b: LlmBackendConfig, *, full: bool) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(b):
        v = getattr(b, f.name)
        # In the file only what the user set; the JSON view shows every field.
        if full or f.name == "name" or v != f.default:
            out[f.name] = _plain(v)
    return out


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every section with resolved values, JSON/TOML friendly (None omitted)."""
    out: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = getattr(cfg, name)
        if name == "llm":
            out[name] = {"backends": [_backend_dict(b, full=True) for b in section.backends]}
            continue
        out[name] = {
            f.name: _plain(getattr(section, f.name))
            for f in dataclasses.fields(section)
            if getattr(section, f.name) is not None
        }
    return out


def _file_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """config_to_dict, with paths that equal their XDG default written as ""."""
    out = config_to_dict(cfg)
    base = dataclasses.replace(cfg.paths, log_dir=default_paths().log_dir)
    for where, default in _default_path_values(base, cfg.community.community_id).items():
        section, key = where.split(".")
        if default is not None and out[section].get(key) == str(default):
            out[section][key] = ""
    return out


def _edit_toml(text: str, updates: Mapping[str, Mapping[str, Any]]) -> str | None:
    """`text` with the updates applied by tomlkit, which keeps every comment, blank line
    and key order it does not touch; None if tomlkit cannot do it (update_config_file
    then checks that the result reads back as intended). The commented backend examples
    under [llm] go once a backend is added and come back when the last one is removed."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    hint = _llm_hint()
    backends = (updates.get("llm") or {}).get("backends")
    if backends:
        text = text.replace(hint, "", 1)
    try:
        doc = tomlkit.parse(text)
        for section, keys in updates.items():
            if section not in doc:
                doc.add(tomlkit.nl())
                doc.add(section, tomlkit.table())
            table = doc[section]
            for key, value in keys.items():
                if _removes(section, key, value):
                    table.pop(key, None)
                else:
                    table[key] = _plain(value)
                    if isinstance(table[key], tomlkit.items.AoT):
                        table[key][-1].add(tomlkit.nl())  # a blank line before what follows
        out = tomlkit.dumps(doc)
    except (TOMLKitError, KeyError, TypeError, ValueError, AttributeError):  # a shape it cannot edit
        return None
    if backends == [] and hint not in out:  # the last backend removed: the examples again
        out = out.replace("\n[llm]\n", "\n[llm]\n" + hint, 1)
    return out


def _removes(section: str, key: str, value: Any) -> bool:
    """None removes a key; so does an empty backend list (no [[llm.backends]] left)."""
    return value is None or (section, key) == ("llm", "backends") and not value


def _llm_hint() -> str:
    """The commented backend examples a new config.toml holds under [llm]."""
    return "# No LLM backend yet. Uncomment and adapt one of these:\n" + "".join(
        _comment_out(line) + "\n" for line in LLM_BACKEND_SNIPPET.splitlines())


def render_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text with the header comment and [[llm.backends]] array-of-tables."""
    parts = [CONFIG_HEADER]
    order = list(SECTIONS)
    # Known sections in their documented order, whatever order the user wrote them in.
    ordered = sorted(sections.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    for name, table in ordered:
        if name == "llm":
            parts.append(_render_llm(table))
            continue
        parts.append(tomli_w.dumps({name: dict(table)}) + "\n")
    return "".join(parts).rstrip("\n") + "\n"


def _render_llm(table: Mapping[str, Any]) -> str:
    # tomli_w writes arrays of tables inline; emit [[llm.backends]] blocks ourselves.
    backends = table.get("backends") or []
    if not backends:
        return "[llm]\n" + _llm_hint() + "\n"
    blocks = ["[[llm.backends]]\n" + tomli_w.dumps(dict(b)) for b in backends]
    return "\n".join(blocks) + "\n"


def _comment_out(line: str) -> str:
    if not line or line.startswith("#"):
        return line or "#"
    return "# " + line


def save_config(cfg: Config, path: Path | None = None) -> Path:
    """Write every section atomically; returns the path written."""
    target = Path(path) if path is not None else (cfg.source or cfg.paths.config_file)
    validate(cfg)
    atomic_write(target, render_toml(_file_dict(cfg)).encode("utf-8"), _existing_mode(target))
    return target


def _existing_mode(path: Path, default: int = 0o600) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return default


def update_config_file(
    path: Path, updates: Mapping[str, Mapping[str, Any]], env: Mapping[str, str] | None = None
) -> Path:
    """Set a few keys in config.toml and keep everything else exactly as the user wrote
    it (including "${VAR}" references, which `load → save` would expand, and without
    baking HEARTHNET_* environment overrides into the file). A missing file starts from
    the full default config. The result is checked by loading it before it replaces the
    old file."""
    env = os.environ if env is None else env
    if path.exists():
        sections = {k: dict(v) if isinstance(v, dict) else v for k, v in _read_toml(path).items()}
    else:
        sections = _file_dict(default_config(env))
    for section, keys in updates.items():
        table = sections.setdefault(section, {})
        for key, value in keys.items():
            if _removes(section, key, value):
                table.pop(key, None)
            else:
                table[key] = _plain(value)
    # The user's own file is edited in place (their comments and layout kept); a new
    # file, or one the editor cannot reproduce exactly, is written whole.
    edited = _edit_toml(path.read_text(encoding="utf-8"), updates) if path.exists() else None
    text = edited if edited is not None and tomllib.loads(edited) == sections else render_toml(sections)
    # Validate the new content exactly as `load_config` will read it.
    raw = _expand_env_refs(tomllib.loads(text), env, "")
    values = _sections_from_toml(raw, path.parent.absolute())
    validate(_build(values, default_paths(dict(env)), path))
    atomic_write(path, text.encode("utf-8"), _existing_mode(path))
    return path
