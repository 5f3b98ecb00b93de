"""Where the embedded server keeps its data and its socket, and what is refused there.

Data: ``$OBS_SYNC_DATA_DIR/pg``, else ``$XDG_DATA_HOME/obs-sync/pg``, else
``~/.local/share/obs-sync/pg`` (as root: ``/var/lib/obs-sync/pg``). The socket: in the data
directory (0700), or, when that path is too long for a socket, in a fresh 0700 directory
under ``$XDG_RUNTIME_DIR`` or the system temp directory. Nothing outside the data
directory is changed, and a data directory that is a symbolic link is refused.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from obs_sync.db.embedded_accounts import Account, is_private_dir, unreachable
from obs_sync.db.embedded_errors import EmbeddedConfigError

DATA_DIR_ENV = "OBS_SYNC_DATA_DIR"
ROOT_DATA_HOME = Path("/var/lib/obs-sync")
SOCKET_NAME = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux, the final NUL included.
MAX_SOCKET_PATH = 107


def data_dir() -> Path:
    """The server's data directory (not created here)."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser() / "pg"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    if xdg:
        return Path(xdg) / "obs-sync" / "pg"
    if os.geteuid() == 0:
        # root's home is private (0700); the unprivileged server account could not reach it.
        return ROOT_DATA_HOME / "pg"
    return Path.home() / ".local" / "share" / "obs-sync" / "pg"


def old_root_data() -> Path | None:
    """Data an older obs-sync kept in root's home, which the server can no longer reach."""
    if os.geteuid() != 0 or os.environ.get(DATA_DIR_ENV, "").strip():
        return None
    if os.environ.get("XDG_DATA_HOME", "").strip():
        return None
    old = Path.home() / ".local" / "share" / "obs-sync" / "pg"
    new = data_dir()
    if (old / "PG_VERSION").exists() and not (new / "PG_VERSION").exists():
        return old
    return None


def prepare_data_dir(directory: Path, account: Account | None) -> None:
    """Check (and create) the data directory; change nothing outside it."""
    if directory.is_symlink():
        raise EmbeddedConfigError(
            f"the embedded PostgreSQL data directory {directory} is a symbolic link, which "
            "obs-sync refuses (it would change the link's target)",
            f"set {DATA_DIR_ENV} so that DIR/pg is the real directory",
        )
    if account is not None:
        blocked = unreachable(directory, account)
        if blocked is not None:
            mode = stat.S_IMODE(blocked.stat().st_mode)
            raise EmbeddedConfigError(
                f"running as root, the embedded PostgreSQL runs as user {account.name} "
                f"(PostgreSQL refuses root), who cannot enter {blocked} (mode {mode:04o}); "
                "obs-sync changes nothing outside its data directory",
                f"set {DATA_DIR_ENV} to a directory {account.name} can reach, e.g. "
                f"{ROOT_DATA_HOME}, or run obs-sync as a normal user",
            )
    if not directory.exists():
        directory.mkdir(mode=0o700)
        if account is not None:
            os.chown(directory, account.uid, account.gid, follow_symlinks=False)
        return
    if not directory.is_dir():
        raise EmbeddedConfigError(
            f"the embedded PostgreSQL data directory {directory} is not a directory",
            f"move it away, or set {DATA_DIR_ENV} to another directory",
        )
    info = directory.lstat()
    expected = os.geteuid() if account is None else account.uid
    if account is not None and info.st_uid == 0 and not any(directory.iterdir()):
        os.chown(directory, account.uid, account.gid, follow_symlinks=False)  # made by hand
    elif info.st_uid != expected:
        raise EmbeddedConfigError(
            f"the embedded PostgreSQL data directory {directory} belongs to uid "
            f"{info.st_uid}, not to uid {expected} that runs the server",
            f"set {DATA_DIR_ENV} to a directory of your own",
        )


def runtime_base(account: Account | None) -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if account is None and runtime and is_private_dir(Path(runtime), None):
        return Path(runtime)
    return Path(tempfile.gettempdir())


def socket_dir_for(directory: Path, account: Account | None, previous: Path | None) -> Path:
    """The data directory when the socket path fits; else a private directory elsewhere."""
    if len(os.fsencode(directory / SOCKET_NAME)) <= MAX_SOCKET_PATH:
        return directory
    if previous is not None and previous != directory and is_private_dir(previous, account):
        return previous  # keeps the URL of a restarted server
    base = runtime_base(account)
    created = Path(tempfile.mkdtemp(prefix="obs-sync-pg-", dir=base))  # mode 0700
    if account is not None:
        os.chown(created, account.uid, account.gid, follow_symlinks=False)
    if len(os.fsencode(created / SOCKET_NAME)) > MAX_SOCKET_PATH:
        created.rmdir()
        raise EmbeddedConfigError(
            f"no directory for the embedded PostgreSQL's socket: {base} is too deep",
            f"set TMPDIR to a short directory, or set {DATA_DIR_ENV} to a shorter path",
        )
    return created


def postmaster(directory: Path) -> list[str]:
    try:
        return (directory / "postmaster.pid").read_text().splitlines()
    except OSError:
        return []


def server_pid(directory: Path) -> int | None:
    """The pid of the server running in ``directory``, or None (also for a stale pid file)."""
    try:
        pid = int((directory / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by another user (the server drops root)
    return pid
