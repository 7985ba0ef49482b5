"""The kernel nbgrader runs a submission in, sandboxed like the grader's workers (trusted side).

SandboxedKernelManager is a jupyter_client kernel manager whose kernel is ipykernel inside bwrap
(isolation.bwrap_command), started by sandboxed/kernel.py:

- it runs as isolation.SANDBOX_UID/GID when nbgrader runs as root (in a user namespace of nbgrader's uid otherwise);
- no network, and its own PID, IPC and mount namespaces: it sees /usr, the Python runtime and site-packages
  read-only, names.txt and its connection file read-only, and a private size-capped /tmp (a tmpfs of
  isolation.TMP_BYTES, its working folder, the only place it can write), and nothing else: not the course folder,
  the other submissions, gradebook.db, the kit's sources or any folder of the host's disk;
- it talks to nbgrader over jupyter_client's "ipc" transport: unix sockets it makes in its own /tmp, which nbgrader
  reaches as /proc/<pid>/root/tmp/... (with no network shared, TCP on localhost would not reach it; a folder of the
  host's bound read-write would let it fill the host's disk);
- interrupts go as messages on the control channel: nbgrader cannot signal a process in another PID namespace.

nbgrader_plugins.SandboxedExecute uses it unless isolation is off.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from backprop_ninja.grade import isolation
from backprop_ninja.hidden import OUTSIDE_VERDICTS_VAR  # tells the hidden-test hook that it is display only

INSIDE_NAMES = "/sandbox/names.txt"  # directly in /sandbox: a folder bwrap makes for a bind is 0700
INSIDE_CONNECTION_FILE = "/sandbox/connection.json"
# The kernel binds its sockets at <INSIDE_SOCKETS>-<port>, in its own tmpfs: nothing of the host's disk is writable
INSIDE_SOCKETS = "/tmp/kernel"
# bwrap makes /etc 0700 for its ld.so.cache bind, so fontconfig's files go elsewhere, named by FONTCONFIG_PATH
FONT_CONFIG, INSIDE_FONT_CONFIG = "/etc/fonts", "/sandbox/fontconfig"
# Passed into the kernel from nbgrader's environment (bwrap clears the rest): nbgrader's marker that it is grading,
# and the notebook's training-schedule switch. Anything else the kernel needs is set explicitly in kernel_env().
PASSED_FROM_NBGRADER = ("NBGRADER_EXECUTION", "BACKPROP_NINJA_STEPS")
INLINE_PLOTS = "module://matplotlib_inline.backend_inline"     # what an ordinary ipykernel uses: plots in outputs
KERNEL_MEMORY_BYTES = 8 << 30  # address space of the kernel (the whole notebook, training included)
SANDBOX_START_SECONDS = 30     # how long bwrap may take to set the sandbox's root up (it takes milliseconds)


def kernel_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_FROM_NBGRADER if name in os.environ}
    env.update({"BACKPROP_NINJA_NAMES": INSIDE_NAMES, "MPLBACKEND": INLINE_PLOTS, OUTSIDE_VERDICTS_VAR: "1",
                "FONTCONFIG_PATH": INSIDE_FONT_CONFIG,
                # the kernel's parent in its PID namespace is bwrap's init, PID 1: ipykernel then neither polls
                # for its parent nor prints the banner of a kernel started by hand
                "JPY_PARENT_PID": "1"})
    return env


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel is ipykernel in a bwrap sandbox (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # A private folder of nbgrader's for the connection file, which the kernel only gets read-only.
        self.kernel_dir = tempfile.mkdtemp(prefix="backprop-ninja-kernel-")
        self.transport = "ipc"
        self.ip = INSIDE_SOCKETS  # what the kernel binds; nbgrader's side switches to the /proc path once it runs
        self.connection_file = os.path.join(self.kernel_dir, "connection.json")
        self._sandboxed_spec = KernelSpec(
            argv=isolation.kernel_argv(["-f", INSIDE_CONNECTION_FILE], KERNEL_MEMORY_BYTES),
            display_name="Python 3 (sandboxed for grading)", language="python", interrupt_mode="message")

    @property
    def sandbox_uid(self) -> int:
        return isolation.kernel_user()[0]

    @property
    def sandbox_gid(self) -> int:
        return isolation.kernel_user()[1]

    @property
    def kernel_spec(self) -> KernelSpec:
        return self._sandboxed_spec

    def write_connection_file(self, **kwargs) -> None:
        super().write_connection_file(**kwargs)
        if os.geteuid() == 0:  # jupyter_client writes it 0600 as nbgrader's user; the kernel must read it
            os.chown(self.connection_file, self.sandbox_uid, self.sandbox_gid)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        from backprop_ninja.data import names_path

        inner = super().format_kernel_cmd(extra_arguments)
        # names_path() says how to set names.txt up if it is missing
        ro_binds = [(str(names_path()), INSIDE_NAMES), (self.connection_file, INSIDE_CONNECTION_FILE)]
        if os.path.isdir(FONT_CONFIG):  # matplotlib runs fc-list; without a config that prints an error on stderr
            ro_binds.append((FONT_CONFIG, INSIDE_FONT_CONFIG))
        return isolation.bwrap_command(inner, ro_binds=tuple(ro_binds), env=kernel_env(), cwd="/tmp")

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        inside = await self._sandbox_root()
        if inside is not None:  # else bwrap has already failed; nbclient reports the kernel that never answers
            self.ip = inside + INSIDE_SOCKETS

    async def _sandbox_root(self) -> str | None:
        """/proc/<pid>/root of the sandbox (bwrap's child), once bwrap has made it its root; None if bwrap ended."""
        bwrap = self.provisioner.process
        host_root = os.stat("/")
        for _ in range(SANDBOX_START_SECONDS * 100):
            if bwrap.poll() is not None:
                return None
            for child in _children(bwrap.pid):
                root = f"/proc/{child}/root"
                try:
                    seen = os.stat(root)
                except OSError:
                    continue
                if (seen.st_dev, seen.st_ino) != (host_root.st_dev, host_root.st_ino):
                    return root
            await asyncio.sleep(0.01)
        raise RuntimeError(f"bwrap (pid {bwrap.pid}) did not set the kernel's sandbox up within "
                           f"{SANDBOX_START_SECONDS} s")

    def cleanup_ipc_files(self) -> None:
        """Nothing to remove: the sockets were in the sandbox's tmpfs, which ended with it (and a reused pid's
        /proc/<pid>/root would be someone else's)."""

    async def cleanup_resources(self, restart: bool = False) -> None:
        await super().cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self.kernel_dir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: look through every process's parent
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _parent(int(entry)) == pid:
                found.append(int(entry))
        return found


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None
