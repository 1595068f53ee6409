"""Files a run writes, safe against kill -9 and a full disk.

* :func:`atomic_write_text`: a temporary file in the same folder, fsync, then ``os.replace``;
  a kill at any moment leaves either the old file or the new one, never an empty one.
* :func:`append_jsonl` / :func:`read_jsonl`: rows of JSON, one per line. A kill or a full disk
  can leave a torn last line; readers skip it, and the next append starts on a fresh line.
* :func:`write_failed`: an ``OSError`` while writing becomes one line naming the path, the disk
  (its mount point) and the free space on it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from retrain.errors import RetrainError


class WriteError(RetrainError):
    """A file of the run could not be written (disk full, read-only, permissions)."""


def mount_point(path: Path) -> Path:
    """The mount point (disk) holding ``path`` (or its nearest existing parent)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def disk_nearly_full(path: Path, margin: int = 16 * 2**20) -> bool:
    """True when the disk holding ``path`` has less than ``margin`` bytes free."""
    try:
        return shutil.disk_usage(mount_point(path)).free < margin
    except OSError:
        return False


def write_failed(path: Path, error: OSError, what: str = "", kept: str = "") -> WriteError:
    """One line: what could not be written where, why, the disk and its free space, and what is kept."""
    disk = mount_point(path)
    try:
        free = f"{shutil.disk_usage(disk).free / 2**20:,.0f} MiB free"
    except OSError:
        free = "free space unknown"
    reason = "no space left on device" if error.errno in (errno.ENOSPC, errno.EDQUOT) else \
        (error.strerror or str(error)).lower()
    return WriteError(f"could not write {what or 'file'} {path}: {reason} (disk {disk}: {free}). "
                      f"{kept + ' ' if kept else ''}Free space (or choose another [logging] log_dir) and "
                      "continue with --resume latest.")


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one step (a kill leaves the old or the new file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON object rows of ``path``; lines that are not one (a torn tail) are skipped."""
    out = []
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


def ends_torn(path: Path) -> bool:
    """True when ``path`` is non-empty and does not end with a newline (a torn last line)."""
    try:
        with Path(path).open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows (one line each); a torn last line left by a kill is closed off first."""
    path = Path(path)
    try:
        with path.open("a") as f:
            if ends_torn(path):
                f.write("\n")
            f.write("".join(json.dumps(row) + "\n" for row in rows))
    except OSError as e:
        raise write_failed(path, e, "rows to") from None
