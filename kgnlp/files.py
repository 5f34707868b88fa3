"""Crash-safe file writes and the kgnlp home directory.

Every artefact kgnlp writes goes through these helpers: write to a temporary
sibling, fsync, then ``os.replace`` so that a reader (or a process restarted
after ``kill -9``) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "default_home",
    "fsync_dir",
    "load_tensors",
    "recover_dir",
    "sha256_file",
]


def default_home() -> Path:
    """Return ``$KGNLP_HOME`` or ``~/.cache/kgnlp`` (not created)."""
    env = os.environ.get("KGNLP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kgnlp"


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide artefacts from other local users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling and move it into place on success.

    Yields the temporary directory to fill. On success an existing ``final`` is
    replaced (the old copy is removed only after the new one is in place); on an
    exception the temporary directory is deleted and ``final`` is untouched.

    On Linux the two directories are swapped in one step (``renameat2`` with
    ``RENAME_EXCHANGE``), so ``final`` always exists. Elsewhere the swap is two renames;
    a process killed between them leaves the previous copy beside ``final``, and
    :func:`recover_dir` (called here and by readers) puts it back.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        tmp.chmod(0o755)
        yield tmp
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        if final.exists() and _exchange(tmp, final):
            fsync_dir(final.parent)
            shutil.rmtree(tmp, ignore_errors=True)  # it holds the previous copy now
            return
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
        return False  # an old kernel or a file system without the flag: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dir(final: Path) -> bool:
    """Put back the previous copy of ``final`` when a process died in the middle of replacing it.

    Only copies left by a process that no longer runs are restored (a live one is still
    finishing its own swap).

    Args:
        final: a directory written with :func:`atomic_dir`.

    Returns:
        True when a copy was restored.
    """
    final = Path(final)
    if final.exists() or not final.parent.is_dir():
        return False
    olds = [
        p
        for p in final.parent.glob(f".{glob_escape(final.name)}.old-*")
        if p.name.rsplit("-", 1)[-1].isdigit() and not _alive(int(p.name.rsplit("-", 1)[-1]))
    ]
    if not olds:
        return False
    newest = max(olds, key=lambda p: p.stat().st_mtime)
    try:
        os.replace(newest, final)
    except OSError:  # another process restored one first
        return False
    fsync_dir(final.parent)
    return True


def load_tensors(source: Path | bytes, map_location: Any = "cpu") -> Any:
    """Read a ``torch.save`` file that holds only tensors and plain containers (a state dict, a checkpoint).

    ``torch.load(weights_only=True)``: a pickle that names any other callable (code that would run
    on load) is refused instead of executed.

    Args:
        source: the file, or its bytes.
        map_location: where tensors go (``torch.load``'s argument).

    Raises:
        StoreError: the file is unreadable, or holds something besides tensors and plain data.
    """
    import io
    import pickle

    import torch

    from kgnlp.errors import StoreError

    what = "tensor bytes" if isinstance(source, bytes) else str(source)
    try:
        return torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, map_location=map_location,
                          weights_only=True)  # fmt: skip
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise StoreError(f"{what}: not a plain tensor file (refused, nothing was executed): {e}") from e


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
