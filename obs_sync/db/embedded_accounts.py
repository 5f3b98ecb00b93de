"""Who the embedded server runs as, and what that account may reach.

PostgreSQL refuses to run as root: as root the server runs as the owner of an existing
data directory, else as the system user ``obs-sync`` (created when missing), which must be
able to reach the data directory and the wheel's programs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from obs_sync.db.embedded_errors import EmbeddedConfigError

SERVER_ACCOUNT = "obs-sync"  # the account the server runs as when obs-sync runs as root
SERVER_HOME = "/var/lib/obs-sync"  # the account's home: obs-sync's state directory


@dataclass(frozen=True)
class Account:
    """The operating-system account the server runs as, when obs-sync runs as root."""

    name: str
    uid: int
    gid: int

    def groups(self) -> set[int]:
        import grp  # in-function: only a root process running the server needs it

        return {self.gid} | {g.gr_gid for g in grp.getgrall() if self.name in g.gr_mem}


def account(name: str) -> Account:
    entry = pwd.getpwnam(name)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def server_account(directory: Path) -> Account | None:
    """None when obs-sync is not root: the server then runs as this user."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(OSError):
        owner = directory.lstat().st_uid
        if owner != 0:  # an existing data directory keeps its owner
            try:
                return account(pwd.getpwuid(owner).pw_name)
            except KeyError:
                return Account(str(owner), owner, directory.lstat().st_gid)
    try:
        return account(SERVER_ACCOUNT)
    except KeyError:
        pass
    try:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                SERVER_HOME,  # as docs/operations.md creates the account for the service
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "obs-sync embedded PostgreSQL",
                SERVER_ACCOUNT,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise EmbeddedConfigError(
            f"running as root, the embedded PostgreSQL needs an unprivileged account "
            f"{SERVER_ACCOUNT!r} and it could not be created ({first_line(detail)})",
            f"create it (useradd --system {SERVER_ACCOUNT}), or run obs-sync as a normal user",
        ) from error
    return account(SERVER_ACCOUNT)


def may_enter(path: Path, account: Account) -> bool:
    info = path.stat()
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in account.groups():
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def unreachable(path: Path, account: Account) -> Path | None:
    """The first directory on the way to ``path`` that ``account`` cannot enter, if any."""
    for ancestor in reversed(path.parents):
        if not may_enter(ancestor, account):
            return ancestor
    return None


def is_private_dir(path: Path, account: Account | None) -> bool:
    """A real directory (not a link) only its owner, the server's account, can use."""
    try:
        info = path.lstat()
    except OSError:
        return False
    owner = os.geteuid() if account is None else account.uid
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == owner
        and stat.S_IMODE(info.st_mode) & 0o077 == 0
    )


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no output"
