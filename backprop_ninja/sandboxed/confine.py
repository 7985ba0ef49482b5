"""Linux confinement primitives, through libc and libseccomp with ctypes (no extra Python package).

Used inside the sandbox (host.py, spawner.py) and, without the namespaces, by unisolated workers.
Everything here is loaded before student code runs: a worker needs no file to confine itself.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import resource
import signal

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x08000000, 0x10000000, 0x20000000
CLONE_THREAD = 0x00010000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24

# What student code may not do in a worker: start processes, threads or programs, look into or signal other
# processes, change its view of the system, or reach kernel interfaces a gradient never needs.
DENIED_SYSCALLS = (
    "fork", "vfork", "execve", "execveat",
    "clone", "clone3",  # threads too: a new thread starts with grad mode on, and a thread bomb starves the uid
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "tkill", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsmount", "fspick", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "io_uring_setup", "quotactl", "swapon", "swapoff",
    "reboot", "sethostname", "setdomainname", "acct", "iopl", "ioperm", "syslog",
)


class ConfineError(OSError):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise ConfineError(code, f"{what}: {os.strerror(code)}")


def set_dumpable(on: bool) -> None:
    """Off: no other process of our uid can read our memory or open our /proc files."""
    _libc.prctl(PR_SET_DUMPABLE, int(on), 0, 0, 0)


def die_with_parent() -> None:
    """Get SIGKILL when our parent dies, so nothing outlives the process that started it."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def drop_to_user(uid: int, gid: int) -> None:
    """Root only: become uid/gid for good (all capabilities go with it)."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise ConfineError(errno.EPERM, f"could not become uid {uid}")


# clone(2) by number: glibc's clone() wrapper wants a new stack, and os.fork() cannot take namespace flags
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)
_with_gil = ctypes.PyDLL(None, use_errno=True)  # its calls keep the GIL, as os.fork() does around fork()
_with_gil.syscall.restype = ctypes.c_long
_before_fork = ctypes.pythonapi.PyOS_BeforeFork  # looked up now: the host is locked down when it forks
_after_fork_child = ctypes.pythonapi.PyOS_AfterFork_Child
_after_fork_parent = ctypes.pythonapi.PyOS_AfterFork_Parent


def fork_into_fresh_namespaces() -> int:
    """os.fork(), with the child born in new user, mount, PID and IPC namespaces, PID 1 there: one clone(2)
    where unshare(2) would need a process in between (it moves only the children into a new PID namespace), which
    cost a fork and an exit of the sandbox host's image per box. Python's fork bookkeeping is done around it, as
    os.fork() does it. The child maps our own uid and gid and makes its mounts private. Returns 0 in the child and
    the child's pid in the parent (raises ConfineError if the clone fails)."""
    if _SYS_CLONE is None:
        raise ConfineError(errno.ENOSYS, f"no clone(2) number known for {os.uname().machine}")
    uid, gid = os.getuid(), os.getgid()
    _before_fork()
    pid = _with_gil.syscall(_SYS_CLONE, ctypes.c_ulong(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
                                                         | signal.SIGCHLD), None, None, None, None)
    code = ctypes.get_errno()
    if pid != 0:
        _after_fork_parent()
        if pid < 0:
            raise ConfineError(code, f"clone into fresh namespaces: {os.strerror(code)}")
        return pid
    _after_fork_child()
    set_dumpable(True)  # the uid and gid maps below are /proc files of ours (never the parent's: it stays closed)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    set_dumpable(False)
    return 0


def mount_private_tmp(path: str, size_bytes: int) -> None:
    options = f"size={size_bytes},mode=1777".encode()
    _check(_libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), f"tmpfs on {path}")


def hide(path: str) -> None:
    """Cover a directory with an empty read-only tmpfs (used for /proc: other processes stay unseen)."""
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
    _check(_libc.mount(b"tmpfs", path.encode(), b"tmpfs", flags, b"size=4k,mode=555"), f"hide {path}")


def drop_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable sets (a fresh user namespace grants all)."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(header, data), "drop capabilities")


def apply_limits(memory_bytes: int, cpu_seconds: int, file_bytes: int) -> None:
    """Lower (never raise) the worker's limits; a limit above what we were given stays at what we were given."""
    for which, soft, hard in ((resource.RLIMIT_AS, memory_bytes, memory_bytes),
                              (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 5),
                              (resource.RLIMIT_FSIZE, file_bytes, file_bytes),
                              (resource.RLIMIT_CORE, 0, 0),
                              (resource.RLIMIT_NOFILE, 256, 256)):
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))


MADV_COLLAPSE = 25      # Linux 6.1+: make a range huge pages now, whatever the THP setting
HUGE_PAGE = 2 << 20


def cheaper_forks() -> int:
    """Back this process's large writable anonymous memory (the heap and torch's allocations, ~140 MB) with 2 MiB
    pages, so that each fork copies a few hundred page-table entries instead of tens of thousands. A box costs
    two forks of this process (five when this was written); measured, a fork and exit fell from about 11 ms to
    5 ms of CPU. Best effort: kernels without MADV_COLLAPSE, or with THP disabled, just keep 4 KiB pages (nothing
    else changes). Returns how many 2 MiB ranges were asked for."""
    asked = 0
    try:
        with open("/proc/self/maps") as maps:
            regions = [line.split() for line in maps]
    except OSError:
        return 0
    for fields in regions:
        if "w" not in fields[1] or (len(fields) > 5 and fields[5] != "[heap]"):
            continue  # only private anonymous memory and the heap: file mappings are not copied by fork
        low, high = (int(x, 16) for x in fields[0].split("-"))
        start, end = -(-low // HUGE_PAGE) * HUGE_PAGE, high // HUGE_PAGE * HUGE_PAGE
        if end > start:
            _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_COLLAPSE)
            asked += (end - start) // HUGE_PAGE
    return asked


_blas_single_threaded = False  # True once done in this process: a fork inherits OpenBLAS's thread count


def single_threaded_blas() -> None:
    """Tell numpy's OpenBLAS to use the calling thread only. After a fork it would start its thread pool again on
    the next large product, and once clone is denied that fails by raising SIGINT, which kills the worker.
    (Inside the box OMP_NUM_THREADS=1 says the same; this covers an unisolated worker forked from the grader.)
    Done once per process tree: the sandbox host does it before forking, so its workers skip the 1.5 ms it costs."""
    global _blas_single_threaded
    if _blas_single_threaded:
        return
    import glob

    import numpy

    folder = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(folder, "*openblas*.so*")):
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: this only finds it
        except OSError:
            continue
        for name in ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "scipy_openblas_set_num_threads64_"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(1)
                break
    _blas_single_threaded = True


# ---- seccomp ----

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_NE = 1
_SCMP_CMP_MASKED_EQ = 7


def _scmp_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _load_libseccomp():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


_seccomp = _load_libseccomp()  # loaded now, while files can still be opened


def seccomp_available() -> bool:
    return _seccomp is not None


def forbid_processes_and_escapes(threads: bool = False) -> None:
    """Install the worker's seccomp filter: DENIED_SYSCALLS fail with EPERM, and so do clone and clone3 (no new
    process and no new thread: the worker's own tasks are all it will ever have), and signals may only go to
    ourselves. With `threads` (nbgrader's kernel: ipykernel and zmq need threads, and its results decide no
    points) clone may still make a thread, and clone3 reports ENOSYS so that libc falls back to clone, whose flags
    seccomp can read."""
    if _seccomp is None:
        raise ConfineError(errno.ENOSYS, "libseccomp is not installed")
    lib, ctx = _seccomp, _seccomp.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise ConfineError(errno.ENOMEM, "seccomp_init failed")
    eperm = _scmp_errno(errno.EPERM)

    def deny(name: str, action: int = eperm, *conditions: tuple[int, int, int, int]) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a syscall on this architecture
        array = (_ArgCmp * len(conditions))(*[_ArgCmp(*c) for c in conditions]) if conditions else None
        result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
        if result != 0:
            raise ConfineError(-result, f"seccomp rule for {name}: {os.strerror(-result)}")

    try:
        for name in DENIED_SYSCALLS:
            if not (threads and name in ("clone", "clone3")):
                deny(name)
        if threads:
            deny("clone", eperm, (0, _SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0))  # a new process, not a thread
            deny("clone3", _scmp_errno(errno.ENOSYS))
        me = os.getpid()
        for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            deny(name, eperm, (0, _SCMP_CMP_NE, me, 0))
        result = lib.seccomp_load(ctx)  # also sets no_new_privs
        if result != 0:
            raise ConfineError(-result, f"seccomp_load: {os.strerror(-result)}")
    finally:
        lib.seccomp_release(ctx)
