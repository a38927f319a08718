"""The seccomp filter every sandboxed process runs under, compiled with libseccomp.

Owns: the list of refused system calls and their compilation to the BPF program that
bubblewrap loads (``--seccomp FD``) just before it executes the sandboxed command.

The list follows what containerd's default profile and Flatpak refuse to an unprivileged
container: changing mounts and namespaces, kernel keyrings, BPF, perf events, loading
kernels or modules, rebooting, setting clocks, raw I/O ports, userfaultfd, and the
terminal-injection ioctls. Every other call is allowed, so R, Python, Java (Spark) and
compilers work as usual. Refused calls fail with EPERM (the program sees "Operation not
permitted"); calls of a foreign architecture (32-bit ``int 0x80``) kill the process.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

REFUSED: tuple[str, ...] = (
    # mounts and namespaces
    "mount", "umount", "umount2", "pivot_root", "chroot", "setns", "unshare",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "open_by_handle_at", "name_to_handle_at",
    # kernel keyrings, BPF, perf, tracing the kernel
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "lookup_dcookie",
    "fanotify_init", "userfaultfd",
    # kernels, modules, the machine
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
    "iopl", "ioperm", "uselib", "nfsservctl", "_sysctl",
    # io_uring bypasses these filters for the calls it carries
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip

# ioctl(fd, TIOCSTI) pushes input into a terminal; TIOCLINUX can do the same on a console.
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
# clone/clone3/unshare with a new user namespace: bubblewrap's --disable-userns also stops
# it; refusing it here keeps the promise when that option is missing.
_CLONE_NEWUSER = 0x10000000


@functools.cache
def compiled() -> bytes:
    """The BPF program (bytes), built once per hub process."""
    import pyseccomp as sc

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in REFUSED:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a system call on this architecture
    for req in (_TIOCSTI, _TIOCLINUX):
        f.add_rule(sc.ERRNO(errno.EPERM), "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, req))
    f.add_rule(
        sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_NEWUSER, _CLONE_NEWUSER)
    )
    # clone3 passes its flags in a struct a filter cannot read: refuse it with ENOSYS, which
    # makes glibc fall back to clone (as Docker and Flatpak do).
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def program_fd() -> int:
    """A fresh readable fd holding the program (bubblewrap reads it to the end)."""
    data = compiled()
    fd = os.memfd_create("rsparkhub-seccomp", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
