"""A real systemd as PID 1 of a throw-away container (systemd-nspawn), for the tests that
must see `hearthnet service` under the service manager it is written for.

The container is this machine's own OS, not an image: a small root directory on disk
holding a copy of /etc (trimmed: none of the host's enabled services) and the host's /usr
bind-mounted read-only; this install of HearthNet is mounted read-only at the very paths it
has here (the venv, its base interpreter, the source tree), so `hearthnet service install
--system` inside writes a unit naming the same entry point it would on the host.

It runs with `--private-network` (only a loopback of its own: nothing inside reaches the
machine's real interfaces), `--register=no --keep-unit` (the host needs no systemd or
machined), and every mount lives in nspawn's own mount namespace, so the mounts go when it
does. Commands run inside through nsenter into PID 1's namespaces, with a clean environment.

    with SystemdContainer(tmp_path) as box:
        box.run("systemctl", "is-system-running", check=True)
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from hearthnet.testing.waiting import wait_for

NSPAWN = "systemd-nspawn"
BOOT_TIMEOUT = 90.0
POWEROFF_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# nothing reads a console; no clock to sync; no network to wait for (loopback only)
MASKED_UNITS = ("console-getty.service", "container-getty@.service", "getty@.service",
                "systemd-timesyncd.service", "systemd-networkd-wait-online.service")


def unavailable_reason() -> str | None:
    """Why no container can be booted here, or None when it can."""
    if shutil.which(NSPAWN) is None:
        return (f"{NSPAWN} is not installed (Debian: apt-get install systemd-container; "
                ".ci/run installs it)")
    if os.geteuid() != 0:
        return f"{NSPAWN} needs root"
    return None


def installed_source_root(python: str = sys.executable) -> Path:
    """The source tree the venv's own interpreter imports hearthnet from, without this
    process's PYTHONPATH: what the unit's ExecStart will run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([python, "-c", "import hearthnet; print(hearthnet.__file__)"], env=env,
                         cwd="/", capture_output=True, text=True, check=True).stdout.strip()
    return Path(out).resolve().parent.parent


def _outermost(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in sorted(set(paths), key=lambda q: len(q.parts)):
        if not any(p == o or o in p.parents for o in out):
            out.append(p)
    return out


def code_mounts() -> list[tuple[Path, str]]:
    """(mount point, nspawn option) that show this install inside at the paths it has
    here. When the code under test is another checkout than the one the venv was installed
    from (a git worktree using a shared venv), the installed tree is shown with the tested
    tree laid over it (read-only overlay), so the service runs the code under test."""
    import hearthnet

    tested = Path(hearthnet.__file__).resolve().parent.parent
    installed = installed_source_root()
    roots = [Path(sys.prefix), Path(sys.base_prefix), installed]
    mounts = []
    for root in _outermost([r for r in roots if r != Path("/usr") and Path("/usr") not in r.parents]):
        if root == installed and tested != installed:
            mounts.append((root, f"--overlay-ro={installed}:{tested}:{installed}"))
        else:
            mounts.append((root, f"--bind-ro={root}"))
    return mounts


def cgroup_hierarchies() -> tuple[Path | None, Path | None]:
    """(the cgroup2 hierarchy, the cgroup-v1 name=systemd one) of this process: its own
    cgroup in each, as a directory, or None where that hierarchy is not mounted."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        own["cgroup2" if hid == "0" else controllers] = path.lstrip("/")
    unified = named = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _, options = tail.split(" ", 2)
        point = Path(fields.split()[4])
        if fstype == "cgroup2" and unified is None and "cgroup2" in own:
            unified = point / own["cgroup2"]
        elif fstype == "cgroup" and "name=systemd" in options.split(",") and "name=systemd" in own:
            named = point / own["name=systemd"]
    return unified, named


def _nspawn_child_setup(cgroups: list[Path]) -> None:
    """Own process group (teardown signals it without touching the test runner), own
    cgroups (nspawn puts the container below its own cgroup: two containers must not share
    one), and a SIGTERM — a clean poweroff — should the test runner be killed outright."""
    os.setsid()
    for group in cgroups:
        (group / "cgroup.procs").write_text("0")
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _remove_cgroup_tree(top: Path) -> None:
    """rmdir a cgroup and everything below it, deepest first (each must be empty of
    processes: a cgroup that just emptied may stay busy for a moment)."""
    def gone() -> bool:
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(Path(w[0]).parts)):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
        return not top.exists()
    wait_for(gone, 10, interval=0.1, message=f"cgroup {top} removed")


class SystemdContainer:
    """Boot with `start()` (or `with`), run commands with `run()`, always `stop()`."""

    def __init__(self, workdir: Path, name: str | None = None) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.boot_log = workdir / "boot.log"
        self.name = name or f"hn-sd-{os.getpid()}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self.cgroups: list[Path] = []

    # ---- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> "SystemdContainer":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, extra_args: list[str] | None = None) -> None:
        mounts = code_mounts()
        self._make_root([point for point, _ in mounts])
        argv = [NSPAWN, f"--directory={self.root}", f"--machine={self.name}", "--boot",
                "--private-network", "--register=no", "--keep-unit", "--console=read-only",
                "--bind-ro=/usr", *(option for _, option in mounts), *(extra_args or [])]
        unified, named = cgroup_hierarchies()
        self.cgroups = [g / self.name for g in (unified, named) if g is not None]
        for group in self.cgroups:
            group.mkdir(exist_ok=True)
        env = dict(os.environ)
        if unified is not None:
            # a pure cgroup2 tree inside (Debian 12's default) even on a hybrid host: with
            # the v1 layout, systemd inside never hears that a unit's cgroup emptied and
            # waits out TimeoutStopSec after every kill
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        with self.boot_log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, preexec_fn=lambda: _nspawn_child_setup(self.cgroups))
        try:
            self.leader = wait_for(self._find_leader, 30, interval=0.1, message=self._boot_failure)
            wait_for(self._booted, BOOT_TIMEOUT, interval=0.5, message=self._boot_failure)
        except BaseException:
            self.stop()
            raise

    def _make_root(self, mount_points: list[Path]) -> None:
        """A root dir: symlinks into /usr (merged-/usr Debian), empty /var /run /tmp, the
        mount points of the install, and a copy of /etc without the host's enabled units."""
        root = self.root
        root.mkdir(parents=True)
        for d in ("usr", "var", "run", "tmp", "home", "root", "proc", "sys", "dev", "srv", "opt", "mnt"):
            (root / d).mkdir()
        os.chmod(root / "tmp", 0o1777)
        # the test machine's interpreter may live under /root (pyenv); the unit itself
        # hides /root (ProtectHome=tmpfs) and binds only the install, but `hearthnet init`
        # as the service user runs outside the unit and must reach it
        os.chmod(root / "root", 0o755)
        for point in mount_points:  # nspawn creates no parents for an overlay
            (root / point.relative_to("/")).mkdir(parents=True, exist_ok=True)
        for link in ("bin", "sbin", "lib", "lib64"):
            if Path("/" + link).is_symlink():
                os.symlink(os.readlink("/" + link), root / link)
        shutil.copytree("/etc", root / "etc", symlinks=True)
        etc = root / "etc"
        # the host's enabled services (postgresql, timers, gettys …) must not start inside
        units = etc / "systemd" / "system"
        for p in [*units.glob("*.wants"), *units.glob("*.requires")]:
            shutil.rmtree(p)
        (units / "default.target").unlink(missing_ok=True)
        for unit in MASKED_UNITS:
            (units / unit).unlink(missing_ok=True)
            os.symlink("/dev/null", units / unit)
        os.symlink("/usr/lib/systemd/system/multi-user.target", units / "default.target")
        (etc / "machine-id").unlink(missing_ok=True)
        (etc / "machine-id").write_text("")  # empty: systemd makes a transient one
        os.chmod(etc / "machine-id", 0o444)
        (etc / "hostname").write_text(self.name + "\n")
        # nspawn looks for os-release in the dir before /usr is mounted: a real file
        (etc / "os-release").unlink(missing_ok=True)
        shutil.copy("/usr/lib/os-release", etc / "os-release")

    def _find_leader(self) -> int | None:
        """The container's PID 1, seen from here: nspawn's child whose innermost pid is 1."""
        assert self.proc is not None and self.proc.poll() is None, self._boot_failure()
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        for pid in children:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                    return int(pid)
        return None

    def _booted(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self._boot_failure()
        r = self.run("systemctl", "is-system-running", timeout=15)
        state = r.stdout.strip()
        assert state not in ("degraded", "maintenance", "stopping"), \
            f"the container booted {state}: " + self.run("systemctl", "--failed", "--no-pager").stdout
        return state == "running"

    def _boot_failure(self) -> str:
        try:
            return "the container did not boot; its console:\n" + self.boot_log.read_text(errors="replace")[-4000:]
        except OSError:
            return "the container did not boot"

    def stop(self) -> None:
        """Power off (SIGTERM to nspawn asks systemd inside for a clean shutdown); if that
        hangs, kill PID 1 (which ends every process of its pid namespace) and nspawn's
        process group. Then no mount of ours may be left before the root dir is removed."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(POWEROFF_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_hard()
                proc.wait(10)
        if self.leader is not None:
            wait_for(lambda: not Path(f"/proc/{self.leader}").exists(), 10, message="container PID 1 gone")
        for group in self.cgroups:
            if group.exists():
                _remove_cgroup_tree(group)
        left = self.mounts_left()
        if left:
            raise AssertionError(f"mounts left under {self.root}: {left}")
        if self.root.exists():
            shutil.rmtree(self.root)

    def _kill_hard(self) -> None:
        if self.leader is not None:
            try:
                os.kill(self.leader, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def mounts_left(self) -> list[str]:
        """Mount points of this machine's namespace at or under the container's root."""
        root = str(self.root)
        found = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                found.append(point)
        return found

    # ---- inside ------------------------------------------------------------------------

    def run(self, *argv: str, user: str | None = None, env: dict[str, str] | None = None,
            check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`argv` inside the container (root, or `user` through runuser), with a clean
        environment plus `env`."""
        assert self.leader is not None, "the container is not running"
        clean = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        clean.update(env or {})
        inner = ["env", "-i", *(f"{k}={v}" for k, v in clean.items()), *argv]
        if user is not None:
            inner = ["runuser", "-u", user, "--", *inner]
        cmd = ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net", "--pid",
               "--cgroup", "--root", "--wd", "--", *inner]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} (in the container) exit {r.returncode}:\n{r.stderr}{r.stdout}")
        return r

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "--property=" + ",".join(props), check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> list[str]:
        """The unit's journal, systemd's own lines about it included, oldest first."""
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=True).stdout.splitlines()
