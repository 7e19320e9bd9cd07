"""hearthnet.erase: the plan, its safety guard, stopping the node, the order of deletion."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from hearthnet import erase
from hearthnet.config import Config, load_config, update_config_file
from hearthnet.errors import UserAbort
from hearthnet.node_init import DefaultsPrompter, InitOptions, init_node
from hearthnet.testing.waiting import wait_for
from tests.unit.test_export import make_node, populate
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)

SEED_ORDER = ["communities", "peers", "peers", "blobs", "embeddings", "logs", "keys", "tls"]


def full_node() -> Config:
    """An initialised node with something in every place erase deletes."""
    cfg, kp = make_node()
    populate(cfg, kp)
    data = cfg.paths.data_dir
    (data / "blobs").mkdir()
    (data / "blobs" / "blake3-aaaa").write_bytes(b"x" * 1000)
    (cfg.paths.cache_dir / "embeddings").mkdir(parents=True, exist_ok=True)
    (cfg.paths.cache_dir / "embeddings" / "idx.bin").write_bytes(b"e" * 10)
    cfg.paths.log_dir.mkdir(parents=True, exist_ok=True)
    (cfg.paths.log_dir / "gateway.log").write_text("{}\n")
    (data / "peers.json").write_text("[]")
    (data / "peers.json.lock").write_text("")
    (data / "tls").mkdir()
    (data / "tls" / "node.crt").write_text("cert")
    return load_config()


def listing(root: Path) -> dict[str, Any]:
    """Every path under root with its type, size and bytes: to prove nothing changed."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", p.stat().st_size, p.read_bytes())
    return out


def node_tree(cfg: Config) -> Path:
    return cfg.paths.data_dir.parent.parent  # tmp_path: data, config, cache, state


# ----------------------------------------------------------------------------- erasing


def test_erase_removes_everything_in_the_seed_order(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = full_node()
    removed: list[Path] = []
    real_remove = erase.remove_path

    def recording(path: Path) -> None:
        removed.append(path)
        real_remove(path)

    monkeypatch.setattr(erase, "remove_path", recording)
    events: list[str] = []
    result = erase.erase_node(erase.plan_erase(cfg), confirm=None, on_event=lambda kind, data: events.append(kind))
    assert [s.step for s in result.steps] == SEED_ORDER
    assert all(s.status == "removed" for s in result.steps), result.to_dict()
    data = cfg.paths.data_dir
    assert removed == [data / "communities", data / "peers.json", data / "peers.json.lock", data / "blobs",
                       cfg.paths.cache_dir / "embeddings",
                       cfg.paths.log_dir, data / "keys", data / "tls"]
    assert events[:2] == ["stopping", "stopped"] and events[2:] == ["step"] * len(SEED_ORDER)
    assert result.config_status == "deleted" and not cfg.source.exists()
    assert not any(p.exists() for p in removed)
    assert result.bytes_removed > 1000 and result.exit_code == 0
    assert result.leftovers == []
    assert result.stop.running is False


def test_erase_keeps_blobs_and_logs_when_asked() -> None:
    cfg = full_node()
    result = erase.erase_node(erase.plan_erase(cfg, keep_blobs=True, keep_logs=True), confirm=None)
    status = {s.step: s.status for s in result.steps}
    assert status["blobs"] == "kept" and status["logs"] == "kept" and status["keys"] == "removed"
    assert (cfg.paths.data_dir / "blobs" / "blake3-aaaa").exists()
    assert (cfg.paths.log_dir / "gateway.log").exists()
    assert not cfg.paths.communities_dir.exists()


def test_erase_keep_keys_then_init_is_the_same_node() -> None:
    cfg = full_node()
    key_bytes = {p.name: p.read_bytes() for p in cfg.identity.keys_dir.iterdir()}
    old_id = cfg.community.community_id
    result = erase.erase_node(erase.plan_erase(cfg, keep_keys=True), confirm=None)
    assert result.config_status == "updated"
    assert {p.name: p.read_bytes() for p in cfg.identity.keys_dir.iterdir()} == key_bytes
    assert (cfg.paths.data_dir / "tls" / "node.crt").exists()
    assert not cfg.paths.communities_dir.exists()
    after = load_config()
    assert after.community.community_id is None and after.node.display_name == "kitchen"
    again = init_node(InitOptions(name=None, profile=None, interactive=False, config_path=None),
                      prompt=DefaultsPrompter())
    assert again.changed and again.node_id == old_id and again.community_id == old_id


@pytest.mark.parametrize("answers", [[False], [True, False], [True, True, False],
                                     [True, KeyboardInterrupt], [True, True, EOFError]])
def test_any_no_or_interrupt_removes_nothing(answers: list[Any]) -> None:
    cfg = full_node()
    before = listing(node_tree(cfg))
    asked: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        answer = answers[len(asked) - 1]
        if isinstance(answer, type) and issubclass(answer, BaseException):
            raise answer()
        return answer

    with pytest.raises(UserAbort) as err:
        erase.erase_node(erase.plan_erase(cfg), confirm=confirm)
    assert err.value.exit_code == 2 and "nothing was removed" in err.value.message
    assert len(asked) == len(answers)
    assert listing(node_tree(cfg)) == before


def test_three_questions_then_erase() -> None:
    cfg = full_node()
    asked: list[str] = []
    erase.erase_node(erase.plan_erase(cfg), confirm=lambda q: asked.append(q) is None)
    assert len(asked) == 3 and "NEW identity" in asked[1]
    assert not cfg.identity.keys_dir.exists()


def test_nothing_to_erase_asks_nothing() -> None:
    cfg = load_config()
    result = erase.erase_node(erase.plan_erase(cfg), confirm=lambda q: pytest.fail("asked"))
    assert result.erased is False and result.exit_code == 0


def test_a_failing_step_is_reported_and_the_rest_still_go(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = full_node()
    real_remove = erase.remove_path

    def flaky(path: Path) -> None:
        if path.name == "blobs":
            raise PermissionError(13, "Permission denied")
        real_remove(path)

    monkeypatch.setattr(erase, "remove_path", flaky)
    result = erase.erase_node(erase.plan_erase(cfg), confirm=None)
    status = {s.step: s.status for s in result.steps}
    assert status["blobs"] == "failed" and status["keys"] == "removed"
    assert result.exit_code == 1


# ----------------------------------------------------------------------------- the guard


def test_refuses_keys_dir_at_root_and_removes_nothing() -> None:
    cfg = full_node()
    update_config_file(cfg.source, {"identity": {"keys_dir": "/"}})
    cfg = load_config()
    before = listing(node_tree(cfg))
    with pytest.raises(erase.UnsafeErase) as err:
        erase.plan_erase(cfg)
    assert "identity.keys_dir = /" in err.value.message and "--keep-keys" in err.value.message
    assert listing(node_tree(cfg)) == before


@pytest.mark.parametrize("setting", [("file", "blobs_dir", "data"), ("rag", "corpora_dir", "home"),
                                     ("observability", "log_dir", "tmp"), ("community", "state_dir", "tmp")])
def test_refuses_paths_outside_or_equal_to_the_node_dirs(setting: tuple[str, str, str], tmp_path: Path) -> None:
    cfg = full_node()
    section, key, where = setting
    value = {"data": str(cfg.paths.data_dir), "home": str(Path.home()), "tmp": str(tmp_path / "elsewhere")}[where]
    update_config_file(cfg.source, {section: {key: value}})
    with pytest.raises(erase.UnsafeErase):
        erase.plan_erase(load_config())


def test_a_kept_path_may_lie_anywhere() -> None:
    cfg = full_node()
    update_config_file(cfg.source, {"identity": {"keys_dir": "/"}})
    plan = erase.plan_erase(load_config(), keep_keys=True)
    assert [t.step for t in plan.targets if t.keep] == ["keys", "tls"]


def test_refuses_to_delete_what_holds_a_kept_path() -> None:
    cfg = full_node()
    update_config_file(cfg.source, {"file": {"blobs_dir": str(cfg.paths.communities_dir / "blobs")}})
    with pytest.raises(erase.UnsafeErase, match="lies inside"):
        erase.plan_erase(load_config(), keep_blobs=True)


def test_symlinks_are_removed_as_links_never_followed(tmp_path: Path) -> None:
    cfg = full_node()
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "photo.jpg").write_bytes(b"jpg")
    blobs = cfg.paths.data_dir / "blobs"
    (blobs / "escape").symlink_to(outside)  # a link inside a wiped dir
    embeddings = cfg.paths.cache_dir / "embeddings"
    for p in embeddings.iterdir():
        p.unlink()
    embeddings.rmdir()
    embeddings.symlink_to(outside)  # a wiped dir that is itself a link
    erase.erase_node(erase.plan_erase(cfg), confirm=None)
    assert (outside / "photo.jpg").read_bytes() == b"jpg"
    assert not blobs.exists() and not embeddings.is_symlink()


def test_refuses_a_path_whose_parent_links_outside(tmp_path: Path) -> None:
    cfg = full_node()
    outside = tmp_path / "elsewhere"
    (outside / "keys").mkdir(parents=True)
    (cfg.paths.data_dir / "link").symlink_to(outside)
    update_config_file(cfg.source, {"identity": {"keys_dir": str(cfg.paths.data_dir / "link" / "keys")}})
    with pytest.raises(erase.UnsafeErase):
        erase.plan_erase(load_config())


# ----------------------------------------------------------------------------- stopping

SLEEPER = ("import signal, sys, time\n"
           "if sys.argv[1] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
           "print('ready', flush=True)\n"
           "time.sleep(120)")
FAKE_RUN = """
import signal, subprocess, sys, time
run_dir, sleeper = sys.argv[3], sys.argv[4]
def stop(*_):
    child.terminate(); child.wait(); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
child = subprocess.Popen([sys.executable, '-c', sleeper, 'polite', 'supervisord', '-c', run_dir + '/supervisord.conf'],
                         stdout=subprocess.PIPE)
child.stdout.readline()
open(run_dir + '/supervisord.pid', 'w').write(str(child.pid))
while True:
    time.sleep(0.05)
"""


def fake_supervisord(run_dir: Path, mode: str = "polite") -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, mode, "supervisord", "-c", str(run_dir / "supervisord.conf")],
                            stdout=subprocess.PIPE, text=True)
    (run_dir / "supervisord.pid").write_text(str(proc.pid))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"  # signal handling set up
    return proc


def wait_for_cmdline(pid: int, word: str) -> None:
    # psutil.Error while the process execs counts as "not yet".
    wait_for(lambda: word in " ".join(psutil.Process(pid).cmdline()), 10, 0.02, message=f"{pid} shows {word}")


def test_stop_without_pidfile_is_not_running(tmp_path: Path) -> None:
    assert erase.stop_node(tmp_path / "run").running is False


def test_stop_ignores_a_pidfile_naming_another_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "supervisord.pid").write_text(str(os.getpid()))  # a reused pid: this test process
    assert erase.stop_node(run_dir).running is False


def test_stop_ignores_the_supervisord_of_another_node(tmp_path: Path) -> None:
    proc = fake_supervisord(tmp_path / "other-run")
    try:
        mine = tmp_path / "run"
        mine.mkdir()
        (mine / "supervisord.pid").write_text(str(proc.pid))
        assert erase.stop_node(mine).running is False
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_stop_terminates_supervisord(tmp_path: Path) -> None:
    proc = fake_supervisord(tmp_path / "run")
    result = erase.stop_node(tmp_path / "run")
    assert result.running and result.signalled == "supervisord" and result.pid == proc.pid
    assert proc.wait(timeout=5) == -signal.SIGTERM and result.killed == []


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    proc = fake_supervisord(tmp_path / "run", mode="stubborn")
    result = erase.stop_node(tmp_path / "run", timeout=0.5)
    assert result.killed == [proc.pid]
    assert proc.wait(timeout=5) == -signal.SIGKILL


def test_stop_signals_the_parent_hearthnet_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", FAKE_RUN, "hearthnet", "run", str(run_dir), SLEEPER])
    try:
        pidfile = run_dir / "supervisord.pid"
        child_pid = int(wait_for(lambda: pidfile.read_text().strip(), 10, 0.02, message="the fake run's pid file"))
        wait_for_cmdline(child_pid, "supervisord")
        result = erase.stop_node(run_dir)
        assert result.signalled == "hearthnet run" and result.signalled_pid == parent.pid
        assert parent.wait(timeout=5) == 0  # it stopped its tree itself
        assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
