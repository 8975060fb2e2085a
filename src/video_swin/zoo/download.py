"""HTTP download of one file with the standard library: resumable, checked, atomic, one process at a time.

* Resume: bytes arrive in `DEST.part`; a later call asks for the rest with `Range: bytes=N-` and appends
  when the server answers 206 with a matching `Content-Range` (a 200 starts over, a 416 drops the part).
* Timeout: `timeout` seconds without a byte (connect, headers or body) ends the attempt; what arrived
  stays in the part file for the next call.
* Check: the sha256 of the complete file against the publisher's prefix and/or a full expected digest;
  a mismatching file is deleted, never renamed into place.
* Atomic: the part file is flushed to disk and renamed to DEST only once complete and checked.
* Lock: `file_lock` (an `fcntl.flock` on a lock file) makes concurrent processes take turns.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from video_swin import files

CHUNK = 1 << 20
DEFAULT_TIMEOUT_S = 30.0


class DownloadError(OSError):
    """The file could not be fetched (network, HTTP status, timeout, short body); one line, no URL prefix:
    the caller says which URL."""


class HashMismatchError(ValueError):
    """The downloaded file is not the expected one; it has been deleted."""


def part_path(dest) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def fetch(url, dest, *, sha256_prefix=None, expected_sha256=None, timeout=DEFAULT_TIMEOUT_S, progress=None,
          user_agent="video_swin") -> str:
    """Downloads `url` to `dest` (resuming `dest.part` if present) and returns the file's sha256 (hex).

    sha256_prefix / expected_sha256: the digest must start with / equal them, else `HashMismatchError`
    (the file is removed). progress: a tqdm bar on stderr; None = only when stderr is a terminal.
    Raises `DownloadError` on network failures, keeping the bytes received for the next call.
    """
    dest = Path(dest)
    part = part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _download_part(url, part, timeout, progress, user_agent, allow_restart=True)
    digest = verify(part, sha256_prefix, expected_sha256)
    os.replace(part, dest)
    return digest


def verify(path, sha256_prefix=None, expected_sha256=None) -> str:
    """The file's sha256; if it does not start with `sha256_prefix` or equal `expected_sha256`, the file
    is deleted and `HashMismatchError` raised."""
    digest = files.sha256_of(path)
    problem = None
    if sha256_prefix and not digest.startswith(sha256_prefix.lower()):
        problem = f"expected a sha256 starting with {sha256_prefix}"
    elif expected_sha256 and digest != expected_sha256.lower():
        problem = f"expected sha256 {expected_sha256}"
    if problem:
        Path(path).unlink(missing_ok=True)
        raise HashMismatchError(f"its sha256 is {digest}, {problem}; the file was deleted")
    return digest


def _download_part(url, part, timeout, progress, user_agent, allow_restart):
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    if offset:
        # add_header (not add_unredirected_header): the Range must survive GitHub's redirect to its CDN.
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset and allow_restart:  # the part is not a prefix the server can extend
            part.unlink()
            return _download_part(url, part, timeout, progress, user_agent, allow_restart=False)
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise DownloadError(f"no answer within {timeout:g} s (timed out)") from None
        raise DownloadError(f"unreachable ({_one_line(reason)})") from None
    except TimeoutError:
        raise DownloadError(f"no answer within {timeout:g} s (timed out)") from None
    except OSError as exc:  # connection reset before the headers, and the like
        raise DownloadError(f"unreachable ({_one_line(exc)})") from None

    with response:
        total = None
        if offset and response.status == 206 and _content_range_start(response) == offset:
            mode, total = "ab", _content_range_total(response)
        else:  # a fresh download, or a server that ignored / mangled the Range: start over
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        received = offset
        bar = _progress_bar(total, offset, progress, Path(part).name[: -len(".part")])
        try:
            with open(part, mode) as out:
                try:
                    # read1: whatever has arrived, so a stall loses no byte already received
                    while block := response.read1(CHUNK):
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
                except TimeoutError:
                    raise DownloadError(
                        f"stalled: no data for {timeout:g} s (timed out) after {received} of "
                        f"{total if total is not None else '?'} bytes; they are kept in {part}, run again to resume"
                    ) from None
                except OSError as exc:  # connection reset mid-body
                    raise DownloadError(
                        f"connection lost ({_one_line(exc)}) after {received} of {total if total is not None else '?'}"
                        f" bytes; they are kept in {part}, run again to resume"
                    ) from None
                finally:
                    out.flush()
                    os.fsync(out.fileno())
        finally:
            bar.close()
    if total is not None and received != total:
        # http.client returns a short body silently when the server closes early: only the count tells.
        raise DownloadError(
            f"the connection closed after {received} of {total} bytes; they are kept in {part}, run again to resume"
        )


def _content_range_start(response):
    match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _content_range_total(response):
    match = re.match(r"bytes (\d+)-(\d+)/(\d+)", response.headers.get("Content-Range", ""))
    return int(match.group(3)) if match else None


def _progress_bar(total, initial, progress, label):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                disable=not enabled, file=sys.stderr, leave=False)


@contextlib.contextmanager
def file_lock(path, on_wait=None):
    """Holds an exclusive `flock` on `path` (created if needed) for the block; `on_wait()` is called once
    if another process holds it. The kernel releases the lock if the holder dies, so a crash never leaves
    a stale lock. Without `fcntl` (Windows) there is no lock: concurrent downloads then each write their
    own copy and the last rename wins."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

