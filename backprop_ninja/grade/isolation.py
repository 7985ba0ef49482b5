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
TMP_BYTES = 256 << 20          # the private /tmp of a sandbox
SANDBOXED_DIR = Path(__file__).resolve().parent.parent / "sandboxed"  # the only kit code a sandbox sees
INSIDE_LIB = "/sandbox/lib"
INSIDE_PYTHON = "/sandbox/python"
INSIDE_SITE = "/sandbox/site-packages"

REQUIRED, PREFERRED, OFF = "required", "preferred", "off"
FIX = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`) on "
       "Linux with user namespaces enabled, or pass --no-isolation to grade without it (recorded in every result)")


class IsolationUnavailable(RuntimeError):
    """Isolation was required but cannot be set up here; the message names the fix."""


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def bwrap_command(argv: list[str], *, ro_binds: tuple[tuple[str, str], ...] = (),
                  rw_binds: tuple[tuple[str, str], ...] = (), env: dict[str, str] | None = None,
                  cwd: str = "/tmp", keep_caps_to_drop_uid: bool = True) -> list[str]:
    """The bwrap command line that runs `argv` (paths as seen inside) in a fresh sandbox.

    Inside: /usr (and the /lib, /lib64, /bin links), the Python runtime at /sandbox/python, the
    venv's site-packages at /sandbox/site-packages, kit code from backprop_ninja/sandboxed/ at
    /sandbox/lib/sandboxed, and the extra binds given; everything else is absent. When the grader
    runs as root the command starts as root with only CAP_SETUID and CAP_SETGID, and the first
    thing it runs must drop to SANDBOX_UID (sandboxed/host.py does).
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise IsolationUnavailable(f"bubblewrap (bwrap) is not installed: {FIX}")
    command = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() == 0:
        if keep_caps_to_drop_uid:
            command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-user"]
    command += ["--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{link}"):
            command += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            command += ["--ro-bind", f"/{link}", f"/{link}"]
    if os.path.exists("/etc/ld.so.cache"):
        command += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    command += ["--perms", "0755", "--dir", "/sandbox",
                "--ro-bind", sys.base_prefix, INSIDE_PYTHON,
                "--ro-bind", _site_packages(), INSIDE_SITE,
                "--perms", "0755", "--dir", INSIDE_LIB,
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


def inside_python() -> str:
    """The interpreter's path inside a sandbox."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return f"{INSIDE_PYTHON}/bin/{version}"
