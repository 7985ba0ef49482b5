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

import os
import resource
import sys
import types

KERNEL_TASKS = 512  # threads and processes of the kernels' user; one ipykernel uses about a dozen


def register_hidden_hook() -> None:
    """Make `from backprop_ninja.hidden import grade_unit` find graded_outside.grade_unit."""
    from . import graded_outside

    package = types.ModuleType("backprop_ninja", "stand-in: the kit's package is not inside the kernel's sandbox")
    package.__path__ = []  # a package, so that the import system accepts backprop_ninja.hidden below it
    package.hidden = graded_outside
    sys.modules["backprop_ninja"] = package
    sys.modules["backprop_ninja.hidden"] = graded_outside


def main(argv: list[str]) -> None:
    uid, gid, memory_bytes = int(argv[0]), int(argv[1]), int(argv[2])
    from . import confine

    if os.getuid() == 0:
        confine.drop_to_user(uid, gid)
        # a user of the kernels' own (grade/isolation.py KERNEL_UID): its tasks, all kernels' together, are capped
        resource.setrlimit(resource.RLIMIT_NPROC, (KERNEL_TASKS, KERNEL_TASKS))
    confine.die_with_parent()  # after the uid change, which clears it
    confine.apply_limits(memory_bytes, cpu_seconds=24 * 3600, file_bytes=64 << 20)  # time is nbgrader's to limit
    confine.forbid_processes_and_escapes(threads=True)
    register_hidden_hook()
    # `-m` put the working folder (the private /tmp) first on sys.path; ipykernel_launcher removes it likewise
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.argv = ["ipykernel_launcher", *argv[3:]]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
