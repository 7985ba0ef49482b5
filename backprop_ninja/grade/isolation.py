"""The only place that starts student code: every process that runs it is launched from here.

Isolated (the default wherever it can be set up, Linux with bubblewrap):

    grader (trusted: holds the reference gradients, decides points, writes results)
      └─ bwrap: own PID, network, IPC and UTS namespaces; a read-only view of /usr and the Python
         runtime only (not the kit's sources, the solutions, the course, the output folder, the
         gradebook); a private size-capped /tmp; no environment but a short fixed one;
         no inherited file descriptor but its channel
           └─ host (sandboxed/host.py): drops to the sandbox uid and gid, imports torch once, never
              runs student code; for every box the grader asks for it forks a child that enters a
              fresh user, PID, mount and IPC namespace
                └─ spawner, PID 1 of that namespace: a private tmpfs /tmp and /dev/shm, /proc hidden;
                   forks a worker per job; when it ends, the kernel kills everything in the namespace
                     └─ worker: drops every capability, seccomp (no fork, no exec, no ptrace, no
                        mount, no new namespaces), rlimits, then runs the student's cells

Unisolated (`--no-isolation`, or self-study where isolation cannot be set up): the grader forks the
spawner itself, as before; workers still get rlimits, seccomp where libseccomp exists, and autograd
blocked, but they run as the grader's user and can see what it sees. Every results.json says which.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SANDBOX_UID = int(os.environ.get("BACKPROP_NINJA_SANDBOX_UID", "64111"))  # used when the grader runs as root
SANDBOX_GID = int(os.environ.get("BACKPROP_NINJA_SANDBOX_GID", str(SANDBOX_UID)))
# nbgrader's kernels run as a user of their own: they may start threads (ipykernel needs them), so a thread bomb in
# one is capped by RLIMIT_NPROC of that user (sandboxed/kernel.py), and never counts against the grading boxes' user
KERNEL_UID = int(os.environ.get("BACKPROP_NINJA_KERNEL_UID", str(SANDBOX_UID + 1)))
KERNEL_GID = int(os.environ.get("BACKPROP_NINJA_KERNEL_GID", str(KERNEL_UID)))
TMP_BYTES = 256 << 20          # the private /tmp of a sandbox
SANDBOXED_DIR = Path(__file__).resolve().parent.parent / "sandboxed"  # the only kit code a sandbox sees
INSIDE_LIB = "/sandbox/lib"
INSIDE_PYTHON = "/sandbox/python"
INSIDE_SITE = "/sandbox/site-packages"

REQUIRED, PREFERRED, OFF = "required", "preferred", "off"
NO_ISOLATION_ENV = "BACKPROP_NINJA_NO_ISOLATION"  # set, and not "0": like --no-isolation (front ends without flags)
FIX = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`) on "
       "Linux with user namespaces enabled, or pass --no-isolation to grade without it (recorded in every result)")


class IsolationUnavailable(RuntimeError):
    """Isolation was required but cannot be set up here; the message names the fix."""


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def bwrap_command(argv: list[str], *, ro_binds: tuple[tuple[str, str], ...] = (),
                  rw_binds: tuple[tuple[str, str], ...] = (), env: dict[str, str] | None = None,
                  cwd: str = "/tmp") -> list[str]:
    """The bwrap command line that runs `argv` (paths as seen inside) in a fresh sandbox.

    Inside: /usr (and the /lib, /lib64, /bin links), the Python runtime at /sandbox/python, the
    venv's site-packages at /sandbox/site-packages, kit code from backprop_ninja/sandboxed/ at
    /sandbox/lib/sandboxed, and the extra binds given; everything else is absent. Wherever the kit
    itself sits inside those trees (a wheel or `pip install .` puts it in site-packages, with
    grade/canary.py and every answer) it is covered by an empty read-only folder (kit_masks). When the grader
    runs as root the command starts as root with only CAP_SETUID and CAP_SETGID, and the first
    thing it runs must drop to SANDBOX_UID (sandboxed/host.py does).
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise IsolationUnavailable(f"bubblewrap (bwrap) is not installed: {FIX}")
    command = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() == 0:  # root keeps only what the first process inside needs to become the sandbox user
        command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-user"]
    command += ["--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{link}"):
            command += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            command += ["--ro-bind", f"/{link}", f"/{link}"]
    if os.path.exists("/etc/ld.so.cache"):  # bwrap would make /etc 0700: the sandbox uid could not read it
        command += ["--perms", "0755", "--dir", "/etc", "--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    command += ["--perms", "0755", "--dir", "/sandbox",
                "--ro-bind", sys.base_prefix, INSIDE_PYTHON,
                "--ro-bind", _site_packages(), INSIDE_SITE]
    command += mask_arguments(kit_masks(bound_trees()))
    command += ["--perms", "0755", "--dir", INSIDE_LIB,
                "--ro-bind", str(SANDBOXED_DIR), f"{INSIDE_LIB}/sandboxed",
                "--proc", "/proc", "--dev", "/dev",
                "--size", str(TMP_BYTES), "--perms", "1777", "--tmpfs", "/tmp"]
    for source, target in ro_binds:
        command += ["--ro-bind", source, target]
    for source, target in rw_binds:
        command += ["--bind", source, target]
    base_env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": f"{INSIDE_LIB}:{INSIDE_SITE}",
                "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp"}
    for name, value in {**base_env, **(env or {})}.items():
        command += ["--setenv", name, value]
    command += ["--chdir", cwd, "--", *argv]
    return command


# ---- what the box must not see of the kit, on every install layout ----

PACKAGE_DIR = SANDBOXED_DIR.parent      # the kit this grader was imported from
KIT_PACKAGE = PACKAGE_DIR.name          # "backprop_ninja"
# Under an installed kit's metadata folder, the files that name where its sources are (a wheel's RECORD lists
# every file, an editable install's direct_url.json its checkout). The rest (METADATA, entry points) stays, so that
# importlib.metadata keeps working inside.
KIT_METADATA_FILES = ("RECORD", "direct_url.json", "SOURCES.txt")
SITE_DIR_PATTERNS = ("lib/python3*/site-packages", "lib/python3*/dist-packages", "lib/python3/dist-packages",
                     "local/lib/python3*/site-packages", "local/lib/python3*/dist-packages")


def bound_trees() -> list[tuple[str, str]]:
    """(host path, path inside) of every tree bwrap_command binds from the host's Python and system."""
    trees = [("/usr", "/usr")]
    trees += [(f"/{link}", f"/{link}") for link in ("lib", "lib64", "bin", "sbin")
              if os.path.isdir(f"/{link}") and not os.path.islink(f"/{link}")]
    return trees + [(sys.base_prefix, INSIDE_PYTHON), (_site_packages(), INSIDE_SITE)]


def kit_masks(trees: list[tuple[str, str]], package_dir: Path = PACKAGE_DIR,
              search_path: list[str] | None = None) -> list[tuple[str, bool]]:
    """(path inside, is a folder) of everything of the kit that `trees` would show a box: the package it was
    imported from and its checkout, any installed copy (wheel, `pip install .`, the Gradescope bundle's venv) with
    its metadata, and the files of an editable install that point at the sources. Nested paths are dropped (the
    outer mask covers them), and so is anything outside the trees (a box never sees it anyway)."""
    search_path = sys.path if search_path is None else search_path
    found = [(str(package_dir), True)] + _checkout_of(package_dir)
    for site_dir in _site_dirs(trees, search_path):
        found += _kit_entries(site_dir)
    inside = sorted({(path, is_dir) for host, is_dir in found for path in _inside_paths(host, trees)})
    masks: list[tuple[str, bool]] = []
    for path, is_dir in inside:  # sorted: a folder comes before what it holds
        if not any(path == m or path.startswith(m.rstrip("/") + "/") for m, m_is_dir in masks if m_is_dir):
            masks.append((path, is_dir))
    return masks


def mask_arguments(masks: list[tuple[str, bool]]) -> list[str]:
    """bwrap arguments that cover each mask: a folder by an empty read-only tmpfs (read-only, since boxes share
    the host's mounts: a writable one would carry files from one submission to the next), a file by /dev/null."""
    arguments: list[str] = []
    for path, is_dir in masks:
        if is_dir:
            arguments += ["--perms", "0555", "--size", "4096", "--tmpfs", path, "--remount-ro", path]
        else:
            arguments += ["--ro-bind", "/dev/null", path]
    return arguments


def _checkout_of(package_dir: Path) -> list[tuple[str, bool]]:
    """The source checkout around the package (source/, solutions/, tests), if it is one."""
    parent = package_dir.parent
    return [(str(parent), True)] if (parent / "pyproject.toml").is_file() and not _is_site_dir(parent) else []


def _is_site_dir(path: Path) -> bool:
    return path.name in ("site-packages", "dist-packages")


def _site_dirs(trees: list[tuple[str, str]], search_path: list[str]) -> list[str]:
    """Folders under the bound trees where Python finds packages: the trees' own (system, runtime, venv) and those
    on this interpreter's path."""
    import glob
    import site

    candidates = [host for host, _ in trees]
    for host, _ in trees:
        for pattern in SITE_DIR_PATTERNS:
            candidates += glob.glob(os.path.join(host, pattern))
    extra = list(search_path)
    try:
        extra += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # an old virtualenv's site module
        pass
    candidates += [entry for entry in extra if entry and os.path.isabs(entry)]
    seen, dirs = set(), []
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real not in seen and os.path.isdir(real) and _inside_paths(real, trees):
            seen.add(real)
            dirs.append(real)
    return dirs


def _kit_entries(site_dir: str) -> list[tuple[str, bool]]:
    """What an install of the kit left in one site folder: the package, its metadata's source lists, an
    editable install's .pth and finder, an egg-link; and the checkout any of those point at."""
    prefix = KIT_PACKAGE + "-"
    found: list[tuple[str, bool]] = []
    try:
        names = os.listdir(site_dir)
    except OSError:
        return found
    for name in names:
        path = os.path.join(site_dir, name)
        if name == KIT_PACKAGE:
            found.append((os.path.realpath(path), True))  # a symlinked package is hidden where it really is
            if os.path.islink(path):
                found += _checkout_of(Path(os.path.realpath(path)))
        elif name.startswith(prefix) and name.endswith((".dist-info", ".egg-info")):
            found += [(os.path.join(path, f), False) for f in KIT_METADATA_FILES if os.path.isfile(os.path.join(path, f))]
        elif KIT_PACKAGE in name and name.endswith((".pth", ".egg-link", ".py")) and os.path.isfile(path) \
                and not os.path.islink(path):
            found.append((path, False))
            found += _pointed_at(path)
    return found


def _pointed_at(path: str) -> list[tuple[str, bool]]:
    """Folders an editable install's file names (a .pth line, an egg-link, the finder's MAPPING): the checkout."""
    import re

    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read(1 << 16)
    except OSError:
        return []
    found = []
    for target in re.findall(r"""(?m)^(/[^\n'"]+)$|['"](/[^'"\n]+)['"]""", text):
        folder = Path(target[0] or target[1])
        if folder.is_dir():
            if folder.name == KIT_PACKAGE:
                found.append((str(folder.resolve()), True))
                found += _checkout_of(folder.resolve())
            elif (folder / KIT_PACKAGE).is_dir():
                found += [(str((folder / KIT_PACKAGE).resolve()), True)] + _checkout_of(folder.resolve() / KIT_PACKAGE)
    return found


def _inside_paths(host_path: str, trees: list[tuple[str, str]]) -> list[str]:
    """Where `host_path` shows inside a box: once for every bound tree that holds it (none if no tree does)."""
    real = os.path.realpath(host_path)
    found = []
    for host, inside in trees:
        root = os.path.realpath(host)
        if real == root:
            found.append(inside)
        elif real.startswith(root.rstrip("/") + "/"):
            found.append(inside.rstrip("/") + "/" + os.path.relpath(real, root))
    return found


def inside_python() -> str:
    """The interpreter's path inside a sandbox."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return f"{INSIDE_PYTHON}/bin/{version}"


def sandbox_user() -> tuple[int, int]:
    """The uid and gid student code runs as: SANDBOX_UID/GID when the grader is root, else the grader's own
    (then inside a user namespace)."""
    return (SANDBOX_UID, SANDBOX_GID) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def kernel_user() -> tuple[int, int]:
    """The uid and gid nbgrader's kernels run as: KERNEL_UID/GID when the grader is root, else the grader's own."""
    return (KERNEL_UID, KERNEL_GID) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def kernel_argv(kernel_args: list[str], memory_bytes: int) -> list[str]:
    """The command, inside a sandbox, of the Jupyter kernel that nbgrader runs a submission in
    (sandboxed/kernel.py: drops to the kernels' user, confines itself, becomes ipykernel)."""
    uid, gid = kernel_user()
    return [inside_python(), "-S", "-s", "-m", "sandboxed.kernel", str(uid), str(gid), str(memory_bytes),
            *kernel_args]


# ---- launchers: how the engine gets a box (a spawner) for one submission's replays ----

def unavailable_reason() -> str | None:
    """Why isolation cannot be set up here (None: it can be tried)."""
    if not sys.platform.startswith("linux"):
        return f"isolation needs Linux namespaces, and this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    from backprop_ninja.sandboxed import confine

    if not confine.seccomp_available():
        return "libseccomp is not installed (Debian/Ubuntu: `apt-get install libseccomp2`)"
    return None


class Launcher:
    """Makes boxes: `open_box(replays, meta, limits, key=None)` -> sandbox.Box. `description` goes into every
    result. `key` names the replays (a draw's plans): the isolated host keeps the last ones it was sent, so the
    next box of the same draw gets them without sending their arrays again."""

    isolated = False
    description = ""

    def __init__(self):
        self.environment_checked: set = set()  # (limits, timeouts) under which the engine's canary passed here

    def open_box(self, replays, meta: dict, limits, key=None):
        raise NotImplementedError

    def settle(self) -> None:
        """Decide, now, anything left open about how boxes are made (`isolated` is final afterwards)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UnisolatedLauncher(Launcher):
    """The grader forks the spawner itself: for --no-isolation and self-study without bwrap."""

    def __init__(self, why: str):
        super().__init__()
        self.description = f"none ({why})"
        from backprop_ninja.sandboxed import confine

        confine.set_dumpable(False)  # a worker of our own uid still cannot read this process's memory

    def open_box(self, replays, meta: dict, limits, key=None):
        import functools

        from backprop_ninja.sandboxed import blocks, worker

        serve = functools.partial(worker.serve, replays, worker.Meta.from_dict(meta))
        blocks.preload_autograd_modules()  # imported here once, not again in every spawner forked from here
        # the spawner locks down once, so its workers inherit it (as from the isolated host) instead of each paying
        # for it; the spawner itself never runs student code and needs nothing of what the lock-down takes away
        return self.open_box_serving(serve, limits, prepare=blocks.lock_down)

    def open_box_serving(self, serve, limits, prepare=lambda: None):
        """A box whose workers run `serve(sock)` once confined (the tests give their own); the spawner runs
        `prepare()` first."""
        import socket
        import tempfile

        from backprop_ninja.grade.sandbox import Box
        from backprop_ninja.sandboxed import confine, spawner

        workdir = tempfile.mkdtemp(prefix="backprop-ninja-")
        control, spawner_end = socket.socketpair()

        def spawner_main() -> int:
            confine.die_with_parent()
            prepare()
            return spawner.spawner_loop(spawner_end, serve, limits, workdir, isolated=False)

        pid = spawner.fork_child(spawner_main, control)
        spawner_end.close()
        return Box(control, spawner_pid=pid, on_close=lambda: shutil.rmtree(workdir, ignore_errors=True))


class IsolatedLauncher(Launcher):
    """One bwrap sandbox (sandboxed/host.py) per launcher; every box is a fresh set of namespaces inside it."""

    isolated = True
    READY_TIMEOUT = 120.0  # the host imports torch; a loaded machine can take a while

    def __init__(self, fallback: bool = False):
        import socket
        import subprocess
        import tempfile

        super().__init__()
        import threading

        self.fallback = fallback  # self-study: if the sandbox cannot start, grade unisolated and say so
        self.channel_lock = threading.Lock()  # the engine may open boxes from two threads (canary, student)
        self.unisolated: UnisolatedLauncher | None = None
        self.uid, self.gid = sandbox_user()
        where = "uid %d" % self.uid if os.geteuid() == 0 else "the grader's uid, in a user namespace"
        self.description = f"bwrap ({where}; own PID, network and mount namespaces per submission)"
        self.channel, host_end = socket.socketpair()
        self.stderr = tempfile.TemporaryFile()
        argv = [inside_python(), "-S", "-s", "-m", "sandboxed.host", str(host_end.fileno()), str(self.uid),
                str(self.gid)]
        try:
            self.process = subprocess.Popen(bwrap_command(argv), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=self.stderr,
                                            pass_fds=(host_end.fileno(),), close_fds=True)
        finally:
            host_end.close()
        self.ready = False
        self.host_keeps = None  # the key of the replays the host keeps (see Launcher)

    def wait_ready(self) -> None:
        import time

        from backprop_ninja.grade.sandbox import FrameReader, WorkerFailure

        if self.ready:
            return
        try:
            header, _ = FrameReader(self.channel).read(time.monotonic() + self.READY_TIMEOUT)
        except WorkerFailure as failure:
            raise IsolationUnavailable(f"the sandbox did not start ({failure.detail}): {self._stderr()}; {FIX}") \
                from None
        if not header.get("ready") or header.get("uid") != self.uid:
            raise IsolationUnavailable(f"the sandbox started as uid {header.get('uid')}, not {self.uid}")
        self.ready = True

    def settle(self) -> None:
        """Self-study (fallback): if the sandbox cannot start, switch to unisolated boxes, once, and say so."""
        with self.channel_lock:
            if self.unisolated is None and self.fallback:
                try:
                    self.wait_ready()
                except IsolationUnavailable as error:
                    self.unisolated = _unisolated_for_self_study(str(error))
                    self.isolated, self.description = False, self.unisolated.description

    def _stderr(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read(4000).decode(errors="replace").strip()
        return text or f"bwrap exited with code {self.process.poll()}"

    def open_box(self, replays, meta: dict, limits, key=None):
        import dataclasses

        from backprop_ninja.grade.sandbox import Box, ask_for_socket
        from backprop_ninja.sandboxed.wire import encode_frame

        self.settle()
        with self.channel_lock:
            if self.unisolated is not None:
                return self.unisolated.open_box(replays, meta, limits)
            self.wait_ready()
            request = {"op": "box", "meta": meta, "limits": dataclasses.asdict(limits), "tmp_bytes": TMP_BYTES}
            key = None if key is None else repr(key)
            if key is not None and key == self.host_keeps:  # the host holds these replays from the last box
                request["kept"], arrays = key, []
            else:
                request["replays"] = [list(values) for values in replays]
                request["keep"] = key
                arrays = [t.detach().contiguous().numpy() for values in replays for t in values.values()]
            self.host_keeps = None  # until the host has answered: a box that failed may have left it unsure
            _, control = ask_for_socket(self.channel, encode_frame(request, arrays), "open a sandbox",
                                        lambda: f"; {self._stderr()}")
            self.host_keeps = key
            return Box(control)

    def close(self) -> None:
        self.channel.close()  # the host sees EOF and exits; bwrap then ends everything inside
        try:
            self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a host that does not exit is killed: it is our own child
            self.process.kill()
            self.process.wait()
        self.stderr.close()


_notified = False


def start(mode: str = REQUIRED) -> Launcher:
    """A launcher for `mode`: REQUIRED raises IsolationUnavailable where isolation cannot be set up;
    PREFERRED (self-study) falls back to unisolated and says so once on stderr; OFF never isolates, nor does
    any mode when BACKPROP_NINJA_NO_ISOLATION=1 (nbgrader and Gradescope have no command-line flag)."""
    if mode == OFF:
        return UnisolatedLauncher("--no-isolation")
    if os.environ.get(NO_ISOLATION_ENV, "") not in ("", "0"):
        return UnisolatedLauncher(f"{NO_ISOLATION_ENV}={os.environ[NO_ISOLATION_ENV]}")
    problem = unavailable_reason()
    if problem is None:
        return IsolatedLauncher(fallback=mode == PREFERRED)  # starts now; whether it works shows at first use
    if mode == REQUIRED:
        raise IsolationUnavailable(f"student code must run isolated, but {problem}. Fix: {FIX}.")
    return _unisolated_for_self_study(problem)


def _unisolated_for_self_study(problem: str) -> UnisolatedLauncher:
    global _notified
    if not _notified:
        print(f"note: your notebook is graded without isolation ({problem}); that is fine for your own work.",
              file=sys.stderr)
        _notified = True
    return UnisolatedLauncher("not available here")
