"""What SAGANet downloads: every published file and hub repository, and which ones a variant needs.

A :class:`WeightFile` is one file at a fixed URL with (where its publisher gave one) an md5; it
lives at ``<cache>/<subdir>/<name>``, where ``subdir`` follows the reference repository's layout
(``weights/`` for network checkpoints, ``ext_weights/`` for the codec and Synchformer,
``example/`` for the demo videos), so a clone of that repository can serve as a cache as is.
A :class:`HubRepo` is a Hugging Face repository read through ``huggingface_hub``; the hub pins
no checksums, so these are trusted as the hub delivers them.

``GROUPS`` names what each variant needs, and is what ``python -m saganet.weights fetch`` takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from saganet.errors import UserInputError

SAGANET_PUB_URL = (
    "https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/saganet_public"
)
MMAUDIO_HF_URL = "https://huggingface.co/hkchengrex/MMAudio/resolve/main/weights"
MMAUDIO_RELEASE_URL = "https://github.com/hkchengrex/MMAudio/releases/download/v0.1"
SAGANET_EXAMPLE_URL = "https://raw.githubusercontent.com/ilpoviertola/SAGANet/main/example"

CLIP_REPO = "apple/DFN5B-CLIP-ViT-H-14-384"
VOCODER_REPO = "nvidia/bigvgan_v2_44khz_128band_512x"
# Segmentation (saganet.segment): SAM 2.1 tracks clicked objects, SAM 3 finds named ones.
SAM2_REPOS = {size: f"facebook/sam2.1-hiera-{size}"
              for size in ("tiny", "small", "base-plus", "large")}
SAM3_REPO = "facebook/sam3"
# The SAM 2 preprocessing is rebuilt from config.json (see saganet.segment.models), so the
# network is all a tracker needs; SAM 3 also needs its tokenizer.
SAM2_FILES = ("config.json", "model.safetensors")
SAM3_FILES = ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
              "tokenizer_config.json")


@dataclass(frozen=True)
class WeightFile:
    """One published file.

    Args:
        name: registry key and file name.
        url: where it is published.
        md5: hex digest given by its publisher, or None where none is published (then the file
            is used unverified, with a warning).
        subdir: folder under the cache, after the reference repository's layout.
        size: size in bytes where known (a cheap first check before hashing), else None.
        description: one line for ``list``.
    """

    name: str
    url: str
    md5: str | None
    subdir: str
    size: int | None = None
    description: str = ""

    @property
    def relpath(self) -> PurePosixPath:
        """Path of the file relative to the cache folder."""
        return PurePosixPath(self.subdir, self.name)


@dataclass(frozen=True)
class HubRepo:
    """A Hugging Face hub repository of which only ``files`` are needed.

    Args:
        repo_id: ``owner/name`` on the hub; also the registry key.
        files: the files the consumer reads.
        description: one line for ``list``.
    """

    repo_id: str
    files: tuple[str, ...]
    description: str = ""

    @property
    def name(self) -> str:
        """Registry key (the repository id)."""
        return self.repo_id

    @property
    def relpath(self) -> PurePosixPath:
        """Folder under the cache where a user may place the files by hand."""
        return PurePosixPath("hub", self.repo_id)

    def file_url(self, filename: str) -> str:
        """Direct download URL of one file on the main branch."""
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{filename}"


Entry = WeightFile | HubRepo


def _saganet(name: str, md5: str, description: str) -> WeightFile:
    return WeightFile(name, f"{SAGANET_PUB_URL}/ckpts/{name}", md5, "weights",
                      description=description)


def _mmaudio(name: str, md5: str, description: str) -> WeightFile:
    return WeightFile(name, f"{MMAUDIO_HF_URL}/{name}", md5, "weights", description=description)


def _release(name: str, md5: str | None, description: str) -> WeightFile:
    return WeightFile(name, f"{MMAUDIO_RELEASE_URL}/{name}", md5, "ext_weights",
                      description=description)


def _example(name: str, md5: str, size: int, description: str) -> WeightFile:
    return WeightFile(name, f"{SAGANET_EXAMPLE_URL}/{name}", md5, "example", size, description)


_ENTRIES: tuple[Entry, ...] = (
    _saganet("saganet.pth", "4f3a0ebe86bdf956db289894ec531f5e",
             "SAGANet small 44.1 kHz with LoRA (network, Synchformer with context, LoRA)"),
    _saganet("saganet_no_lora.pth", "c9fe7b24c6c72574feac27731575d99e",
             "SAGANet small 44.1 kHz without LoRA"),
    _mmaudio("mmaudio_small_16k.pth", "af93cde404179f58e3919ac085b8033b",
             "MMAudio small 16 kHz network"),
    _mmaudio("mmaudio_small_44k.pth", "babd74c884783d13701ea2820a5f5b6d",
             "MMAudio small 44.1 kHz network (SAGANet small initialisation)"),
    _mmaudio("mmaudio_medium_44k.pth", "5a56b6665e45a1e65ada534defa903d0",
             "MMAudio medium 44.1 kHz network (SAGANet medium initialisation)"),
    _mmaudio("mmaudio_large_44k.pth", "fed96c325a6785b85ce75ae1aafd2673",
             "MMAudio large 44.1 kHz network"),
    _mmaudio("mmaudio_large_44k_v2.pth", "01ad4464f049b2d7efdaa4c1a59b8dfe",
             "MMAudio large 44.1 kHz network, v2"),
    _release("v1-16.pth", "69f56803f59a549a1a507c93859fd4d7", "audio VAE, 16 kHz"),
    _release("best_netG.pt", "eeaf372a38a9c31c362120aba2dde292", "BigVGAN vocoder, 16 kHz"),
    _release("v1-44.pth", "fab020275fa44c6589820ce025191600", "audio VAE, 44.1 kHz"),
    _release("synchformer_state_dict.pth", "5b2f5594b0730f70e41e549b7c94390c",
             "MMAudio's Synchformer (training initialisation)"),
    _release("empty_string.pth", None, "CLIP text features of the empty prompt (training)"),
    _example("Vid_09_Jesus_tpt_vn_159092_164092.mp4", "5df688a0313de78d9d49b823747024a6",
             3332296, "duet example: trumpet and violin"),
    _example("Masks_02_vn_09_Jesus_159092_164092.mp4", "a036f0f9e5d64618d044579443c93b38",
             158775, "duet example: violin mask"),
    _example("Masks_01_tpt_09_Jesus_159092_164092.mp4", "05c9b8f7709d1ac6eb27fc767b237f6d",
             209979, "duet example: trumpet mask"),
    # open_clip reads these two names for an `hf-hub:` or `local-dir:` model; it would prefer an
    # `open_clip_model.safetensors` if one were present, but the .bin is what this repo serves.
    HubRepo(CLIP_REPO, ("open_clip_config.json", "open_clip_pytorch_model.bin"),
            "DFN5B CLIP ViT-H/14 at 384 px (open_clip)"),
    HubRepo(VOCODER_REPO, ("config.json", "bigvgan_generator.pt"),
            "BigVGAN-v2 vocoder, 44.1 kHz, 128 bands, 512x"),
    *(HubRepo(repo, SAM2_FILES, f"SAM 2.1 Hiera-{size} video tracker (Apache-2.0)")
      for size, repo in SAM2_REPOS.items()),
    HubRepo(SAM3_REPO, SAM3_FILES,
            "SAM 3 (text prompts; gated, SAM License: request access on its hub page)"),
)

REGISTRY: dict[str, Entry] = {entry.name: entry for entry in _ENTRIES}

_INFERENCE_SHARED = ("v1-44.pth", CLIP_REPO, VOCODER_REPO)
_TRAINING_SHARED = ("synchformer_state_dict.pth", "v1-44.pth", "empty_string.pth", CLIP_REPO,
                    VOCODER_REPO)

GROUPS: dict[str, tuple[str, ...]] = {
    "saganet_small": ("saganet.pth", *_INFERENCE_SHARED),
    "saganet_small_no_lora": ("saganet_no_lora.pth", *_INFERENCE_SHARED),
    "train_small": ("mmaudio_small_44k.pth", *_TRAINING_SHARED),
    "train_medium": ("mmaudio_medium_44k.pth", *_TRAINING_SHARED),
    "example": (
        "Vid_09_Jesus_tpt_vn_159092_164092.mp4",
        "Masks_02_vn_09_Jesus_159092_164092.mp4",
        "Masks_01_tpt_09_Jesus_159092_164092.mp4",
    ),
    # The debug variant runs on random tiny weights written locally: nothing to download.
    "debug": (),
    # Object tracking from clicks/boxes (the default tracker) and from phrases (gated).
    "segment": (SAM2_REPOS["tiny"],),
    "segment_text": (SAM3_REPO,),
}


def lookup(name: str, registry: Mapping[str, Entry] | None = None) -> Entry:
    """The registry entry called ``name``.

    Args:
        name: a file name (``saganet.pth``) or hub repository id.
        registry: the registry to search; :data:`REGISTRY` when None.

    Raises:
        UserInputError: ``name`` is not registered; the message lists the valid names.
    """
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise UserInputError(f"unknown weight file {name!r}; known: {', '.join(registry)}")
    return registry[name]


def group_members(group: str, groups: Mapping[str, tuple[str, ...]] | None = None
                  ) -> tuple[str, ...]:
    """Registry names that group ``group`` needs.

    Args:
        group: a group name such as ``saganet_small``.
        groups: the group table; :data:`GROUPS` when None.

    Raises:
        UserInputError: ``group`` is unknown; the message lists the valid groups.
    """
    groups = GROUPS if groups is None else groups
    if group not in groups:
        raise UserInputError(f"unknown weights group {group!r}; known: {', '.join(groups)}")
    return groups[group]
