"""`hearthnet erase` without the CLI: stop the node, then delete its local state in the
seed's order (M12 §3.10).

    1. stop the running node: SIGTERM `hearthnet run` (or supervisord), wait up to 15 s,
       then SIGKILL whatever of that process tree is left
    2. <DATA>/communities/ (every community: events, manifests, snapshots) and <DATA>/peers.json
       (+ its .lock)
    3. <DATA>/blobs/                unless keep_blobs
    4. <CACHE>/embeddings/
    5. <LOG>                        unless keep_logs
    6. <DATA>/keys/ and <DATA>/tls/ (server.key is the device key as PKCS#8) unless keep_keys
    7. config.toml: deleted; with keep_keys only the community settings (community_id,
       name) are removed, so `hearthnet init` founds a new community with the same node id

Paths come from config.toml, so a bad value could point a step anywhere. Every path to
be deleted must lie strictly inside one of the node's own directories (the XDG data,
cache, state and config dirs named `hearthnet`); otherwise the whole erase is refused
before anything is touched. A symlink is removed as a link, never followed.

`plan_erase` only reads; `erase_node` asks (via `confirm`) before it changes anything.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import psutil

from hearthnet.config import Config, update_config_file
from hearthnet.errors import EXIT_ERROR, EXIT_OK, HearthNetError, UserAbort
from hearthnet.paths import APP

STOP_WAIT_SECONDS = 15.0
KILL_WAIT_SECONDS = 5.0
PIDFILE = "supervisord.pid"

Confirm = Callable[[str], bool]
OnEvent = Callable[[str, dict[str, Any]], None]


class UnsafeErase(HearthNetError):
    """A path to delete lies outside the node's own directories; nothing was removed."""

    code = "unsafe_path"


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Target:
    step: str  # communities, peers, blobs, embeddings, logs, keys, tls
    path: Path
    setting: str  # where the path comes from, for messages
    keep_flag: str | None = None  # the option that keeps it
    keep: bool = False


@dataclass
class ErasePlan:
    cfg: Config
    targets: list[Target]
    config_file: Path
    keep_keys: bool
    roots: list[Path]

    def existing(self) -> list[Target]:
        return [t for t in self.targets if not t.keep and _exists(t.path)]

    def sizes(self) -> dict[Path, int]:
        return {t.path: disk_usage(t.path) for t in self.existing()}

    @property
    def nothing_to_do(self) -> bool:
        return not self.existing() and not self.config_file.exists()


def node_roots(cfg: Config) -> list[Path]:
    """The node's own directories: nothing outside them is ever deleted (config.toml
    itself excepted, which may live wherever --config says)."""
    state = Path(platformdirs.user_state_dir(APP))
    roots = [cfg.paths.data_dir, cfg.paths.cache_dir, state, cfg.paths.config_dir]
    out = []
    for root in roots:
        real = Path(os.path.realpath(root))
        if real in (Path("/"), Path(os.path.realpath(Path.home()))):
            continue  # cannot happen with platformdirs (…/hearthnet), but never trust it
        out.append(real)
    return out


def plan_erase(cfg: Config, *, keep_keys: bool = False, keep_blobs: bool = False,
               keep_logs: bool = False) -> ErasePlan:
    data = cfg.paths.data_dir
    targets = [Target("communities", cfg.paths.communities_dir, "<DATA>/communities")]
    state_dir = cfg.community.state_dir
    if state_dir is not None and not _is_within(state_dir, cfg.paths.communities_dir):
        targets.append(Target("communities", state_dir, "community.state_dir"))
    targets += [
        Target("peers", data / "peers.json", "<DATA>/peers.json"),
        Target("peers", data / "peers.json.lock", "<DATA>/peers.json.lock"),
        Target("blobs", cfg.file.blobs_dir, "file.blobs_dir", "--keep-blobs", keep_blobs),
        Target("embeddings", cfg.rag.corpora_dir, "rag.corpora_dir"),
        Target("logs", cfg.paths.log_dir, "observability.log_dir", "--keep-logs", keep_logs),
        Target("keys", cfg.identity.keys_dir, "identity.keys_dir", "--keep-keys", keep_keys),
        Target("tls", data / "tls", "<DATA>/tls", "--keep-keys", keep_keys),
    ]
    plan = ErasePlan(cfg, targets, cfg.source or cfg.paths.config_file, keep_keys, node_roots(cfg))
    check_safe(plan)
    return plan


def check_safe(plan: ErasePlan) -> None:
    """Refuse (before anything is removed) a plan that would delete outside the node's
    directories, delete one of those directories as a whole, or delete something that
    holds a path the user asked to keep."""
    problems = []
    for t in plan.targets:
        if t.keep:
            continue
        if not any(_strictly_inside(t.path, root) for root in plan.roots):
            keep = f", or pass {t.keep_flag}" if t.keep_flag else ""
            problems.append(f"{t.setting} = {t.path} is outside this node's directories "
                            f"({', '.join(map(str, plan.roots))}); delete it yourself{keep}")
    for kept in (t for t in plan.targets if t.keep):
        for gone in (t for t in plan.targets if not t.keep):
            if _is_within(kept.path, gone.path):
                problems.append(f"{kept.setting} = {kept.path} ({kept.keep_flag}) lies inside "
                                f"{gone.setting} = {gone.path}, which would be erased")
    if problems:
        raise UnsafeErase(message="refusing to erase; nothing was removed:\n  " + "\n  ".join(problems),
                          hint="point the setting back inside the node's directories in config.toml")


def _real_parent(path: Path) -> Path:
    """The path with its parent resolved but not its last part (a symlink stays a link)."""
    path = Path(os.path.abspath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _strictly_inside(path: Path, root: Path) -> bool:
    p = _real_parent(path)
    return p != root and root in p.parents


def _is_within(path: Path, other: Path) -> bool:
    p, o = _real_parent(path), _real_parent(other)
    return p == o or o in p.parents


def _exists(path: Path) -> bool:
    return path.is_symlink() or path.exists()


def disk_usage(path: Path) -> int:
    """Bytes used by the files under `path` (symlinks counted as links, not followed)."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return st.st_size
    total = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # vanished while we counted
    return total


# --------------------------------------------------------------------------- stop


@dataclass
class StopResult:
    running: bool
    pid: int | None = None  # supervisord
    signalled: str | None = None  # "hearthnet run" or "supervisord"
    signalled_pid: int | None = None
    seconds: float = 0.0
    killed: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"running": self.running, "supervisord_pid": self.pid, "signalled": self.signalled,
                "signalled_pid": self.signalled_pid, "seconds": round(self.seconds, 2),
                "killed": list(self.killed)}


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def is_our_supervisord(p: psutil.Process, run_dir: Path) -> bool:
    """supervisord started by `hearthnet run` for THIS node: its -c names our run dir
    (a stale pid file whose pid was reused by another process is ignored)."""
    args = _cmdline(p)
    text = " ".join(args)
    return "supervisord" in text and str(run_dir / "supervisord.conf") in args


def is_hearthnet_run(p: psutil.Process) -> bool:
    args = _cmdline(p)
    return "run" in args and any(os.path.basename(a) == "hearthnet" for a in args)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _family(p: psutil.Process) -> list[psutil.Process]:
    try:
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return [p]


def stop_node(run_dir: Path, *, timeout: float = STOP_WAIT_SECONDS) -> StopResult:
    """Stop the node whose supervisord pid is in `<run_dir>/supervisord.pid`: SIGTERM its
    parent `hearthnet run` (which stops the tree and removes the token) if it is one,
    else supervisord; wait up to `timeout` s; then SIGKILL what is left of that tree."""
    try:
        pid = int((run_dir / PIDFILE).read_text().strip())
        sup = psutil.Process(pid)
    except (OSError, ValueError, psutil.Error):
        return StopResult(running=False)
    if not _alive(sup) or not is_our_supervisord(sup, run_dir):
        return StopResult(running=False)
    try:
        parent = sup.parent()
    except psutil.Error:
        parent = None
    target, name = (parent, "hearthnet run") if parent is not None and is_hearthnet_run(parent) else (sup, "supervisord")
    known = {p.pid: p for p in _family(target)}
    t0 = time.monotonic()
    try:
        target.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        pass  # stopped on its own meanwhile; the tree is still checked below
    except psutil.AccessDenied:
        raise HearthNetError("unauthorized", f"cannot stop the node ({name} PID {target.pid}): "
                                             "permission denied", hint="run erase as the user who runs the node") from None
    alive = _wait_gone(known, t0 + timeout)
    killed = []
    for p in alive:
        try:
            p.kill()
            killed.append(p.pid)
        except psutil.NoSuchProcess:
            continue
    left = _wait_gone({p.pid: p for p in alive}, time.monotonic() + KILL_WAIT_SECONDS)
    if left:
        raise HearthNetError("internal_error", "the node did not stop (PIDs "
                             f"{', '.join(str(p.pid) for p in left)} survive SIGKILL); nothing was erased")
    return StopResult(True, pid, name, target.pid, time.monotonic() - t0, sorted(killed))


def _wait_gone(known: dict[int, psutil.Process], deadline: float) -> list[psutil.Process]:
    """Poll until every process of the tree is gone (zombies count as gone: their parent
    reaps them), following children that appear meanwhile. Returns those still alive."""
    while True:
        alive = [p for p in known.values() if _alive(p)]
        for p in alive:
            for child in _family(p)[1:]:
                known.setdefault(child.pid, child)
        alive = [p for p in known.values() if _alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


# --------------------------------------------------------------------------- erase


@dataclass
class StepResult:
    step: str
    path: Path
    status: str  # removed | kept | absent | failed
    bytes: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "path": str(self.path), "status": self.status,
                "bytes": self.bytes, "error": self.error}


@dataclass
class EraseResult:
    stop: StopResult
    steps: list[StepResult]
    config_file: Path
    config_status: str  # deleted | updated | absent | failed
    config_error: str | None = None
    leftovers: list[Path] = field(default_factory=list)
    erased: bool = True

    @property
    def bytes_removed(self) -> int:
        return sum(s.bytes for s in self.steps if s.status == "removed")

    @property
    def exit_code(self) -> int:
        failed = self.config_status == "failed" or any(s.status == "failed" for s in self.steps)
        return EXIT_ERROR if failed else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "erased": self.erased, "stopped": self.stop.to_dict(),
            "steps": [s.to_dict() for s in self.steps], "bytes_removed": self.bytes_removed,
            "config": {"path": str(self.config_file), "status": self.config_status,
                       "error": self.config_error},
            "leftovers": [str(p) for p in self.leftovers],
        }


def questions(plan: ErasePlan) -> list[str]:
    key = ("Your device key is kept (--keep-keys): `hearthnet init` later gives a new community "
           "with the same node id. Erase every community, event and message on this device?"
           if plan.keep_keys else
           "Your device key is deleted too: this device gets a NEW identity and cannot rejoin as "
           "itself. Continue?")
    return [
        "Erase this node's local data listed above? This cannot be undone.",
        key,
        "Last question: erase now?",
    ]


def erase_node(plan: ErasePlan, *, confirm: Confirm | None, on_event: OnEvent | None = None,
               stop_timeout: float = STOP_WAIT_SECONDS) -> EraseResult:
    """Ask three times (`confirm` None = --yes), stop the node, delete in order.

    Ctrl-C, end of input or any "no" raises UserAbort with nothing stopped or removed."""
    emit = on_event or (lambda kind, data: None)
    if plan.nothing_to_do:  # no keys, no community, no config: no node to stop either
        steps = [StepResult(t.step, t.path, "kept" if t.keep else "absent") for t in plan.targets]
        return EraseResult(StopResult(False), steps, plan.config_file, "absent", erased=False)
    if confirm is not None:
        try:
            for q in questions(plan):
                if not confirm(q):
                    raise UserAbort(message="erase cancelled; nothing was removed")
        except (KeyboardInterrupt, EOFError):
            raise UserAbort(message="erase cancelled; nothing was removed") from None
    emit("stopping", {})
    stop = stop_node(plan.cfg.paths.run_dir, timeout=stop_timeout)
    emit("stopped", stop.to_dict())
    steps = []
    for t in plan.targets:
        steps.append(_erase_target(t))
        emit("step", steps[-1].to_dict())
    config_status, config_error = _erase_config(plan)
    return EraseResult(stop, steps, plan.config_file, config_status, config_error, _leftovers(plan))


def _erase_target(t: Target) -> StepResult:
    if t.keep:  # not measured either: a kept path may lie anywhere (it is not checked)
        return StepResult(t.step, t.path, "kept")
    if not _exists(t.path):
        return StepResult(t.step, t.path, "absent")
    size = disk_usage(t.path)
    try:
        remove_path(t.path)
    except OSError as exc:
        return StepResult(t.step, t.path, "failed", 0, f"{exc.strerror or exc}")
    return StepResult(t.step, t.path, "removed", size)


def remove_path(path: Path) -> None:
    """A symlink or file is unlinked; a directory is removed with everything in it
    (shutil.rmtree never follows symlinks inside it)."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _erase_config(plan: ErasePlan) -> tuple[str, str | None]:
    """Delete config.toml; with keep_keys drop only [community] community_id and name."""
    path = plan.config_file
    if not path.exists():
        return "absent", None
    try:
        if plan.keep_keys:
            update_config_file(path, {"community": {"community_id": None, "name": None}})
            return "updated", None
        path.unlink()
        return "deleted", None
    except OSError as exc:
        return "failed", f"{path}: {exc.strerror or exc}"
    except HearthNetError as exc:
        return "failed", f"{path}: {exc.message}"


def _leftovers(plan: ErasePlan) -> list[Path]:
    """Whatever else remains in the node's directories (not kept on purpose): erase
    deletes only what the seed lists, and says what it did not touch."""
    kept = {_real_parent(t.path) for t in plan.targets if t.keep} | {_real_parent(plan.config_file)}
    out = []
    for root in plan.roots:
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            if _real_parent(entry) not in kept:
                out.append(entry)
    return out
