"""A preset by name or by folder: `resolve_preset(name_or_path) -> Path`, `load_preset`, `from_preset`.

Every entry point that takes a preset (the Python API, `VideoClassifier`, each command's `--preset`) goes
through `resolve_preset`:

* an existing path is a preset folder, as before (a folder wins over a registered name of the same spelling);
* a registered name (`registry.py`; `video-swin presets` lists them) is served from the cache, or on
  first use downloaded, checked, converted by `checkpoints.convert` and cached;
* anything else is refused in one line naming the closest registered name.

The cache (`VIDEO_SWIN_HOME`, default `$XDG_CACHE_HOME/video_swin` or `~/.cache/video_swin`)::

    presets/<name>/            the converted preset (written atomically by the converter)
    downloads/<file>.part      a download in progress (resumed by the next call)
    downloads/<file>           a complete, checked download not yet converted (removed once converted)
    records/<name>.json        the sha256 and size of the first download of <name>
    locks/<name>.lock          held while <name> is fetched: concurrent processes download it once

Checks: torchvision's files carry their sha256 prefix in their name and must match it. The official model
zoo publishes no checksum: the first download is trusted (its sha256 is recorded in `records/` and in the
preset's metadata) and every later download of that name (after `download --force`, or a deleted preset)
must have the same sha256. The record lives in the cache: a cleared cache trusts the next first download.

Environment: `VIDEO_SWIN_OFFLINE=1` never touches the network (a name not cached is one error line);
`VIDEO_SWIN_ZOO_URL_BASE=http://host:port/prefix` fetches every registered file from a mirror serving the
same paths (tests, air-gapped mirrors); `VIDEO_SWIN_ZOO_TIMEOUT` (seconds, default 30) bounds each wait.
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import sys
import urllib.parse
from pathlib import Path

from video_swin import files
from video_swin.zoo import download, registry

HOME_ENV = "VIDEO_SWIN_HOME"
OFFLINE_ENV = "VIDEO_SWIN_OFFLINE"
URL_BASE_ENV = "VIDEO_SWIN_ZOO_URL_BASE"
TIMEOUT_ENV = "VIDEO_SWIN_ZOO_TIMEOUT"
# The files that make a preset folder complete: models/presets.py's CONFIG_FILE and WEIGHTS_FILE, spelt out
# because importing that module imports Keras, and `video-swin presets` must answer without it.
PRESET_FILES = ("config.json", "model.weights.h5")


class ZooError(ValueError):
    """A name that is not registered, a download that is not the published file, a conversion that
    failed; one line."""


def zoo_home() -> Path:
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "video_swin"


def is_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def timeout_s() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return download.DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        raise ZooError(f"{TIMEOUT_ENV}={value!r}: expected a number of seconds") from None
    if seconds <= 0:
        raise ZooError(f"{TIMEOUT_ENV}={value!r}: expected a positive number of seconds")
    return seconds


def url_for(entry: registry.Entry) -> str:
    """The URL to fetch: the registry's, or its path under `VIDEO_SWIN_ZOO_URL_BASE`."""
    base = os.environ.get(URL_BASE_ENV)
    if not base:
        return entry.url
    return base.rstrip("/") + urllib.parse.urlsplit(entry.url).path


def preset_dir(name: str) -> Path:
    """Where the registered `name` lives once resolved (whether or not it is there yet)."""
    entry = _entry(name)
    if entry.package_path:
        return Path(__file__).resolve().parent / entry.package_path
    return zoo_home() / "presets" / entry.name


def is_cached(name: str) -> bool:
    return _is_complete(preset_dir(name))


def resolve_preset(name_or_path, *, force=False, progress=None, log=None) -> Path:
    """The preset folder for a folder path or a registered name (downloaded and converted on first use).

    force: fetch and convert a registered name again even if cached. progress: the download's progress
    bar (None: when stderr is a terminal). log: receives a line per step (downloading, converting, waiting
    for another process); default: stderr when it is a terminal, else nothing, so that in scripts and
    logs stderr carries only the one error line of a failure.
    Raises `ZooError` (unknown name, wrong file, failed conversion) or `download.DownloadError`
    (offline, unreachable, HTTP error, timeout), each one line naming the URL and the manual route.
    """
    if isinstance(name_or_path, os.PathLike):
        return Path(name_or_path)
    text = str(name_or_path)
    entry = registry.get(text)
    if entry is None or Path(text).exists():
        if entry is None and not Path(text).exists() and _looks_like_a_name(text):
            raise ZooError(_unknown_name_message(text))
        return Path(text)
    return _resolve_entry(entry, force=force, progress=progress, log=log or _terminal_log)


def download_preset(name, *, force=False, progress=None, log=None) -> Path:
    """Fetches and converts a registered name now (for machines that go offline later); returns its folder."""
    if registry.get(str(name)) is None:
        raise ZooError(_unknown_name_message(str(name)))
    return resolve_preset(str(name), force=force, progress=progress, log=log)


def load_preset(name_or_path):
    """`models.presets.load_preset` of the resolved folder (a `Preset` passes through unchanged)."""
    if type(name_or_path).__name__ == "Preset":  # spares the Keras import when resolution fails
        from video_swin.models import presets

        if isinstance(name_or_path, presets.Preset):
            return name_or_path
    path = resolve_preset(name_or_path)
    from video_swin.models import presets

    return presets.load_preset(path)


def from_preset(name_or_path, precision=None):
    """The classifier (or the backbone, for a preset without head) of a preset folder or registered name,
    with its weights. It takes (B, T, H, W, 3) float32 normalised pixels and returns logits (or features).
    precision: see `models.presets.from_preset`.

    Applies `video_swin.runtime.configure()` first (an entry point of the package)."""
    from video_swin import runtime

    runtime.configure()
    path = resolve_preset(name_or_path)
    from video_swin.models import presets

    return presets.from_preset(path, precision=precision)


def list_presets() -> list[dict]:
    """Every registered name with its facts and cache state (reads no network, imports no Keras)."""
    rows = []
    for entry in registry.ENTRIES:
        record = _read_record(entry.name)
        size_mib, size_note = entry.size_mib, "published" if entry.size_published else "estimated"
        if record.get("bytes"):
            size_mib, size_note = record["bytes"] / 2**20, "downloaded"
        top1, top5 = entry.top1, entry.top5
        if entry.package_path:
            top1 = _package_top1(entry)
        rows.append({
            "name": entry.name, "source": entry.source, "variant": entry.variant, "window": list(entry.window),
            "classes": entry.classes, "dataset": entry.dataset, "pretrain": entry.pretrain, "top1": top1,
            "top5": top5, "accuracy_source": entry.accuracy_source, "size_mib": size_mib, "size": size_note,
            "url": entry.url, "sha256_prefix": entry.sha256_prefix,
            "cached": "package" if entry.package_path else is_cached(entry.name), "path": str(preset_dir(entry.name)),
        })
    return rows


def _resolve_entry(entry, *, force, progress, log) -> Path:
    target = preset_dir(entry.name)
    if entry.package_path:
        return target
    if _is_complete(target) and not force:
        return target
    url = url_for(entry)
    manual = f"fetch {url} by hand and run `video-swin convert {entry.file_name} {target}`"
    if is_offline():
        raise download.DownloadError(
            f"{entry.name} is not in the cache ({target}) and {OFFLINE_ENV}=1 forbids downloading it; {manual}"
        )
    home = zoo_home()
    with download.file_lock(home / "locks" / f"{entry.name}.lock",
                            on_wait=lambda: log(f"video-swin: waiting for another process fetching {entry.name}")):
        if _is_complete(target) and not force:  # the process we waited for has done it
            return target
        checkpoint = home / "downloads" / entry.file_name
        record = _read_record(entry.name)
        digest, check = _obtain(entry, url, checkpoint, record, manual, progress, log)
        log(f"video-swin: converting {entry.file_name} into {target}")
        zoo_metadata = {
            "name": entry.name, "url": url, "registry_url": entry.url, "sha256": digest, "sha256_check": check,
            "published_top1": entry.top1, "published_top5": entry.top5, "accuracy_source": entry.accuracy_source,
        }
        _convert(entry, checkpoint, target, zoo_metadata)
        if not record:
            _write_record(entry, url, checkpoint, digest)
        checkpoint.unlink(missing_ok=True)
    return target


def _obtain(entry, url, checkpoint, record, manual, progress, log):
    """The checked checkpoint file: a complete download left by a failed conversion, or a fresh one."""
    expected = record.get("sha256")
    checks = []
    if entry.sha256_prefix:
        checks.append(f"starts with {entry.sha256_prefix}, the prefix in the publisher's file name")
    if expected:
        checks.append(f"equals the sha256 recorded at the first download ({record.get('first_downloaded')})")
    check = ("sha256 " + " and ".join(checks) if checks
             else "none published: first download, its sha256 recorded (trust on first use)")
    mismatch_hint = ""
    if expected and not entry.sha256_prefix:
        mismatch_hint = (f" (recorded at the first download, {record.get('first_downloaded')}, in "
                         f"{_record_path(entry.name)}: delete that file to accept a file the publisher replaced)")
    try:
        if checkpoint.is_file():
            digest = download.verify(checkpoint, entry.sha256_prefix, expected)
        else:
            size = f"{entry.size_mib:.0f} MiB" if entry.size_mib else "size unknown"
            log(f"video-swin: downloading {entry.name} ({size}) from {url}")
            digest = download.fetch(url, checkpoint, sha256_prefix=entry.sha256_prefix, expected_sha256=expected,
                                    timeout=timeout_s(), progress=progress, user_agent=_user_agent())
    except download.HashMismatchError as exc:
        raise ZooError(f"{entry.name}: {entry.file_name} from {url} is not the published file: {exc}{mismatch_hint}"
                       ) from None
    except download.DownloadError as exc:
        raise download.DownloadError(f"{entry.name}: cannot download {url}: {exc}; {manual}") from None
    return digest, check


def _convert(entry, checkpoint, target, zoo_metadata):
    from video_swin.checkpoints import checkpoint_io, convert

    try:
        convert.convert_checkpoint(
            checkpoint, target, variant=entry.variant, window_size=entry.window, num_classes=entry.classes,
            drop_path_rate=entry.drop_path, overwrite=True, metadata={"zoo": zoo_metadata},
        )
    except (convert.ConversionError, checkpoint_io.CheckpointError) as exc:
        raise ZooError(f"{entry.name}: the download cannot be converted ({exc}); it is kept at {checkpoint}") from None


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in PRESET_FILES)


def _record_path(name) -> Path:
    return zoo_home() / "records" / f"{name}.json"


def _read_record(name) -> dict:
    path = _record_path(name)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except ValueError:
        raise ZooError(f"{path}: unreadable download record (delete it to trust the next download)") from None
    return record if isinstance(record, dict) else {}


def _write_record(entry, url, checkpoint, digest):
    record = {
        "name": entry.name, "url": url, "file": entry.file_name, "sha256": digest,
        "bytes": checkpoint.stat().st_size,
        "first_downloaded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    files.atomic_write_text(_record_path(entry.name), json.dumps(record, indent=2) + "\n")


def _package_top1(entry):
    metadata = Path(__file__).resolve().parent / entry.package_path / "metadata.json"
    try:
        return round(100 * json.loads(metadata.read_text())["evaluation"]["heldout_seed_uncompressed"]["top1"], 2)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _entry(name) -> registry.Entry:
    entry = registry.get(str(name))
    if entry is None:
        raise ZooError(_unknown_name_message(str(name)))
    return entry


def _looks_like_a_name(text: str) -> bool:
    """A bare word (no folder separator, no leading dot or tilde): what a mistyped registered name looks like."""
    return bool(text) and os.sep not in text and "/" not in text and not text.startswith((".", "~"))


def _unknown_name_message(text: str) -> str:
    close = difflib.get_close_matches(text, registry.names(), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{text}: no such preset folder, and not a registered preset name ({hint}`video-swin presets` lists them)"


def _user_agent() -> str:
    from video_swin import __version__

    return f"video_swin/{__version__} (+python urllib)"


def _terminal_log(message):
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)

