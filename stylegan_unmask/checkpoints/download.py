"""Download weight files into a cache: progress bar, SHA-256, atomic, resumable.

``fetch(url, filename, sha256, cache_subdir)`` returns the path of a local copy:

1. a file called ``filename`` in one of the ``search_dirs`` (for networks: the
   repository's ``checkpoints/`` folder) is used as is;
2. else ``<cache root>/<cache_subdir>/<filename>`` if it exists;
3. else the file is downloaded to ``<filename>.part`` in that folder while its
   SHA-256 is computed on the fly, checked, and only then renamed into place
   with ``os.replace`` (atomic), so a visible file is always complete.

An interrupted download leaves ``.part`` behind; the next call resumes it with
an HTTP ``Range`` request when the server answers ``206``, and starts over when
it does not. A lock file (``<filename>.lock``, kept) makes concurrent processes
wait for one another instead of writing the same ``.part``.

Cache root: the ``cache_dir`` argument, else ``$STYLEGAN_UNMASK_CACHE``, else
``~/.cache/stylegan-unmask``. Only the standard library is used (urllib).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

from tqdm import tqdm

from ..errors import DownloadError

__all__ = [
    "CACHE_ENV",
    "cache_root",
    "cache_folder",
    "repo_checkpoints_dir",
    "fetch",
    "sha256_file",
    "url_filename",
    "manual_download_instructions",
]

CACHE_ENV = "STYLEGAN_UNMASK_CACHE"
_CHUNK = 1 << 20
_USER_AGENT = "stylegan-unmask/0.1 (+urllib)"
PathLike = Union[str, Path]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_root(cache_dir: Optional[PathLike] = None) -> Path:
    """The cache root: ``cache_dir``, else ``$STYLEGAN_UNMASK_CACHE``, else ``~/.cache/stylegan-unmask``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "stylegan-unmask"


def cache_folder(cache_subdir: str = "checkpoints", cache_dir: Optional[PathLike] = None) -> Path:
    return cache_root(cache_dir) / cache_subdir


def repo_checkpoints_dir() -> Optional[Path]:
    """``<repository>/checkpoints`` when running from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    if (root / "setup.py").is_file() and (root / "stylegan_unmask").is_dir():
        return root / "checkpoints"
    return None


def sha256_file(path: PathLike, chunk: int = _CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def url_filename(url: str) -> str:
    """A cache file name for an arbitrary URL: a short URL hash + the URL's base name (sanitised)."""
    base = urllib.request.urlparse(url).path.rstrip("/").rsplit("/", 1)[-1] or "download"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", urllib.request.unquote(base))[-120:]
    return f"{hashlib.sha1(url.encode('utf-8')).hexdigest()[:8]}-{base}"


def manual_download_instructions(url: str, filename: str, folders: Sequence[Path]) -> str:
    places = "\n".join(f"    {Path(folder) / filename}" for folder in folders)
    return (
        f"To install it by hand, download\n    {url}\n"
        f"(e.g. in a browser or with `curl -L -o {filename} '{url}'`) and save it as one of\n{places}"
    )


class _FileLock:
    """An exclusive advisory lock on ``path`` (released by the OS if the process dies)."""

    def __init__(self, path: Path, log: Callable[[str], None], what: str):
        self.path = path
        self.log = log
        self.what = what
        self.fd: Optional[int] = None

    def _try_lock(self) -> bool:
        if os.name == "nt":  # pragma: no cover - exercised on Windows only
            import msvcrt

            try:
                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                return False
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def __enter__(self) -> "_FileLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        waited = False
        while not self._try_lock():
            if not waited:
                self.log(f"Waiting for another process that is downloading {self.what} (lock: {self.path}) ...")
                waited = True
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        try:
            if os.name == "nt":  # pragma: no cover
                import msvcrt

                msvcrt.locking(self.fd, msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None


class _Incomplete(Exception):
    """The connection ended before the whole file arrived (the .part is kept for resuming)."""


def _content_range_start(value: Optional[str]) -> Optional[int]:
    match = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(match.group(1)) if match else None


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _download_to_part(url: str, part: Path, filename: str, progress: bool, timeout: float,
                      log: Callable[[str], None]) -> str:
    """Fill ``part`` with the file at ``url`` (resuming if possible); return its SHA-256."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # our partial file is not a prefix of what the server has
            log(f"Discarding the partial download {part} (the server rejected resuming it); starting over.")
            part.unlink()
            offset = 0
            response = _open(url, 0, timeout)
        else:
            raise
    with response:
        status = getattr(response, "status", None) or response.getcode()
        if offset and status == 206 and _content_range_start(response.headers.get("Content-Range")) == offset:
            mode = "ab"
            log(f"Resuming the download of {filename} at {offset / 2**20:.1f} MiB.")
        else:
            if offset:
                log(f"The server does not support resuming; downloading {filename} from the start.")
            mode, offset = "wb", 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None

        digest = hashlib.sha256()
        if offset:
            with open(part, "rb") as existing:
                for block in iter(lambda: existing.read(_CHUNK), b""):
                    digest.update(block)
        received = offset
        with open(part, mode) as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=filename, disable=not progress, file=sys.stderr, dynamic_ncols=True, miniters=1,
        ) as bar:
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    if total is not None and received != total:
        raise _Incomplete(f"received {received:,} of {total:,} bytes")
    return digest.hexdigest()


def _describe_error(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        if isinstance(reason, socket.gaierror):
            return f"the host name could not be resolved (offline?): {reason}"
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return "the connection timed out"
        return f"could not connect (offline?): {reason}"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "the connection timed out"
    if isinstance(error, http.client.IncompleteRead):
        return "the connection closed before the whole file arrived"
    return f"{type(error).__name__}: {error}"


def fetch(
    url: str,
    filename: str,
    sha256: Optional[str] = None,
    cache_subdir: str = "checkpoints",
    *,
    cache_dir: Optional[PathLike] = None,
    search_dirs: Iterable[PathLike] = (),
    local_names: Iterable[str] = (),
    progress: bool = True,
    timeout: float = 60.0,
    reference_sha256: Optional[str] = None,
    reference_source: Optional[str] = None,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Return a local path of ``url``'s file, downloading it into the cache if needed.

    ``sha256`` (hex) is enforced: on mismatch the download is deleted and
    :class:`DownloadError` is raised. With ``sha256=None`` the computed hash is
    printed and the file is reported as unverified (compared with
    ``reference_sha256`` when given). Any failure raises :class:`DownloadError`
    whose message says where to put a manually downloaded copy.
    """
    if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise ValueError(f"fetch: invalid file name {filename!r}")
    search = [Path(d) for d in search_dirs]
    for folder in search:
        for name in (filename, *local_names):
            candidate = folder / name
            if candidate.is_file():
                return candidate

    folder = cache_folder(cache_subdir, cache_dir)
    target = folder / filename
    if target.is_file():
        return target
    instructions = manual_download_instructions(url, filename, [*search, folder])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"Cannot create the cache folder {folder} ({e}); set {CACHE_ENV} to a writable "
                            f"folder.\n{instructions}") from None
    part = folder / (filename + ".part")
    with _FileLock(folder / (filename + ".lock"), log, filename):
        if target.is_file():  # another process finished it while we waited
            return target
        log(f"Downloading {url}\n  -> {target}")
        try:
            actual = _download_to_part(url, part, filename, progress, timeout, log)
        except _Incomplete as e:
            raise DownloadError(
                f"The download of {filename} from {url} was interrupted ({e}). The partial file is kept at "
                f"{part}; run the command again to resume it.\n{instructions}"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            kept = part.exists() and part.stat().st_size > 0
            note = f" The partial file is kept at {part}; running again resumes it." if kept else ""
            if part.exists() and not kept:
                part.unlink()
            raise DownloadError(
                f"Could not download {filename} from {url}: {_describe_error(e)}.{note}\n{instructions}"
            ) from None
        if sha256 is not None and actual.lower() != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"The download of {filename} from {url} is corrupt or not the expected file: its SHA-256 is "
                f"{actual}, expected {sha256.lower()}. It was deleted.\n{instructions}"
            )
        if sha256 is None:
            message = (f"SHA-256 of {filename}: {actual} (unverified: no checksum is published for this file; "
                       f"compare it with a trusted source if it matters to you)")
            if reference_sha256:
                same = actual.lower() == reference_sha256.lower()
                message += (f"; it {'matches' if same else 'does NOT match'} the hash listed by "
                            f"{reference_source or 'a public mirror'}")
            log(message)
        os.replace(part, target)
    return target
