"""Published weights: registry (URL + md5), user cache, verified downloads, offline mode.

Typical use::

    from saganet import weights
    ckpt = weights.resolve("saganet.pth")                  # downloads once, then cached
    paths = weights.fetch_group("saganet_small", offline=True)

See :mod:`saganet.weights.registry` for what is published, :mod:`saganet.weights.cache` for
where it is kept and :mod:`saganet.weights.transfer` for how it is transferred.
"""

from saganet.weights.cache import (
    cache_dir,
    entry_status,
    fetch_group,
    hf_cache_dir,
    hub_snapshot,
    is_offline,
    remove_leftovers,
    resolve,
    resolve_all,
)
from saganet.weights.registry import (
    CLIP_REPO,
    GROUPS,
    REGISTRY,
    VOCODER_REPO,
    Entry,
    HubRepo,
    WeightFile,
    group_members,
    lookup,
)
from saganet.weights.transfer import DownloadError, download, md5_of, verify_file

__all__ = [
    "CLIP_REPO",
    "GROUPS",
    "REGISTRY",
    "VOCODER_REPO",
    "DownloadError",
    "Entry",
    "HubRepo",
    "WeightFile",
    "cache_dir",
    "download",
    "entry_status",
    "fetch_group",
    "group_members",
    "hf_cache_dir",
    "hub_snapshot",
    "is_offline",
    "lookup",
    "md5_of",
    "remove_leftovers",
    "resolve",
    "resolve_all",
    "verify_file",
]
