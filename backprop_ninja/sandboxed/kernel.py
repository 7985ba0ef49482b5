"""The kernel nbgrader runs a submission in, inside bwrap (started by grade/kernel_sandbox.py).

    python -S -s -m sandboxed.kernel UID GID MEMORY_BYTES IPYKERNEL_ARGS...

It drops to UID/GID if it starts as root (bwrap then keeps only CAP_SETUID and CAP_SETGID, for this), confines
itself like a grading worker (an address-space cap of MEMORY_BYTES; seccomp: no fork, no exec, signals only to
itself) except that it may start threads (ipykernel and zmq need them; the kernel's results decide no points),
and becomes ipykernel in this same process (what `python -m ipykernel_launcher IPYKERNEL_ARGS` does). The kit's
package is not in the sandbox, so `backprop_ninja.hidden`, which the hidden test cells import, is registered first as
sandboxed/graded_outside.py: the cells still run, and their outputs are replaced by the grader's verdicts.
"""
from __future__ import annotations

import errno
import os
import sys
import types

CLONE_THREAD = 0x00010000
SCMP_CMP_MASKED_EQ = 7


def register_hidden_hook() -> None:
    """Make `from backprop_ninja.hidden import grade_unit` find graded_outside.grade_unit."""
    from . import graded_outside

    package = types.ModuleType("backprop_ninja", "stand-in: the kit's package is not inside the kernel's sandbox")
    package.__path__ = []  # a package, so that the import system accepts backprop_ninja.hidden below it
    package.hidden = graded_outside
    sys.modules["backprop_ninja"] = package
    sys.modules["backprop_ninja.hidden"] = graded_outside


def forbid_processes() -> None:
    """The worker's seccomp filter (confine.DENIED_SYSCALLS, signals only to itself), but clone may make threads:
    the worker's own filter denies clone and clone3 outright, and ipykernel could not start. clone3 reports ENOSYS,
    so that libc falls back to clone, whose flags seccomp can read."""
    from . import confine

    lib = confine._seccomp
    if lib is None:
        raise confine.ConfineError(errno.ENOSYS, "libseccomp is not installed")
    ctx = lib.seccomp_init(confine._SCMP_ACT_ALLOW)
    if not ctx:
        raise confine.ConfineError(errno.ENOMEM, "seccomp_init failed")
    eperm = confine._scmp_errno(errno.EPERM)

    def deny(name: str, action: int = eperm, *conditions: tuple[int, int, int, int]) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a syscall on this architecture
        array = (confine._ArgCmp * len(conditions))(*[confine._ArgCmp(*c) for c in conditions]) if conditions \
            else None
        result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
        if result != 0:
            raise confine.ConfineError(-result, f"seccomp rule for {name}: {os.strerror(-result)}")

    try:
        for name in confine.DENIED_SYSCALLS:
            if name not in ("clone", "clone3"):
                deny(name)
        deny("clone", eperm, (0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0))  # a new process, not a thread
        deny("clone3", confine._scmp_errno(errno.ENOSYS))
        me = os.getpid()
        for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            deny(name, eperm, (0, confine._SCMP_CMP_NE, me, 0))  # any process but this one
        result = lib.seccomp_load(ctx)  # also sets no_new_privs
        if result != 0:
            raise confine.ConfineError(-result, f"seccomp_load: {os.strerror(-result)}")
    finally:
        lib.seccomp_release(ctx)


def main(argv: list[str]) -> None:
    uid, gid, memory_bytes = int(argv[0]), int(argv[1]), int(argv[2])
    from . import confine

    if os.getuid() == 0:
        confine.drop_to_user(uid, gid)
    confine.die_with_parent()  # after the uid change, which clears it
    confine.apply_limits(memory_bytes, cpu_seconds=24 * 3600, file_bytes=64 << 20)  # time is nbgrader's to limit
    forbid_processes()
    register_hidden_hook()
    # `-m` put the working folder (the private /tmp) first on sys.path; ipykernel_launcher removes it likewise
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.argv = ["ipykernel_launcher", *argv[3:]]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
