"""The user's weight cache: where files live, finding them, and fetching what is missing.

Layout under the cache folder (``cache_dir()``)::

    weights/      saganet*.pth, mmaudio_*.pth          (as in the reference repository)
    ext_weights/  v1-44.pth, synchformer_state_dict.pth, empty_string.pth, ...
    example/      the duet example videos and masks
    hub/<owner>/<repo>/   hub repository files placed by hand (optional)
    hf/           Hugging Face hub cache used for hub downloads (see ``hf_cache_dir``)

A file is also accepted directly in the cache folder (``<cache>/saganet.pth``), so a folder
holding the checkpoints side by side works as ``weights_dir``. Nothing is read from the
environment at import time: ``SAGANET_CACHE``, ``XDG_CACHE_HOME``, ``HF_HOME``,
``HF_HUB_CACHE``, ``SAGANET_OFFLINE`` and ``HF_HUB_OFFLINE`` are consulted at each call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from saganet.errors import UserInputError
from saganet.fileio import check_folder_creatable
from saganet.leftovers import remove_dead_once
from saganet.weights.registry import Entry, HubRepo, WeightFile, group_members, lookup
from saganet.weights.transfer import (
    DownloadError,
    DownloadProgress,
    download,
    file_problem,
    has_valid_stamp,
    verify_file,
)

logger = logging.getLogger(__name__)

_TRUE = frozenset({"1", "true", "yes", "on"})
_warned_unverifiable: set[Path] = set()


def cache_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds (or receives) the weight files.

    Args:
        weights_dir: explicit folder (the CLIs' ``--weights_dir``); wins over everything.
            Otherwise ``$SAGANET_CACHE``, else ``$XDG_CACHE_HOME/saganet``, else
            ``~/.cache/saganet``.

    Raises:
        UserInputError: the folder, or one on its way, is a file.
    """
    if weights_dir is not None:
        folder, source = Path(weights_dir).expanduser(), "weights folder"
    elif os.environ.get("SAGANET_CACHE"):
        folder, source = Path(os.environ["SAGANET_CACHE"]).expanduser(), "SAGANET_CACHE folder"
    elif os.environ.get("XDG_CACHE_HOME"):
        folder = Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "saganet"
        source = "weights folder under XDG_CACHE_HOME"
    else:
        folder, source = Path.home() / ".cache" / "saganet", "weights folder"
    # Every use of the cache starts here: a file in its place would otherwise surface as
    # whichever NotADirectoryError the first write meets, or as files "missing" under it.
    check_folder_creatable(folder, source)
    return folder


def hf_cache_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face hub cache used for hub repositories.

    An explicit ``weights_dir`` keeps everything in one place: ``<weights_dir>/hf``. Otherwise
    a user who configured Hugging Face (``HF_HUB_CACHE`` or ``HF_HOME``) keeps that cache, so
    the 4 GB CLIP model already downloaded for another project is reused; failing that,
    ``<cache_dir()>/hf``.

    Args:
        weights_dir: explicit cache folder, as for :func:`cache_dir`.
    """
    if weights_dir is not None:
        return cache_dir(weights_dir) / "hf"
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return cache_dir() / "hf"


def is_offline(offline: bool | None = None) -> bool:
    """Whether network access is forbidden.

    Args:
        offline: an explicit choice; when None, ``SAGANET_OFFLINE`` or ``HF_HUB_OFFLINE`` set
            to 1/true/yes/on turns offline mode on.
    """
    if offline is not None:
        return offline
    return any(os.environ.get(var, "").strip().lower() in _TRUE
               for var in ("SAGANET_OFFLINE", "HF_HUB_OFFLINE"))


@dataclass(frozen=True)
class _Missing:
    """An entry that is not usable locally: where it must go, and why it is not usable."""

    entry: Entry
    dest: Path
    problem: str = ""


def _file_candidates(entry: WeightFile, root: Path) -> list[Path]:
    canonical, flat = root / entry.relpath, root / entry.name
    return [canonical] if flat == canonical else [canonical, flat]


def _find_file(entry: WeightFile, root: Path) -> Path | _Missing:
    """A verified local copy of ``entry``, or what is wrong."""
    problem = ""
    for path in _file_candidates(entry, root):
        if not path.is_file():
            continue
        if entry.md5 is None:
            if path not in _warned_unverifiable:
                _warned_unverifiable.add(path)
                logger.warning("%s has no published checksum; using it unverified", path)
            return path
        wrong = file_problem(path, entry.md5, entry.size)
        if wrong is None:
            return path
        problem = f"{path} fails its check: {wrong}"
        logger.warning("%s", problem)
    return _Missing(entry, root / entry.relpath, problem)


def _hub_files_in(folder: Path, files: Sequence[str]) -> bool:
    return all((folder / name).is_file() for name in files)


def _find_hub(repo: HubRepo, root: Path, hf_cache: Path) -> Path | _Missing:
    """A local folder holding all of ``repo.files``, or where the user may put them."""
    manual = root / repo.relpath
    if _hub_files_in(manual, repo.files):
        return manual
    # Imported here: only hub repositories need it, and it is slow to import.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo.repo_id, allow_patterns=list(repo.files),
                                          cache_dir=hf_cache, local_files_only=True))
    except LocalEntryNotFoundError:
        return _Missing(repo, manual)
    # A cached snapshot may hold only some of the files (an earlier partial download).
    return snapshot if _hub_files_in(snapshot, repo.files) else _Missing(repo, manual)


def _find(entry: Entry, root: Path, hf_cache: Path) -> Path | _Missing:
    if isinstance(entry, HubRepo):
        return _find_hub(entry, root, hf_cache)
    return _find_file(entry, root)


def _offline_error(missing: Sequence[_Missing]) -> UserInputError:
    """One line that says exactly which file to put where."""
    parts = []
    for item in missing:
        if isinstance(item.entry, HubRepo):
            repo = item.entry
            parts.append(f"put {', '.join(repo.files)} from https://huggingface.co/"
                         f"{repo.repo_id} into {item.dest}/ (e.g. `hf download {repo.repo_id} "
                         f"{' '.join(repo.files)} --local-dir {item.dest}`)")
        else:
            why = f" [{item.problem}]" if item.problem else ""
            parts.append(f"download {item.entry.url} to {item.dest}{why}")
    # Files, not entries: a hub repository lists several.
    count = sum(len(item.entry.files) if isinstance(item.entry, HubRepo) else 1
                for item in missing)
    return UserInputError(f"offline mode is on and {count} file(s) are missing: "
                          + "; ".join(parts))


def _download_hub(repo: HubRepo, hf_cache: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    logger.info("downloading %s (%s) into %s", repo.repo_id, ", ".join(repo.files), hf_cache)
    try:
        snapshot = Path(snapshot_download(repo.repo_id, allow_patterns=list(repo.files),
                                          cache_dir=hf_cache))
    except (HfHubHTTPError, LocalEntryNotFoundError) as err:
        raise DownloadError(f"cannot download {repo.repo_id} from the Hugging Face hub "
                            f"({type(err).__name__}: {err})".replace("\n", " ")) from err
    except OSError as err:
        # Mostly a hub cache that cannot be written (a file in the way, no permission, a
        # full disk); the hub resumes its own .incomplete files, so only the remedy is left.
        raise DownloadError(f"cannot download {repo.repo_id} into this Hugging Face cache "
                            f"({err.strerror or err}); if it cannot be written, choose "
                            "another with --weights_dir (weights_dir= from Python), "
                            "SAGANET_CACHE or HF_HUB_CACHE",
                            hf_cache) from err
    lacking = [name for name in repo.files if not (snapshot / name).is_file()]
    if lacking:
        raise DownloadError(f"hub repository {repo.repo_id} has no file(s) "
                            f"{', '.join(lacking)}")
    return snapshot


# Where saganet writes in a cache, and which lock files it makes there (all of them those of
# saganet.fileio.exclusive; hf/ is the Hugging Face hub's, which cleans up after itself).
_LOCKS = {".": ".debug_weights.lock", "weights": ".*.lock", "ext_weights": ".*.lock",
          "example": ".*.lock", "example/synthetic": ".write.lock",
          "debug": ".sam2_video.lock"}


def remove_leftovers(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove what processes killed outright (SIGKILL, power loss) left in the cache: parts of
    downloads and other temporary files whose owner is proven dead, and lock files nobody
    holds (see :mod:`saganet.leftovers`). Done once per process and cache; every resolve
    calls it.

    Args:
        weights_dir: cache folder; see :func:`cache_dir`.

    Returns:
        The removed paths.
    """
    root = cache_dir(weights_dir)
    return [path for sub, locks in _LOCKS.items()
            for path in remove_dead_once(root / sub, locks=locks)]


def _ensure(entries: Sequence[Entry], weights_dir: str | os.PathLike[str] | None,
            offline: bool | None, progress: bool,
            on_progress: DownloadProgress | None = None) -> dict[str, Path]:
    """Local paths of all ``entries``, downloading what is missing unless offline."""
    root, hf_cache = cache_dir(weights_dir), hf_cache_dir(weights_dir)
    remove_leftovers(root)
    found: dict[str, Path] = {}
    missing: list[_Missing] = []
    for entry in entries:
        located = _find(entry, root, hf_cache)
        if isinstance(located, _Missing):
            missing.append(located)
        else:
            found[entry.name] = located
    # Check everything before fetching anything, so offline mode reports all gaps at once.
    if missing and is_offline(offline):
        raise _offline_error(missing)
    for item in missing:
        if item.problem:
            logger.warning("downloading %s again", item.entry.name)
        if isinstance(item.entry, HubRepo):
            if on_progress is not None:  # the hub's transfers report no bytes here
                on_progress(item.entry.name, 0, None)
            found[item.entry.name] = _download_hub(item.entry, hf_cache)
        else:
            found[item.entry.name] = download(item.entry.url, item.dest, item.entry.md5,
                                              progress=progress, on_progress=on_progress,
                                              size=item.entry.size)
    return {entry.name: found[entry.name] for entry in entries}


def resolve_all(names: Sequence[str], weights_dir: str | os.PathLike[str] | None = None,
                offline: bool | None = None, *, registry: Mapping[str, Entry] | None = None,
                progress: bool = True,
                on_progress: DownloadProgress | None = None) -> dict[str, Path]:
    """Local paths of several registered files, checked together before anything is fetched,
    so that offline mode names every missing file at once.

    Args:
        names: registry names.
        weights_dir: cache folder; see :func:`cache_dir`.
        offline: forbid network access; None reads ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``.
        registry: the registry to use; the published one when None.
        progress: show progress bars while downloading.
        on_progress: also told how far each download is (see
            :data:`~saganet.weights.transfer.DownloadProgress`; a hub repository is reported
            once, as it starts, by its name and no byte counts).

    Raises:
        UserInputError: an unknown name, or offline with files missing (one error naming all).
        DownloadError: a download failed.
    """
    return _ensure([lookup(name, registry) for name in names], weights_dir, offline, progress,
                   on_progress)


def resolve(name: str, weights_dir: str | os.PathLike[str] | None = None,
            offline: bool | None = None, *, registry: Mapping[str, Entry] | None = None,
            progress: bool = True) -> Path:
    """Local path of a registered file (or hub snapshot folder), downloading it if needed.

    Args:
        name: registry name, e.g. ``"saganet.pth"`` or ``"apple/DFN5B-CLIP-ViT-H-14-384"``.
        weights_dir: cache folder; see :func:`cache_dir`.
        offline: forbid network access; None reads ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``.
        registry: the registry to use; the published one when None.
        progress: show a progress bar while downloading (pass False on non-zero ranks).

    Raises:
        UserInputError: unknown name, or offline with the file missing (the message says
            which file to put where).
        DownloadError: the download failed.
    """
    return _ensure([lookup(name, registry)], weights_dir, offline, progress)[name]


def fetch_group(group: str, weights_dir: str | os.PathLike[str] | None = None,
                offline: bool | None = None, *,
                registry: Mapping[str, Entry] | None = None,
                groups: Mapping[str, tuple[str, ...]] | None = None,
                progress: bool = True) -> dict[str, Path]:
    """Local paths of everything a group needs, downloading what is missing.

    Args:
        group: a name from :data:`~saganet.weights.GROUPS`, e.g. ``"saganet_small"``.
        weights_dir: cache folder; see :func:`cache_dir`.
        offline: forbid network access; None reads ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``.
        registry: the registry to use; the published one when None.
        groups: the group table to use; the published one when None.
        progress: show progress bars while downloading.

    Returns:
        registry name -> local path (a folder for hub repositories), in the group's order.

    Raises:
        UserInputError: unknown group, or offline with files missing (one error naming all).
        DownloadError: a download failed.
    """
    entries = [lookup(name, registry) for name in group_members(group, groups)]
    return _ensure(entries, weights_dir, offline, progress)


def hub_snapshot(repo_id: str, files: Sequence[str],
                 weights_dir: str | os.PathLike[str] | None = None,
                 offline: bool | None = None) -> Path:
    """A local folder holding ``files`` of a Hugging Face hub repository.

    Looks first in ``<cache>/hub/<repo_id>/`` (files placed by hand), then in the hub cache
    (:func:`hf_cache_dir`), and downloads into the hub cache unless offline. Open the result
    with ``open_clip.create_model_from_pretrained(f"local-dir:{path}")`` or read
    ``path / "config.json"`` directly.

    Args:
        repo_id: ``owner/name`` on the hub.
        files: the files needed from it.
        weights_dir: cache folder; see :func:`cache_dir`.
        offline: forbid network access; None reads ``SAGANET_OFFLINE`` / ``HF_HUB_OFFLINE``.
    """
    repo = HubRepo(repo_id, tuple(files))
    return _ensure([repo], weights_dir, offline, progress=True)[repo.name]


def entry_status(entry: Entry, weights_dir: str | os.PathLike[str] | None = None,
                 verify: bool = False) -> tuple[str, Path]:
    """What the cache holds for ``entry``, without downloading anything.

    Args:
        entry: a registry entry.
        weights_dir: cache folder; see :func:`cache_dir`.
        verify: hash present files that have no valid stamp (slow for large files).

    Returns:
        (state, path): state is ``ok``, ``unverified`` (present, not hashed yet),
        ``no checksum`` (present, nothing to check against), ``corrupt`` or ``missing``;
        path is where the file is, or where it would go.
    """
    root = cache_dir(weights_dir)
    if isinstance(entry, HubRepo):
        located = _find_hub(entry, root, hf_cache_dir(weights_dir))
        return ("missing", located.dest) if isinstance(located, _Missing) else ("ok", located)
    for path in _file_candidates(entry, root):
        if not path.is_file():
            continue
        if entry.md5 is None:
            return "no checksum", path
        if has_valid_stamp(path, entry.md5):
            return "ok", path
        if verify:
            return ("ok" if verify_file(path, entry.md5, entry.size) else "corrupt"), path
        return "unverified", path
    return "missing", root / entry.relpath
