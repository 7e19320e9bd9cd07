from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from pathlib import Path

import pytest

from hearthnet import config as config_mod
from hearthnet.config import (
    LLM_BACKEND_SNIPPET,
    CommunityConfig,
    Config,
    LlmBackendConfig,
    LlmConfig,
    config_to_dict,
    default_config,
    load_config,
    save_config,
    update_config_file,
    validate,
)
from hearthnet.errors import ConfigError
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _config_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "hearthnet" / "config.toml"


# --------------------------------------------------------------------------- defaults


def test_defaults_and_resolved_paths(tmp_path: Path) -> None:
    cfg = default_config()
    data = tmp_path / "data" / "hearthnet"
    assert cfg.transport.port == 7080 and cfg.transport.host == "0.0.0.0"
    assert cfg.discovery.udp_port == 42424 and cfg.discovery.udp_multicast_group == "239.255.42.42"
    assert cfg.discovery.interfaces == ()
    assert cfg.ui.port == 7860 and cfg.observability.log_level == "info"
    assert cfg.bus.local_load_threshold == 0.8 and cfg.workers.llm_replicas == 1
    assert cfg.market.default_ttl_seconds == 604800 and cfg.market.max_ttl_seconds == 2592000
    assert cfg.emergency.probe_targets == ("1.1.1.1", "8.8.8.8", "cloudflare.com", "quad9.net")
    assert cfg.llm.backends == ()
    assert cfg.community.community_id is None and cfg.community.state_dir is None
    assert cfg.identity.keys_dir == data / "keys"
    assert cfg.file.blobs_dir == data / "blobs"
    assert cfg.rag.corpora_dir == tmp_path / "cache" / "hearthnet" / "embeddings"
    assert cfg.observability.log_dir == cfg.paths.log_dir == tmp_path / "state" / "hearthnet" / "log"
    assert cfg.paths.run_dir == tmp_path / "run"
    validate(cfg)


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg == default_config()
    assert cfg.source == _config_file(tmp_path)
    assert not cfg.initialised
    assert not _config_file(tmp_path).exists()  # loading never writes


def test_hearthnet_config_env_selects_file(tmp_path: Path) -> None:
    other = _write(tmp_path / "elsewhere.toml", "[transport]\nport = 7999\n")
    cfg = load_config(env={**os.environ, "HEARTHNET_CONFIG": str(other)})
    assert cfg.transport.port == 7999 and cfg.source == other


# --------------------------------------------------------------------------- round trip


def test_config_round_trip_default(tmp_path: Path) -> None:
    written = save_config(default_config())
    assert written == _config_file(tmp_path)
    assert load_config() == default_config()


def test_config_round_trip_everything_set(tmp_path: Path) -> None:
    base = default_config()
    cid = "ed25519:" + "A" * 43
    cfg = dataclasses.replace(
        base,
        community=CommunityConfig(community_id=cid, name="Elm Street"),
        transport=dataclasses.replace(base.transport, port=7081, tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem"),
        discovery=dataclasses.replace(base.discovery, interfaces=("eth0", "wlan0"), relay_urls=("https://r.example",)),
        llm=LlmConfig(
            backends=(
                LlmBackendConfig(name="llama_cpp", model_path="/m/q.gguf", ctx=4096, max_concurrent=2),
                LlmBackendConfig(name="openai", url="http://10.0.0.2:1234", model="qwen", api_key_env="KEY",
                                 models=("qwen", "llama")),
            )
        ),
        file=dataclasses.replace(base.file, blobs_dir=tmp_path / "blobs-elsewhere"),
        observability=dataclasses.replace(base.observability, otlp_endpoint="http://otel:4317", log_level="debug"),
        workers=dataclasses.replace(base.workers, llm_replicas=3),
        node=dataclasses.replace(base.node, display_name="Anna's Pi", profile="spark"),
    )
    cfg = config_mod.resolve_paths(cfg)
    path = save_config(cfg)
    text = path.read_text()
    assert text.startswith("# HearthNet node configuration.")
    assert text.splitlines().count("[[llm.backends]]") == 2
    loaded = load_config()
    assert loaded == cfg
    assert loaded.community.state_dir == tmp_path / "data" / "hearthnet" / "communities" / cid
    # Default paths are stored as "" so the file follows XDG; explicit ones are kept.
    raw = tomllib.loads(text)
    assert raw["identity"]["keys_dir"] == "" and raw["community"]["state_dir"] == ""
    assert raw["file"]["blobs_dir"] == str(tmp_path / "blobs-elsewhere")


def test_atomic_save_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_config(default_config())
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]
    before = path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    changed = dataclasses.replace(default_config(), ui=dataclasses.replace(default_config().ui, port=7861))
    with pytest.raises(OSError):
        save_config(changed)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]


# --------------------------------------------------------------------------- env


def test_env_override_beats_file(tmp_path: Path) -> None:
    _write(_config_file(tmp_path), "[transport]\nport = 7081\n[observability]\nlog_level = \"warning\"\n")
    env = {
        **os.environ,
        "HEARTHNET_TRANSPORT_PORT": "7082",
        "HEARTHNET_WORKERS_LLM_REPLICAS": "2",
        "HEARTHNET_OBSERVABILITY_LOG_LEVEL": "debug",
        "HEARTHNET_DISCOVERY_MDNS_ENABLED": "no",
        "HEARTHNET_DISCOVERY_INTERFACES": "eth0, wlan0",
        "HEARTHNET_BUS_LOCAL_LOAD_THRESHOLD": "0.5",
        "HEARTHNET_UI_PORT": "7870",
        "HEARTHNET_WORKERS_ECHO": "true",
        "HEARTHNET_SOMETHING_ELSE": "ignored",  # not a config section
    }
    cfg = load_config(env=env)
    assert cfg.transport.port == 7082
    assert cfg.workers.llm_replicas == 2
    assert cfg.observability.log_level == "debug"
    assert cfg.discovery.mdns_enabled is False
    assert cfg.discovery.interfaces == ("eth0", "wlan0")
    assert cfg.bus.local_load_threshold == 0.5
    assert cfg.ui.port == 7870
    assert cfg.workers.echo is True
    assert load_config().transport.port == 7081  # the file alone


def test_env_override_path_and_log_dir(tmp_path: Path) -> None:
    cfg = load_config(env={**os.environ, "HEARTHNET_OBSERVABILITY_LOG_DIR": str(tmp_path / "logs")})
    assert cfg.observability.log_dir == cfg.paths.log_dir == tmp_path / "logs"


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("HEARTHNET_TRANSPORT_PORT", "abc", "transport.port"),
        ("HEARTHNET_TRANSPORT_PROT", "7081", "transport.prot"),
        ("HEARTHNET_CHAT_ENABLED", "maybe", "chat.enabled"),
        ("HEARTHNET_LLM_BACKENDS", "x", "llm.backends"),
    ],
)
def test_bad_env_override(var: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env={**os.environ, var: value})
    assert needle in err.value.message and value in err.value.message


def test_env_var_substitution(tmp_path: Path) -> None:
    _write(
        _config_file(tmp_path),
        '[node]\ndisplay_name = "${WHO} node"\n'
        '[[llm.backends]]\nname = "openai"\nurl = "http://${LLM_HOST}:1234"\nmodels = ["${M}"]\n',
    )
    cfg = load_config(env={**os.environ, "WHO": "Anna", "LLM_HOST": "10.1.2.3", "M": "qwen"})
    assert cfg.node.display_name == "Anna node"
    assert cfg.llm.backends[0].url == "http://10.1.2.3:1234"
    assert cfg.llm.backends[0].models == ("qwen",)


def test_env_var_substitution_unset_names_field(tmp_path: Path) -> None:
    _write(_config_file(tmp_path), '[[llm.backends]]\nname = "openai"\nurl = "http://${NOPE_HOST}:1"\n')
    with pytest.raises(ConfigError) as err:
        load_config()
    assert err.value.code == "invalid_field"
    assert "llm.backends[0].url" in err.value.message and "NOPE_HOST" in err.value.message


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("toml", "field", "value"),
    [
        ("[transport]\nport = 70800\n", "transport.port", "70800"),
        ("[discovery]\nudp_port = 0\n", "discovery.udp_port", "0"),
        ("[transport]\nport = 42424\n", "discovery.udp_port", "42424"),
        ('[observability]\nlog_level = "loud"\n', "observability.log_level", '"loud"'),
        ('[node]\nprofile = "castle"\n', "node.profile", '"castle"'),
        ("[bus]\nlocal_load_threshold = 1.5\n", "bus.local_load_threshold", "1.5"),
        ("[bus]\nlocal_load_threshold = 0\n", "bus.local_load_threshold", "0.0"),
        ("[bus]\nstream_stall_seconds = 0\n", "bus.stream_stall_seconds", "0.0"),
        ("[workers]\nllm_replicas = 17\n", "workers.llm_replicas", "17"),
        ("[workers]\nllm_replicas = 0\n", "workers.llm_replicas", "0"),
        ('[[llm.backends]]\nname = "hf_api"\n', "llm.backends[0].name", '"hf_api"'),
        ('[[llm.backends]]\nname = "llama_cpp"\n', "llm.backends[0].model_path", "llama_cpp"),
        ('[[llm.backends]]\nname = "ollama"\n', "llm.backends[0].url", "ollama"),
        ('[transport]\nport = "7080"\n', "transport.port", '"7080"'),
        ("[chat]\nenabled = 1\n", "chat.enabled", "1"),
        ('[bogus]\nx = 1\n', "bogus", "bogus"),
        ("[transport]\nprot = 1\n", "transport.prot", "1"),
        ('[[llm.backends]]\nname = "openai"\nurl = "http://x"\ntemperature = 1\n', "llm.backends[0].temperature", "1"),
    ],
)
def test_invalid_field_message_names_field_and_value(tmp_path: Path, toml: str, field: str, value: str) -> None:
    _write(_config_file(tmp_path), toml)
    with pytest.raises(ConfigError) as err:
        load_config()
    assert err.value.code == "invalid_field"
    assert field in err.value.message
    assert value in err.value.message


def test_port_message_exact(tmp_path: Path) -> None:
    _write(_config_file(tmp_path), "[transport]\nport = 70800\n")
    with pytest.raises(ConfigError) as err:
        load_config()
    assert err.value.message == "transport.port: 70800 is not a port (1-65535)"
    assert err.value.details["field"] == "transport.port"


def test_validate_reports_every_problem() -> None:
    base = default_config()
    cfg = dataclasses.replace(
        base,
        transport=dataclasses.replace(base.transport, port=0),
        observability=dataclasses.replace(base.observability, log_level="loud"),
    )
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert len(err.value.details["problems"]) == 2


def test_invalid_toml(tmp_path: Path) -> None:
    _write(_config_file(tmp_path), "[transport]\nport = = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config()
    assert err.value.code == "invalid_toml"
    assert "line 2" in err.value.message


# --------------------------------------------------------------------------- backends


def test_lmstudio_is_an_openai_alias(tmp_path: Path) -> None:
    _write(_config_file(tmp_path), '[[llm.backends]]\nname = "lmstudio"\nurl = "http://192.168.188.25:1234"\n')
    assert load_config().llm.backends[0].name == "openai"


def test_backend_snippet_is_valid_config(tmp_path: Path) -> None:
    _write(_config_file(tmp_path), LLM_BACKEND_SNIPPET)
    backends = load_config().llm.backends
    assert [b.name for b in backends] == ["llama_cpp", "openai"]
    assert backends[0].model_path and backends[1].url


def test_saved_default_file_carries_commented_snippet(tmp_path: Path) -> None:
    text = save_config(default_config()).read_text()
    assert '# name = "llama_cpp"' in text
    # Uncommenting the example yields a working config.
    uncommented = text.replace("# [[llm.backends]]", "[[llm.backends]]")
    for key in ("name", "model_path", "ctx", "max_concurrent", "url", "model", "api_key_env"):
        uncommented = uncommented.replace(f"# {key} =", f"{key} =")
    _write(_config_file(tmp_path), uncommented)
    assert len(load_config().llm.backends) == 2


# --------------------------------------------------------------------------- paths & helpers


def test_relative_path_is_relative_to_config_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "node1" / "config.toml", '[file]\nblobs_dir = "blobs"\n')
    assert load_config(path).file.blobs_dir == tmp_path / "node1" / "blobs"


def test_config_to_dict_is_json(tmp_path: Path) -> None:
    d = config_to_dict(default_config())
    json.dumps(d)
    assert d["transport"]["port"] == 7080
    assert "community_id" not in d["community"]  # None omitted
    assert set(d) == set(config_mod.SECTIONS)


def test_update_config_file_keeps_env_refs_and_skips_env_overrides(tmp_path: Path) -> None:
    path = _write(_config_file(tmp_path), '[[llm.backends]]\nname = "openai"\nurl = "http://${LLM_HOST}:1"\n')
    env = {**os.environ, "LLM_HOST": "h", "HEARTHNET_TRANSPORT_PORT": "7099"}
    update_config_file(path, {"node": {"display_name": "Anna"}}, env)
    raw = tomllib.loads(path.read_text())
    assert raw["llm"]["backends"][0]["url"] == "http://${LLM_HOST}:1"
    assert "transport" not in raw
    assert raw["node"]["display_name"] == "Anna"
    assert load_config(env=env).node.display_name == "Anna"


def test_update_config_file_refuses_invalid_result(tmp_path: Path) -> None:
    path = save_config(default_config())
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        update_config_file(path, {"transport": {"port": 70800}})
    assert path.read_bytes() == before


def test_update_config_file_keeps_the_owners_comments_and_layout(tmp_path: Path) -> None:
    path = save_config(default_config())
    text = path.read_text().replace('[node]\n', '[node]\n# the kitchen laptop, on the UPS\n', 1)
    text = text.replace("port = 7080", "port = 7080  # the router forwards this one")
    _write(path, text + "\n# my notes: ask Ben about the antenna\n")
    update_config_file(path, {"node": {"display_name": "Anna"}})
    after = path.read_text()
    expected = re.sub(r'(?m)^display_name = .*$', 'display_name = "Anna"', text, count=1)
    assert after == expected + "\n# my notes: ask Ben about the antenna\n"  # nothing else moved
    for kept in ("# the kitchen laptop, on the UPS\n", "port = 7080  # the router forwards this one\n",
                 "# my notes: ask Ben about the antenna\n"):
        assert kept in after
    assert load_config().node.display_name == "Anna"


def test_update_config_file_backends_replace_the_examples_and_bring_them_back(tmp_path: Path) -> None:
    path = save_config(default_config())
    _write(path, path.read_text() + "# mine\n")
    hint = config_mod._llm_hint()
    assert hint in path.read_text()
    backend = {"name": "llama_cpp", "model_path": str(tmp_path / "m.gguf")}
    update_config_file(path, {"llm": {"backends": [backend]}})
    text = path.read_text()
    assert hint not in text and "# mine\n" in text
    assert tomllib.loads(text)["llm"]["backends"] == [backend]
    assert "\n\n[embedding]" in text  # a blank line after the new [[llm.backends]] block
    update_config_file(path, {"llm": {"backends": []}})
    text = path.read_text()
    assert hint in text and "# mine\n" in text and "backends" not in tomllib.loads(text)["llm"]
    assert load_config().llm.backends == ()


def test_update_config_file_writes_whole_when_the_edit_would_not_read_back(tmp_path: Path, monkeypatch) -> None:
    path = save_config(default_config())
    _write(path, path.read_text() + "# mine\n")
    monkeypatch.setattr(config_mod, "_edit_toml", lambda text, updates: '[node]\ndisplay_name = "wrong"\n')
    update_config_file(path, {"node": {"display_name": "Anna"}})
    text = path.read_text()
    assert text.startswith(config_mod.CONFIG_HEADER) and "# mine" not in text
    assert load_config().node.display_name == "Anna"


def test_config_is_frozen() -> None:
    cfg = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.transport.port = 1  # type: ignore[misc]
    assert isinstance(cfg, Config)


# --------------------------------------------------------------------------- [embedding]


def test_embedding_defaults_to_the_in_package_minilm() -> None:
    from hearthnet.config import embedding_model

    emb = default_config().embedding
    assert (emb.enabled, emb.backend, emb.model, emb.batch_size) == (True, "minilm", "", 32)
    assert embedding_model(emb) == "all-MiniLM-L6-v2"


def test_embedding_openai_from_file_and_env(tmp_path: Path) -> None:
    from hearthnet.config import embedding_model

    path = _write(_config_file(tmp_path), '[embedding]\nbackend = "openai"\nurl = "http://127.0.0.1:11434/v1"\n'
                                          'model = "bge-m3"\nwindow_tokens = 8192\n')
    cfg = load_config(path, env={"HEARTHNET_EMBEDDING_BATCH_SIZE": "8", "HEARTHNET_EMBEDDING_ENABLED": "no"})
    assert (cfg.embedding.url, cfg.embedding.batch_size, cfg.embedding.enabled) == ("http://127.0.0.1:11434/v1", 8, False)
    assert embedding_model(cfg.embedding) == "bge-m3"


def test_an_old_init_file_still_loads() -> None:
    """`init` used to write model = "BAAI/bge-small-en-v1.5", device = "auto"."""
    from hearthnet.config import EmbeddingConfig, embedding_model

    old = EmbeddingConfig(model="BAAI/bge-small-en-v1.5", device="auto")
    validate(dataclasses.replace(default_config(), embedding=old))
    assert embedding_model(old) == "all-MiniLM-L6-v2"


@pytest.mark.parametrize("fields, needle", [
    ({"backend": "torch"}, "embedding.backend"),
    ({"model": "bge-m3"}, "minilm backend serves only all-MiniLM-L6-v2"),
    ({"backend": "openai", "model": "m"}, "embedding.url"),
    ({"backend": "openai", "url": "http://h:1/v1"}, "needs the server's model name"),
    ({"batch_size": 0}, "embedding.batch_size"),
    ({"window_tokens": -1}, "embedding.window_tokens"),
])
def test_embedding_config_problems(fields, needle) -> None:
    from hearthnet.config import EmbeddingConfig

    cfg = dataclasses.replace(default_config(), embedding=EmbeddingConfig(**fields))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert needle in err.value.message
