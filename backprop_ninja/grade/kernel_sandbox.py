"""The kernel nbgrader runs a submission in, sandboxed like the grader's workers (trusted side).

SandboxedKernelManager is a jupyter_client kernel manager whose kernel is ipykernel inside bwrap
(isolation.bwrap_command), started by sandboxed/kernel.py:

- it runs as isolation.SANDBOX_UID/GID when nbgrader runs as root (in a user namespace of nbgrader's uid otherwise);
- no network, and its own PID, IPC and mount namespaces: it sees /usr, the Python runtime and site-packages
  read-only, names.txt read-only, a private /tmp (its working folder) and one folder of its own, and nothing else:
  not the course folder, the other submissions, gradebook.db or the kit's sources;
- it talks to nbgrader over jupyter_client's "ipc" transport: unix sockets in that folder of its own, bound
  read-write at the same path (with no network shared, TCP on localhost would not reach it);
- interrupts go as messages on the control channel: nbgrader cannot signal a process in another PID namespace.

nbgrader_plugins.SandboxedExecute uses it unless isolation is off.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from backprop_ninja.grade import isolation
from backprop_ninja.hidden import OUTSIDE_VERDICTS_VAR  # tells the hidden-test hook that it is display only

INSIDE_NAMES = "/sandbox/names.txt"  # directly in /sandbox: a folder bwrap makes for a bind is 0700
# bwrap makes /etc 0700 for its ld.so.cache bind, so fontconfig's files go elsewhere, named by FONTCONFIG_PATH
FONT_CONFIG, INSIDE_FONT_CONFIG = "/etc/fonts", "/sandbox/fontconfig"
# Passed into the kernel from nbgrader's environment (bwrap clears the rest): nbgrader's marker that it is grading,
# and the notebook's training-schedule switch. Anything else the kernel needs is set explicitly in kernel_env().
PASSED_FROM_NBGRADER = ("NBGRADER_EXECUTION", "BACKPROP_NINJA_STEPS")
# The kernel's folder is bound at the same path inside, so its parents must be traversable there: inside, /tmp is the
# sandbox's own tmpfs (mode 1777), while parents bwrap makes for a deeper path (TMPDIR, say) are 0700, root's.
KERNEL_DIR_PARENT = "/tmp"
INLINE_PLOTS = "module://matplotlib_inline.backend_inline"     # what an ordinary ipykernel uses: plots in outputs
KERNEL_MEMORY_BYTES = 8 << 30  # address space of the kernel (the whole notebook, training included)


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
        # The kernel's own folder: its connection file and sockets. Owned by the sandbox uid, so the kernel can
        # make its sockets there; the realpath, because jupyter_client writes realpaths into the command line.
        self.kernel_dir = os.path.realpath(tempfile.mkdtemp(prefix="backprop-ninja-kernel-", dir=KERNEL_DIR_PARENT))
        if os.geteuid() == 0:
            os.chown(self.kernel_dir, self.sandbox_uid, self.sandbox_gid)
        self.transport = "ipc"
        self.ip = os.path.join(self.kernel_dir, "kernel")  # ipc sockets are <ip>-<port>
        self.connection_file = os.path.join(self.kernel_dir, "connection.json")
        self._sandboxed_spec = KernelSpec(
            argv=isolation.kernel_argv(["-f", "{connection_file}"], KERNEL_MEMORY_BYTES),
            display_name="Python 3 (sandboxed for grading)", language="python", interrupt_mode="message")

    @property
    def sandbox_uid(self) -> int:
        return isolation.sandbox_user()[0]

    @property
    def sandbox_gid(self) -> int:
        return isolation.sandbox_user()[1]

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
        ro_binds = [(str(names_path()), INSIDE_NAMES)]  # names_path() says how to set names.txt up if it is missing
        if os.path.isdir(FONT_CONFIG):  # matplotlib runs fc-list; without a config that prints an error on stderr
            ro_binds.append((FONT_CONFIG, INSIDE_FONT_CONFIG))
        return isolation.bwrap_command(inner, ro_binds=tuple(ro_binds),
                                       rw_binds=((self.kernel_dir, self.kernel_dir),), env=kernel_env(), cwd="/tmp")

    async def cleanup_resources(self, restart: bool = False) -> None:
        await super().cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self.kernel_dir, ignore_errors=True)
