"""`hearthnet init` without the CLI (spec core-observability-cli-onboarding §5, §6.2).

Two phases, so an abort can never leave half a node behind:
1. plan: read config and keys, ask every question, confirm; nothing is written;
2. apply: create directories, save a new key (never overwriting one), write the genesis
   community manifest, then record the node and community in config.toml.

Create or join: `--join TEXT` (or, interactively, an invite pasted where the name of the
new community is asked) joins an existing community instead of founding one; the join
itself is hearthnet.onboarding.join.redeem_invite, whose preview is the confirmation.

Re-running on an initialised node changes nothing and says so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from hearthnet.config import PROFILES, Config, community_state_dir, load_config, update_config_file
from hearthnet.errors import HearthNetError, IdentityError, UserAbort
from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair, short_node_id
from hearthnet.identity.manifest import (
    COMMUNITY_NAME_MAX,
    build_genesis_community_manifest,
    read_community_manifest,
    write_community_manifest,
)
from hearthnet.paths import ensure_private_dir
from hearthnet.profile import DISPLAY_NAME_MAX, default_display_name, detect_hardware, detect_profile

NODE_PROFILES = tuple(p for p in PROFILES if p)
PROMPT_ATTEMPTS = 3


class Prompter(Protocol):
    def ask(self, text: str, default: str) -> str: ...

    def confirm(self, text: str, default: bool) -> bool: ...


class DefaultsPrompter:
    """Answers every question with its default (non-interactive runs)."""

    def ask(self, text: str, default: str) -> str:
        return default

    def confirm(self, text: str, default: bool) -> bool:
        return default


@dataclass
class InitOptions:
    name: str | None
    profile: str | None
    interactive: bool
    config_path: Path | None
    community_name: str | None = None
    join: str | None = None  # invite text, or a file / QR PNG holding it


@dataclass
class InitResult:
    changed: bool
    node_id: str
    node_id_short: str
    display_name: str
    profile: str
    community_id: str
    community_name: str
    config_path: Path
    keys_dir: Path
    message: str
    joined: bool = False  # this run joined an existing community (vs founding one)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "changed": self.changed,
            "node_id": self.node_id,
            "node_id_short": self.node_id_short,
            "display_name": self.display_name,
            "profile": self.profile,
            "community_id": self.community_id,
            "community_id_short": short_node_id(self.community_id),
            "community_name": self.community_name,
            "config_path": str(self.config_path),
            "keys_dir": str(self.keys_dir),
            "message": self.message,
        }
        if self.joined:  # only a join adds this key (the founding document is pinned as it was)
            doc["joined"] = True
        return doc


@dataclass(frozen=True)
class _Plan:
    kp: KeyPair
    new_key: bool
    display_name: str
    profile: str
    community_name: str
    existing_manifest: dict[str, Any] | None  # our own community, found on disk
    join: str | None = None  # invite to redeem instead of founding a community


def init_node(opts: InitOptions, *, prompt: Prompter, env: Mapping[str, str] | None = None) -> InitResult:
    env = os.environ if env is None else env
    cfg = load_config(opts.config_path, env)
    asker = prompt if opts.interactive else DefaultsPrompter()
    if opts.join is not None and cfg.community.community_id is not None:
        # Already in a community: the redeem says whether that is the invite's (a no-op,
        # or the resumption of a join that stopped half-way) or another one (refused).
        return _join(cfg, _Plan(keys.load(cfg.identity.keys_dir), False, cfg.node.display_name,
                                cfg.node.profile, "", None, opts.join), asker, env)
    done = _already_initialised(cfg)
    if done is not None:
        return done
    try:
        plan = _plan(opts, cfg, asker)
    except (KeyboardInterrupt, EOFError):
        raise UserAbort(message="init cancelled; nothing was changed") from None
    if plan.join is not None:
        return _join(cfg, plan, asker, env)
    return _apply(cfg, plan, env)


# --------------------------------------------------------------------------- already done


def _already_initialised(cfg: Config) -> InitResult | None:
    cid = cfg.community.community_id
    manifest_path = cfg.community_manifest_path
    if cid is None or manifest_path is None or not manifest_path.exists():
        return None
    try:
        kp = keys.load(cfg.identity.keys_dir)
    except IdentityError as exc:
        if exc.code != "keys_missing":
            raise
        raise IdentityError(
            "keys_missing",
            f"this node belongs to community {short_node_id(cid)} but its device key is missing "
            f"from {cfg.identity.keys_dir}; restore the key from a backup, or run "
            "`hearthnet erase` and `hearthnet init` again (a new identity)",
        ) from None
    manifest = read_community_manifest(manifest_path)
    return _result(
        cfg, kp, cfg.node.display_name, cfg.node.profile, manifest,
        changed=False,
        message=f"already initialised: node {kp.node_id_short} in community "
        f"{manifest['name']!r}; nothing changed (edit {cfg.source} to rename)",
    )


# --------------------------------------------------------------------------- plan (no writes)


def _plan(opts: InitOptions, cfg: Config, prompt: Prompter) -> _Plan:
    kp, new_key = _plan_key(cfg)
    own = _own_manifest(cfg, kp) if opts.join is None else None
    display_name = _choose(
        "Display name for this node", opts.name, cfg.node.display_name or default_display_name(),
        _check_display_name, prompt, "--name",
    )
    detected = cfg.node.profile or detect_profile(detect_hardware(cfg.paths.data_dir))
    profile = _choose(
        f"Profile ({'/'.join(NODE_PROFILES)})", opts.profile, detected, _check_profile, prompt, "--profile"
    )
    if opts.join is not None:
        return _Plan(kp, new_key, display_name, profile, "", None, opts.join)
    if own is not None:
        community_name = own["name"]  # reuse our existing community, do not re-found it
    else:
        default_name = cfg.community.name or f"{display_name}'s neighbourhood"[:COMMUNITY_NAME_MAX]
        community_name, join = _community_or_invite(opts, default_name, prompt)
        if join is not None:
            return _Plan(kp, new_key, display_name, profile, "", None, join)
    if not prompt.confirm(
        f"Create node {display_name!r} ({profile}) in community {community_name!r}?", True
    ):
        raise UserAbort(message="init cancelled; nothing was changed")
    return _Plan(kp, new_key, display_name, profile, community_name, own)


def _community_or_invite(opts: InitOptions, default_name: str, prompt: Prompter) -> tuple[str, str | None]:
    """Create or join, in one question: the name of a new community, or an invite
    (its text, or the path of a file or QR PNG holding it) to join an existing one."""
    if opts.community_name is not None:
        return _choose("", opts.community_name, default_name, _check_community_name, prompt,
                       "--community-name"), None
    text = "Name of your new community (or paste an invite to join an existing one)"
    for _ in range(PROMPT_ATTEMPTS):
        answer = (prompt.ask(text, default_name) or default_name).strip()
        if looks_like_invite(answer):
            return "", answer
        if not _check_community_name(answer):
            return answer, None
    raise HearthNetError("usage", f"{text}: {answer!r} {_check_community_name(answer)}")


def looks_like_invite(answer: str) -> bool:
    """An invite text (either prefix) or an existing file that may hold one."""
    if answer.lower().startswith(("hearthnet://", "ed25519:")):
        return True
    try:
        return Path(answer).expanduser().is_file()
    except OSError:
        return False


def _plan_key(cfg: Config) -> tuple[KeyPair, bool]:
    # An existing key is this device's identity: load it (permissions checked), never replace it.
    if (cfg.identity.keys_dir / keys.PRIVATE_KEY_FILE).exists():
        return keys.load(cfg.identity.keys_dir), False
    cid = cfg.community.community_id
    if cid is not None:
        raise HearthNetError(
            "not_found",
            f"config.toml names community {short_node_id(cid)} but this device has no key and "
            f"no community manifest; restore them from a backup or remove community_id from {cfg.source}",
        )
    return keys.generate(), True


def _own_manifest(cfg: Config, kp: KeyPair) -> dict[str, Any] | None:
    """A community this key founded earlier whose config entry was lost."""
    cid = cfg.community.community_id
    if cid is not None and cid != kp.node_id_full:
        raise HearthNetError(
            "not_found",
            f"the manifest of community {short_node_id(cid)} is missing from {cfg.community.state_dir}; "
            "join again with `hearthnet invite redeem`, or remove community_id from config.toml",
        )
    path = community_state_dir(cfg.paths, kp.node_id_full) / "manifest.json"
    return read_community_manifest(path) if path.exists() else None


def _choose(
    text: str,
    given: str | None,
    default: str,
    check: Callable[[str], str | None],
    prompt: Prompter,
    option: str,
) -> str:
    """An option wins; otherwise ask (re-asking on a bad answer); else the default."""
    if given is not None:
        problem = check(given.strip())
        if problem:
            raise HearthNetError("usage", f"{option}: {given!r} {problem}")
        return given.strip()
    for _ in range(PROMPT_ATTEMPTS):
        answer = (prompt.ask(text, default) or default).strip()
        if not check(answer):
            return answer
    raise HearthNetError("usage", f"{text}: {answer!r} {check(answer)}")


def _check_display_name(value: str) -> str | None:
    return None if 1 <= len(value) <= DISPLAY_NAME_MAX else f"must be 1-{DISPLAY_NAME_MAX} characters"


def _check_community_name(value: str) -> str | None:
    return None if 1 <= len(value) <= COMMUNITY_NAME_MAX else f"must be 1-{COMMUNITY_NAME_MAX} characters"


def _check_profile(value: str) -> str | None:
    return None if value in NODE_PROFILES else f"is not one of {', '.join(NODE_PROFILES)}"


# --------------------------------------------------------------------------- apply (writes)


def _apply(cfg: Config, plan: _Plan, env: Mapping[str, str]) -> InitResult:
    paths = cfg.paths
    ensure_private_dir(paths.data_dir)
    for d in (paths.config_dir, paths.cache_dir, paths.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    kp = _save_key(cfg.identity.keys_dir, plan) if plan.new_key else plan.kp
    manifest = plan.existing_manifest
    if manifest is None or manifest["community_id"] != kp.node_id_full:
        manifest = build_genesis_community_manifest(kp, plan.community_name)
        state_dir = cfg.community.state_dir or community_state_dir(paths, manifest["community_id"])
        write_community_manifest(manifest, state_dir / "manifest.json")
        # After the manifest: if init dies in between, the ledger writes the genesis events
        # itself when it first opens the (empty) log of a community this key founded.
        _write_genesis_events(cfg, kp, plan, manifest, state_dir)
    update_config_file(
        _config_path(cfg),
        {
            "node": {"display_name": plan.display_name, "profile": plan.profile},
            "community": {"community_id": manifest["community_id"], "name": manifest["name"]},
        },
        env,
    )
    return _result(
        cfg, kp, plan.display_name, plan.profile, manifest,
        changed=True,
        message=f"created node {kp.node_id_short} in community {manifest['name']!r}",
    )


def _join(cfg: Config, plan: _Plan, prompt: Prompter, env: Mapping[str, str]) -> InitResult:
    """Join the invite's community (hearthnet.onboarding.join). A new key is saved only
    after the preview was confirmed, right before the first write."""
    from hearthnet.onboarding.errors import OnboardingError
    from hearthnet.onboarding.join import redeem_invite

    def before_write() -> None:
        ensure_private_dir(cfg.paths.data_dir)
        if plan.new_key:
            _save_key(cfg.identity.keys_dir, plan)

    try:
        joined = redeem_invite(cfg, plan.kp, plan.join or "", prompt=prompt,
                               display_name=plan.display_name or None, profile=plan.profile or None,
                               before_write=before_write, env=env)
    except OnboardingError as exc:
        if exc.code == "invitee_mismatch" and plan.new_key:
            raise OnboardingError(
                "invitee_mismatch",
                "this device has no key yet, so no invite can have been made for it",
                hint="run `hearthnet id` here, give the id it shows to a member of the community, "
                     "and run `hearthnet init --join` with the invite they create") from None
        raise
    final = load_config(cfg.source, env)
    return InitResult(
        changed=joined.changed, node_id=plan.kp.node_id_full, node_id_short=plan.kp.node_id_short,
        display_name=final.node.display_name, profile=final.node.profile,
        community_id=joined.community_id, community_name=joined.community_name,
        config_path=_config_path(cfg), keys_dir=cfg.identity.keys_dir, message=joined.message,
        joined=joined.changed)


def _write_genesis_events(cfg: Config, kp: KeyPair, plan: _Plan, manifest: Mapping[str, Any],
                          state_dir: Path) -> None:
    """events.sqlite with the 3 founding events (community.created, member.invited and
    member.joined for the founder), dated like the genesis manifest."""
    from hearthnet.identity.manifest import build_node_manifest, parse_rfc3339
    from hearthnet.ledger.store import EventLog

    hardware = detect_hardware(cfg.paths.data_dir)
    node_manifest = build_node_manifest(
        kp, display_name=plan.display_name, community_id=manifest["community_id"], profile=plan.profile,
        endpoints=[{"transport": "http", "host": cfg.transport.host, "port": cfg.transport.port}],
        hardware=hardware, capabilities=[], uptime_seconds=0,
        load={"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0})
    log = EventLog(state_dir / "events.sqlite", manifest["community_id"])
    try:
        if log.count() == 0:
            log.create_genesis(kp, manifest["name"], manifest["policy"], display_name=plan.display_name,
                               node_manifest=node_manifest, now=parse_rfc3339(manifest["created_at"]))
    finally:
        log.close()


def _config_path(cfg: Config) -> Path:
    # load_config always records its source; the fallback keeps the type honest.
    return cfg.source or cfg.paths.config_file


def _save_key(keys_dir: Path, plan: _Plan) -> KeyPair:
    try:
        keys.save(plan.kp, keys_dir)
        return plan.kp
    except IdentityError as exc:
        if exc.code != "keys_exist":
            raise
        # Another process created a key since we looked: that one is the identity.
        return keys.load(keys_dir)


def _result(
    cfg: Config, kp: KeyPair, display_name: str, profile: str, manifest: Mapping[str, Any],
    *, changed: bool, message: str,
) -> InitResult:
    return InitResult(
        changed=changed,
        node_id=kp.node_id_full,
        node_id_short=kp.node_id_short,
        display_name=display_name,
        profile=profile,
        community_id=manifest["community_id"],
        community_name=manifest["name"],
        config_path=_config_path(cfg),
        keys_dir=cfg.identity.keys_dir,
        message=message,
    )
