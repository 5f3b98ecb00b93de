"""Reading the configuration file: a regular file of bounded size, UTF-8 text."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from obs_sync.config.errors import ConfigError

# A fixed limit of the file itself, checked before anything in it is trusted (so it cannot
# be a key of it): a real configuration is a few KiB.
MAX_CONFIG_BYTES = 1024 * 1024


def read_config_text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_CONFIG_BYTES of UTF-8, else ConfigError.

    Opened non-blocking and checked with fstat first: a FIFO or a device (``/dev/zero``,
    ``/dev/urandom``) would otherwise block or never end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            kind = "a directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "a device or FIFO"
            raise ConfigError(f"is {kind}, not a regular file: give the path of a YAML file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"is larger than {MAX_CONFIG_BYTES // 1024} KiB, the limit for a configuration "
            "file; is this the right file?"
        )
    if b"\x00" in raw:
        raise ConfigError("is not a text file (it contains NUL bytes); give a YAML file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"is not UTF-8 text (invalid byte at offset {error.start}); save it as UTF-8"
        ) from error
