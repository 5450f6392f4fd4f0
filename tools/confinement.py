"""What a sandboxed child does between fork and exec: namespaces, mounts, another user, limits.

This runs in the forked child of :class:`tools.sandbox.Sandbox` (``preexec_fn``), where only async-signal-safe
work is sound: everything is planned in the parent (:class:`Plan`), libc is loaded there, and the child only
makes the calls and reports what it got (:class:`Confined`, through a :class:`Report` pipe) so the parent can
say in the trial what was and was not enforced.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import json
import os
import resource
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MS_STRICTATIME = 1 << 24
_PR_SET_DUMPABLE = 4
_SIOCSIFFLAGS = 0x8914
_IFF_UP_LOOPBACK_RUNNING = 0x1 | 0x8 | 0x40


@dataclass(frozen=True)
class Confined:
    """What the child reports back: whether it is cut from the network, why the namespaces failed, whether its
    processes are counted on their own (a user namespace of the run's own) or why not, and what stopped it."""

    network_isolated: bool = False
    failure: str | None = None
    own_count: bool = False
    user_failure: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Plan:
    """What the child does between fork and exec.

    A user namespace of the run's own, holding only the user it runs as, counts the run's processes apart from
    every other process of that user (``RLIMIT_NPROC``, set after it). Without root it comes first: it grants
    the right to make the others; with root it comes last, once the child is ``nobody``.

    Attributes:
        flags: the mount and network namespaces to enter (``CLONE_*``); 0 for none.
        own_namespace: whether to make the user namespace.
        hidden: folders closed to the sandbox user, each with the folders in it the program needs.
        read_only: folders mounted read-only, each with the mount flags it must keep.
        rlimits: ``(resource, soft, hard)`` to set.
        user: the uid and gid to become (root only).
        then: what runs last (the kernel kills the child when we die; set after the user changed, which
            clears it).
    """

    flags: int
    own_namespace: bool
    hidden: tuple[tuple[str, tuple[str, ...]], ...]
    read_only: tuple[tuple[str, int], ...]
    rlimits: tuple[tuple[int, int, int], ...]
    user: tuple[int, int] | None
    then: Callable[[], None] | None

    def confine(self, report: int) -> None:
        """Run in the child (``preexec_fn``); writes a :class:`Confined` as JSON to the ``report`` pipe."""
        outcome: dict[str, object] = {}
        try:
            if self.own_namespace and self.user is None:
                outcome["user_failure"] = _own_user_namespace()
            outcome["failure"] = self._enter_namespaces()
            outcome["network_isolated"] = bool(self.flags & CLONE_NEWNET) and outcome["failure"] is None
            if self.user is not None:
                os.setgroups([])
                os.setgid(self.user[1])
                os.setuid(self.user[0])
                libc = load_libc()
                if libc is not None:  # the user change made /proc/self root's; its maps are ours to write
                    libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
                if self.own_namespace:
                    outcome["user_failure"] = _own_user_namespace()
            outcome["own_count"] = self.own_namespace and outcome.get("user_failure") is None
            for limit, soft, hard in self.rlimits:
                resource.setrlimit(limit, (soft, hard))
            if self.then is not None:
                self.then()
        except BaseException as exc:
            outcome["error"] = str(exc)
            raise
        finally:
            os.write(report, json.dumps(outcome).encode())

    def _enter_namespaces(self) -> str | None:
        """Enter the planned namespaces; why not, when the kernel refuses. A failure once inside raises."""
        if not self.flags:
            return None
        failure = _unshare(self.flags)
        if failure is not None:
            return failure
        if self.flags & CLONE_NEWNS:
            _mount(None, "/", _MS_REC | _MS_PRIVATE)  # nothing mounted below reaches the host
            for hidden, needed in self.hidden:
                _cover(hidden, needed)
            for folder, flags in self.read_only:
                _mount(folder, folder, _MS_BIND | _MS_REC)
                _mount(None, folder, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | flags)
        if self.flags & CLONE_NEWNET:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", _IFF_UP_LOOPBACK_RUNNING))
        return None


def _own_user_namespace() -> str | None:
    """Enter a new user namespace holding only our uid and gid, as themselves; why not, when refused."""
    failure = _unshare(_CLONE_NEWUSER)
    if failure is None:
        uid, gid = os.getuid(), os.getgid()
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    return failure


def _unshare(flags: int) -> str | None:
    """Enter new namespaces (``CLONE_*`` flags); why not, when the kernel refuses."""
    libc = load_libc()
    assert libc is not None  # no namespace is planned without it
    if libc.unshare(flags) == 0:
        return None
    return (
        f"unshare is not permitted here ({os.strerror(ctypes.get_errno())}: a container without CAP_SYS_ADMIN, "
        "or user namespaces switched off)"
    )


def _cover(hidden: str, needed: tuple[str, ...]) -> None:
    """Cover ``hidden`` with an empty tmpfs and mount the ``needed`` folders in it back where they were."""
    kept = [os.open(folder, os.O_PATH | os.O_DIRECTORY) for folder in needed]  # before they are covered
    _mount("tmpfs", hidden, _MS_NOSUID | _MS_NODEV, fstype="tmpfs", data="mode=0755,size=1m")
    for folder, fd in zip(needed, kept, strict=True):
        os.makedirs(folder, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", folder, _MS_BIND | _MS_REC)
        os.close(fd)


def _mount(source: str | None, target: str, flags: int, *, fstype: str | None = None, data: str | None = None) -> None:
    libc = load_libc()
    assert libc is not None
    encoded = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    if libc.mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"mount {source or ''} on {target}: {os.strerror(number)}")


class Report:
    """A pipe the child writes its :class:`Confined` to before it runs the program (or fails to)."""

    def __enter__(self) -> Report:
        self._read_end, self.fd = os.pipe()
        os.set_blocking(self._read_end, False)
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (self._read_end, self.fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def read(self) -> Confined:
        """What the child wrote: written in one piece before exec, so it is there when Popen returns or raises."""
        try:
            data = os.read(self._read_end, 1 << 16)
        except BlockingIOError:
            return Confined()
        return Confined(**json.loads(data)) if data else Confined()


@functools.cache
def load_libc() -> ctypes.CDLL | None:
    """libc with ``unshare``, ``mount`` and ``prctl`` on Linux, None elsewhere. Loaded in the parent: the child
    only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.unshare.argtypes = [ctypes.c_int]
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    except (OSError, AttributeError):
        return None
    return libc


def mount_flags(folder: Path) -> int:
    """The flags of the mount holding ``folder`` that a read-only remount must keep (a user namespace may not
    drop them)."""
    flags = os.statvfs(folder).f_flag
    kept = {os.ST_NOSUID: _MS_NOSUID, os.ST_NODEV: _MS_NODEV, os.ST_NOEXEC: _MS_NOEXEC}
    kept |= {os.ST_NOATIME: _MS_NOATIME, os.ST_NODIRATIME: _MS_NODIRATIME, os.ST_RELATIME: _MS_RELATIME}
    result = sum(ms for st, ms in kept.items() if flags & st)
    return result if flags & (os.ST_NOATIME | os.ST_RELATIME) else result | _MS_STRICTATIME
