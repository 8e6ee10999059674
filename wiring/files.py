"""Small files a process creates once in its data dir (keys), safely against a concurrent start."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def create_once(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` unless it exists. The file appears complete or not at all, and
    when two processes race (serve and dev-token started together) the first one wins."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    with contextlib.suppress(FileExistsError):  # link() refuses an existing name
        os.link(tmp, path)
    tmp.unlink()
