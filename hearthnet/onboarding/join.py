"""Redeeming an invite (spec core-observability-cli-onboarding §6.4): `hearthnet invite
redeem` and `hearthnet init --join`, on a device that has its key but no community yet
(so its node is not running and this process may write the event log).

1. decode the invite (text, a file holding it, or a PNG of its QR code) and verify the
   inviter's signature; refuse if this node already belongs to a community
   (`other_community`; the same community is a no-op), if the invite is for another
   node (`invitee_mismatch`) or expired (`invite_expired`);
2. reach a bootstrap endpoint: its signed node manifest must be the inviter's, and its
   certificate is pinned from it (`bootstrap_unreachable` when none answers);
3. fetch `GET /community/manifest` (anonymous) and verify it: signature, and root key =
   community id = the invite's (`community_manifest_invalid`);
4. show the preview (community, inviter, level) and ask; nothing is written before this;
5. pull the whole event log over the signed sync routes (`/sync/v1/ids`, `/sync/v1/pull`)
   into `<DATA>/communities/<id>/events.sqlite`, verifying every event;
6. get our admission from the inviter's node (`POST /sync/v1/admit`: it signs only while
   the invite is unexpired on its own clock, `invite_expired` otherwise), append our own
   `community.member.joined` (the invite event found in the synced log, the admission)
   and push it to the bootstrap node (`POST /sync/v1/events`); `sync_failed` otherwise;
7. write the community manifest (re-fetched: it now lists us), pin the inviter, seed the
   peer cache, and last set community_id in config.toml: until that line is written the
   node is not a member as far as `hearthnet run` is concerned, and running the same
   command again resumes (the pull skips what we have, our joined event is re-sent).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from hearthnet.errors import HearthNetError, IdentityError, UserAbort
from hearthnet.identity.keys import KeyPair, short_node_id
from hearthnet.identity.manifest import rfc3339, utcnow
from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import ID_PREFIX, INVITE_PREFIX, InviteBlob, check_invite, decode_invite

if TYPE_CHECKING:
    from hearthnet.cli.render import Output
    from hearthnet.config import Config
    from hearthnet.ledger.store import EventLog
    from hearthnet.node_init import Prompter
    from hearthnet.transport.client import PeerClient

MAX_INVITE_FILE_BYTES = 64 * 1024
JOINED = "community.member.joined"
INVITED = "community.member.invited"


@dataclass
class JoinResult:
    changed: bool
    node_id: str
    community_id: str
    community_name: str
    level: str
    inviter_node_id: str
    inviter_display_name: str
    bootstrap: str
    events_pulled: int
    events_rejected: int
    joined_event_id: str | None
    member_count: int
    manifest_path: Path | None
    config_path: Path | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed, "node_id": self.node_id, "node_id_short": short_node_id(self.node_id),
            "community_id": self.community_id, "community_id_short": short_node_id(self.community_id),
            "community_name": self.community_name, "level": self.level,
            "inviter_node_id": self.inviter_node_id, "inviter_display_name": self.inviter_display_name,
            "bootstrap": self.bootstrap, "events_pulled": self.events_pulled,
            "events_rejected": self.events_rejected, "joined_event_id": self.joined_event_id,
            "member_count": self.member_count,
            "manifest_path": str(self.manifest_path) if self.manifest_path else None,
            "config_path": str(self.config_path) if self.config_path else None,
            "message": self.message,
        }

    def human(self, out: "Output") -> None:
        out.echo(self.message)
        if self.changed:
            out.echo("Start the node with `hearthnet run`.")


@dataclass
class _Contact:
    """What the bootstrap node told us before anything is written."""

    host: str
    port: int
    node_manifest: dict[str, Any]
    fingerprint: str
    community_manifest: dict[str, Any]

    @property
    def endpoint(self) -> dict[str, Any]:
        return {"transport": "https", "host": self.host, "port": self.port}

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# --------------------------------------------------------------------------- entry point


def load_invite_text(text_or_path: str) -> str:
    """The invite text itself, the contents of a text file holding it, or the text of
    the QR code in a PNG."""
    from hearthnet.onboarding.qr import is_png, read_qr_png

    arg = text_or_path.strip()
    if arg.lower().startswith((INVITE_PREFIX, ID_PREFIX, "ed25519:")):
        return arg
    path = Path(arg).expanduser()
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a pasted text too long to be a file name
        is_file = False
    if not is_file:
        return arg
    if is_png(path):
        return read_qr_png(path)
    try:
        raw = path.read_bytes()[:MAX_INVITE_FILE_BYTES + 1]
    except OSError as exc:
        raise OnboardingError("invite_invalid", f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_INVITE_FILE_BYTES:
        raise OnboardingError("invite_invalid", f"{path} is too large to hold an invite")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise OnboardingError("invite_invalid", f"{path} is neither invite text nor a PNG of its QR code") from None


def redeem_invite(
    cfg: "Config",
    kp: KeyPair,
    text_or_path: str,
    *,
    prompt: "Prompter",
    display_name: str | None = None,
    profile: str | None = None,
    before_write: Callable[[], None] | None = None,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> JoinResult:
    """Join the invite's community (see the module docstring). `prompt.confirm` is asked
    once, after the preview; `before_write` runs after that and before the first write
    (init saves a new device key there)."""
    blob = decode_invite(load_invite_text(text_or_path))
    done = _already_joined(cfg, kp, blob)
    if done is not None:
        return done
    check_invite(blob, kp.node_id_full, now)
    return asyncio.run(_redeem(cfg, kp, blob, prompt, display_name, profile, before_write, env, now))


def _already_joined(cfg: "Config", kp: KeyPair, blob: InviteBlob) -> JoinResult | None:
    current = cfg.community.community_id
    if current is None:
        return None
    if current != blob.community_id:
        raise OnboardingError(
            "other_community",
            f"this node already belongs to community {_named(cfg.community.name, current)}; "
            f"the invite is for {_named(blob.community_name, blob.community_id)}",
            hint="one node is in one community; use another device (or `hearthnet erase` first, "
                 "which deletes this node's data)")
    path = cfg.community_manifest_path
    if path is None or not path.exists():
        return None  # a join that stopped before its manifest was written: resume it
    from hearthnet.identity.manifest import level_of, read_community_manifest

    manifest = read_community_manifest(path)
    level = level_of(manifest, kp.node_id_full)
    return JoinResult(
        changed=False, node_id=kp.node_id_full, community_id=current, community_name=str(manifest["name"]),
        level=level if level != "unknown" else blob.initial_level, inviter_node_id=blob.inviter_node_id,
        inviter_display_name="", bootstrap="", events_pulled=0, events_rejected=0, joined_event_id=None,
        member_count=len(manifest.get("members") or []), manifest_path=path, config_path=cfg.source,
        message=f"already a member of {manifest['name']!r} ({short_node_id(current)}); nothing to do")


# --------------------------------------------------------------------------- the network part


async def _redeem(cfg: "Config", kp: KeyPair, blob: InviteBlob, prompt: "Prompter",
                  display_name: str | None, profile: str | None,
                  before_write: Callable[[], None] | None, env: Mapping[str, str] | None,
                  now: datetime | None) -> JoinResult:
    from hearthnet.transport.client import PeerClient

    pins = _memory_pins(cfg)
    async with PeerClient(kp, blob.community_id, pins) as client:
        contact = await _reach(client, blob)
        _confirm(prompt, blob, contact)
        if before_write is not None:
            before_write()
        log = _open_log(cfg, blob.community_id)
        try:
            pulled, rejected = await _pull(client, blob, contact, log)
            joined = await _join_event(cfg, kp, log, blob, display_name, profile, now, client, contact)
            await _push(client, blob, contact, joined)
            manifest = await _final_manifest(client, kp, blob, contact, log)
            level = log.view.level_of(kp.node_id_full) or blob.initial_level
        finally:
            log.close()
    _persist(cfg, kp, blob, contact, manifest, display_name, profile, env)
    inviter = str(contact.node_manifest.get("display_name") or "")
    return JoinResult(
        changed=True, node_id=kp.node_id_full, community_id=blob.community_id,
        community_name=str(manifest["name"]), level=level, inviter_node_id=blob.inviter_node_id,
        inviter_display_name=inviter, bootstrap=contact.address, events_pulled=pulled,
        events_rejected=rejected, joined_event_id=joined["event_id"],
        member_count=len(manifest.get("members") or []), manifest_path=_state_dir(cfg, blob.community_id) / "manifest.json",
        config_path=cfg.source or cfg.paths.config_file,
        message=(f"joined {manifest['name']!r} ({short_node_id(blob.community_id)}) as {level}, invited by "
                 f"{inviter or short_node_id(blob.inviter_node_id)}; {pulled} event(s) fetched from {contact.address}"))


def _memory_pins(cfg: "Config") -> Any:
    """The node's pins (they still apply), with new ones held in memory until the join
    succeeds: an aborted or failed join leaves known_peers.json as it was."""
    from hearthnet.transport.pinning import PinStore

    class MemoryPins(PinStore):
        def _save(self) -> None:
            return None  # _persist records the inviter's pin in the real file at the end

    return MemoryPins(cfg.paths.tls_dir / "known_peers.json")


async def _reach(client: "PeerClient", blob: InviteBlob) -> _Contact:
    """The first bootstrap endpoint that serves the inviter's verified manifest, and the
    community manifest it serves."""
    failures = []
    for host, port in blob.endpoints():
        try:
            manifest, fp = await client.get_manifest(host, port, node_id=blob.inviter_node_id)
        except (HearthNetError, IdentityError) as exc:
            failures.append(f"{host}:{port}: {exc.message}")
            continue
        if manifest.get("community_id") != blob.community_id:
            raise OnboardingError(
                "community_manifest_invalid",
                f"the inviter's node at {host}:{port} now belongs to community "
                f"{_short(manifest.get('community_id'))}, not the invite's {short_node_id(blob.community_id)}")
        contact = _Contact(host, port, manifest, fp, {})
        contact.community_manifest = await _community_manifest(client, blob, contact)
        return contact
    raise OnboardingError(
        "bootstrap_unreachable",
        "could not reach the inviter's node: " + "; ".join(failures),
        hint="make sure the inviter's node is running (`hearthnet run`) and on the same network, then try again")


async def _community_manifest(client: "PeerClient", blob: InviteBlob, contact: _Contact) -> dict[str, Any]:
    from hearthnet.identity.manifest import verify_community_manifest

    try:
        m = await client.get_public(blob.inviter_node_id, contact.endpoint, "/community/manifest")
    except HearthNetError as exc:
        if exc.code in ("partition", "timeout"):
            raise OnboardingError("bootstrap_unreachable", f"{contact.address}: {exc.message}") from None
        raise OnboardingError("community_manifest_invalid",
                              f"{contact.address} did not serve its community manifest: {exc.message}") from None
    try:
        verify_community_manifest(m)
    except HearthNetError as exc:
        raise OnboardingError("community_manifest_invalid",
                              f"the community manifest from {contact.address} does not verify: {exc.message}") from None
    if m["root_key"] != blob.community_id or m["community_id"] != blob.community_id:
        raise OnboardingError(
            "community_manifest_invalid",
            f"{contact.address} serves the manifest of community {_short(m.get('community_id'))}, "
            f"not the invite's {short_node_id(blob.community_id)}")
    return m


def _confirm(prompt: "Prompter", blob: InviteBlob, contact: _Contact) -> None:
    m = contact.community_manifest
    inviter = contact.node_manifest.get("display_name") or "(unnamed)"
    text = (f"Join community {m['name']!r} ({short_node_id(blob.community_id)})\n"
            f"  members     {len(m.get('members') or [])}\n"
            f"  invited by  {inviter} ({short_node_id(blob.inviter_node_id)}) at {contact.address}\n"
            f"  as          {blob.initial_level}\n"
            f"  valid until {blob.expires_at}\n"
            "Join?")
    try:
        yes = prompt.confirm(text, True)
    except (KeyboardInterrupt, EOFError):
        yes = False
    if not yes:
        raise UserAbort(message="join cancelled; nothing was changed")


def _state_dir(cfg: "Config", community_id: str) -> Path:
    from hearthnet.config import community_state_dir

    return cfg.community.state_dir or community_state_dir(cfg.paths, community_id)


def _open_log(cfg: "Config", community_id: str) -> "EventLog":
    from hearthnet.ledger.store import EventLog
    from hearthnet.paths import ensure_private_dir

    ensure_private_dir(cfg.paths.data_dir)
    return EventLog(_state_dir(cfg, community_id) / "events.sqlite", community_id)


def _sync_error(contact: _Contact, what: str, exc: HearthNetError) -> OnboardingError:
    hint = "run the same command again to retry; what was fetched is kept"
    if exc.code in ("unauthorized", "revoked"):
        hint = ("the inviter's node refused us: the invite may have been revoked or has expired "
                "there, or that node runs a HearthNet too old to let invitees sync")
    return OnboardingError("sync_failed", f"{what} {contact.address}: {exc.message}", hint=hint)


async def _pull(client: "PeerClient", blob: InviteBlob, contact: _Contact, log: "EventLog") -> tuple[int, int]:
    """Fetch every event we lack, in the bootstrap node's replay order, and store the
    ones that verify (the sync's one pull client, hearthnet.sync.pull_events). Returns
    (accepted, rejected). What an interrupted run stored is skipped when it resumes."""
    from hearthnet import validate
    from hearthnet.sync import pull_events
    from hearthnet.transport.signing import SYNC_IDS

    node, ep, cid = blob.inviter_node_id, contact.endpoint, blob.community_id

    async def store(events: list[dict[str, Any]]) -> tuple[int, int]:
        result = log.append_received(events)
        return result.accepted, result.rejected

    try:
        ids = validate.ids_reply(await client.post_signed(node, ep, "/sync/v1/ids", SYNC_IDS,
                                                          {"community_id": cid}))
        have = set(log.ids_since(0))
        counts = await pull_events(client, cid, node, ep, [i for i in ids if i not in have], store)
    except OnboardingError:
        raise
    except HearthNetError as exc:
        if exc.code in ("db_corrupt", "disk_full"):
            raise
        raise _sync_error(contact, "could not fetch the community's event log from", exc) from None
    return counts.accepted, counts.rejected


async def _join_event(cfg: "Config", kp: KeyPair, log: "EventLog", blob: InviteBlob, display_name: str | None,
                      profile: str | None, now: datetime | None, client: "PeerClient",
                      contact: _Contact) -> dict[str, Any]:
    """Our `community.member.joined` (an earlier attempt's, if it is in the log already),
    with the inviter's admission."""
    from hearthnet.ledger.errors import LedgerError

    mine = log.events(event_types=[JOINED], author=kp.node_id_full)
    if mine:
        return mine[0]
    at = rfc3339(now or utcnow())
    pending = [i for i in log.view.pending_invites(at) if i["invitee_node_id"] == kp.node_id_full]
    if not pending:
        ever = [ev for ev in log.events(event_types=[INVITED]) if ev["data"]["invitee_node_id"] == kp.node_id_full]
        if ever:
            raise OnboardingError("invite_expired", "the community's log holds this node's invite, but it has "
                                                    "expired or was used already",
                                  hint="ask the inviter for a new invite")
        raise OnboardingError("sync_failed", "the inviter's event log holds no invite for this node",
                              hint="the invite may have been made on another node; ask the inviter to "
                                   "create it again on the node it points to")
    exact = [i for i in pending if (i["expires_at"], i["initial_level"]) == (blob.expires_at, blob.initial_level)]
    invite = (exact or sorted(pending, key=lambda i: i["expires_at"]))[-1]
    data = {"invite_event_id": invite["event_id"],
            "node_manifest": _node_manifest(cfg, kp, blob.community_id, display_name, profile),
            "admission": await _admission(client, blob, contact, invite["event_id"])}
    try:
        return log.append_local(kp, JOINED, data)
    except LedgerError as exc:
        if exc.code in ("db_corrupt", "disk_full"):
            raise
        raise OnboardingError("sync_failed", f"the community's log does not accept this join: {exc.message}") from None


async def _admission(client: "PeerClient", blob: InviteBlob, contact: _Contact, invite_event_id: str) -> Any:
    """The inviter's node signs our admission (POST /sync/v1/admit), only while the
    invite is unexpired on ITS clock: our own clock decides nothing (views.py R3)."""
    from hearthnet.transport.signing import SYNC_ADMIT

    try:
        reply = await client.post_signed(blob.inviter_node_id, contact.endpoint, "/sync/v1/admit", SYNC_ADMIT,
                                         {"community_id": blob.community_id, "invite_event_id": invite_event_id})
    except HearthNetError as exc:
        if exc.code == "invite_expired":
            raise OnboardingError("invite_expired", f"the inviter's node says: {exc.message}",
                                  hint="ask the inviter for a new invite") from None
        raise _sync_error(contact, "could not get our admission from", exc) from None
    return reply.get("admission")


def _node_name_and_profile(cfg: "Config", display_name: str | None, profile: str | None) -> tuple[str, str]:
    from hearthnet.profile import default_display_name, detect_hardware, detect_profile

    name = display_name or cfg.node.display_name or default_display_name()
    prof = profile or cfg.node.profile or detect_profile(detect_hardware(cfg.paths.data_dir))
    return name, prof


def _node_manifest(cfg: "Config", kp: KeyPair, community_id: str, display_name: str | None,
                   profile: str | None) -> dict[str, Any]:
    """This node's manifest at join: identity, profile, hardware and where it will listen;
    no capabilities yet (the node is not running)."""
    from hearthnet.transport.endpoints import advertised_endpoints
    from hearthnet.identity.manifest import build_node_manifest
    from hearthnet.profile import detect_hardware

    name, prof = _node_name_and_profile(cfg, display_name, profile)
    return build_node_manifest(
        kp, display_name=name, community_id=community_id, profile=prof,
        endpoints=advertised_endpoints(cfg), hardware=detect_hardware(cfg.paths.data_dir),
        capabilities=[], uptime_seconds=0, load={"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0})


async def _push(client: "PeerClient", blob: InviteBlob, contact: _Contact, joined: dict[str, Any]) -> None:
    from hearthnet.transport.signing import SYNC_EVENTS

    try:
        reply = await client.post_signed(blob.inviter_node_id, contact.endpoint, "/sync/v1/events", SYNC_EVENTS,
                                         {"community_id": blob.community_id, "events": [joined]})
    except HearthNetError as exc:
        raise _sync_error(contact, "could not deliver our join to", exc) from None
    if reply.get("rejected"):
        reasons = ", ".join(str(r.get("reason")) for r in reply.get("rejected_reasons") or [] if isinstance(r, dict))
        raise OnboardingError("sync_failed", f"{contact.address} refused our join ({reasons or 'no reason given'})",
                              hint="ask the inviter for a new invite")


async def _final_manifest(client: "PeerClient", kp: KeyPair, blob: InviteBlob, contact: _Contact,
                          log: "EventLog") -> dict[str, Any]:
    """The manifest to keep: our own view's if we may sign it (an anchor), else the
    bootstrap node's, re-fetched now that it holds our join (so it lists us) and checked
    by our view (signed by an anchor we know, not older than the first one)."""
    log.view.offer_manifest(contact.community_manifest)
    try:
        fresh: dict[str, Any] | None = await _community_manifest(client, blob, contact)
    except OnboardingError:
        fresh = None  # keep the one verified before the join; the running node's sync refreshes it
    if fresh is not None:
        log.view.offer_manifest(fresh)
    manifest = log.view.manifest(kp)
    return manifest if manifest is not None else contact.community_manifest


def _persist(cfg: "Config", kp: KeyPair, blob: InviteBlob, contact: _Contact, manifest: dict[str, Any],
             display_name: str | None, profile: str | None, env: Mapping[str, str] | None) -> None:
    """Manifest, pin, peer cache, then config.toml (the commit point)."""
    from hearthnet.config import update_config_file
    from hearthnet.discovery.cache import PeerCache
    from hearthnet.identity.manifest import write_community_manifest
    from hearthnet.transport.pinning import PinStore

    write_community_manifest(manifest, _state_dir(cfg, blob.community_id) / "manifest.json")
    PinStore(cfg.paths.tls_dir / "known_peers.json").check(blob.inviter_node_id, contact.fingerprint)
    PeerCache.for_data_dir(cfg.paths.data_dir).record_verified(
        blob.inviter_node_id, contact.host, contact.port, contact.fingerprint, "manual")
    name, prof = _node_name_and_profile(cfg, display_name, profile)
    node: dict[str, Any] = {}
    if display_name or not cfg.node.display_name:
        node["display_name"] = name
    if profile or not cfg.node.profile:
        node["profile"] = prof
    for d in (cfg.paths.config_dir, cfg.paths.cache_dir, cfg.paths.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    update_config_file(cfg.source or cfg.paths.config_file,
                       {"node": node, "community": {"community_id": blob.community_id, "name": str(manifest["name"])}},
                       env)


def _named(name: str, community_id: str) -> str:
    short = short_node_id(community_id)
    return f"{name!r} ({short})" if name else short


def _short(node_id: Any) -> str:
    try:
        return short_node_id(str(node_id))
    except HearthNetError:
        return repr(node_id)
