"""CLIP image and per-token text features on top of open_clip (DFN5B ViT-H/14 by default).

CLIP is an external dependency: the model comes from open_clip and this wrapper only adds the
conditioning the flow network was trained with:

* image features: frames in [0, 1], OpenAI CLIP mean/std normalisation, pooled and projected
  image embedding, L2-normalised -> ``(B, T, embed_dim)``;
* text features: the last hidden state of *every* one of the 77 token positions after
  ``ln_final`` (padding included, no projection, no EOT pooling), each L2-normalised ->
  ``(B, 77, text_width)``.

Prompts longer than the context (77 tokens including start/end) are truncated by the
tokenizer; :meth:`ClipEncoder.tokenize` logs a warning and :meth:`ClipEncoder.count_tokens`
tells callers in advance.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Protocol

import torch
import torch.nn.functional as F
from huggingface_hub import constants as hf_constants
from torch import nn

from saganet.errors import UserInputError
from saganet.features.clip_attention import use_sdpa_attention
from saganet.features.clip_weights import load_open_clip

log = logging.getLogger(__name__)


def _import_open_clip() -> ModuleType:
    """open_clip, imported without ``transformers``.

    open_clip imports ``transformers`` at import time when it is installed (about 2 s), only
    for model families saganet never uses (CoCa text generation, Hugging Face text towers).
    ``transformers`` is hidden while open_clip loads so that runs without tracking do not pay
    for it; it stays importable afterwards, and a process that already loaded it keeps it.
    """
    hide = "transformers" not in sys.modules
    if hide:
        sys.modules["transformers"] = None  # makes `import transformers` fail, as if absent
    try:
        return importlib.import_module("open_clip")
    finally:
        if hide and sys.modules.get("transformers", False) is None:
            del sys.modules["transformers"]


open_clip = _import_open_clip()
OPENAI_DATASET_MEAN = open_clip.constants.OPENAI_DATASET_MEAN
OPENAI_DATASET_STD = open_clip.constants.OPENAI_DATASET_STD

DEFAULT_CLIP_MODEL = "hf-hub:apple/DFN5B-CLIP-ViT-H-14-384"
# open_clip's built-in config of the same architecture; it selects the standard CLIP BPE
# tokenizer (context 77) without a hub download.
DEFAULT_CLIP_TOKENIZER = "ViT-H-14-378-quickgelu"
# Frame size the published models were trained with. If the hub config says 378, the 14-px
# patch convolution reads the same 27 x 27 grid from 384-px frames (the last 6 rows and
# columns are ignored), exactly as in the reference.
DEFAULT_CLIP_IMAGE_SIZE = 384


class Tokenizer(Protocol):
    """What the wrapper needs from a tokenizer (open_clip's ``SimpleTokenizer`` fits)."""

    context_length: int

    def __call__(self, texts: list[str]) -> torch.Tensor: ...

    def encode(self, text: str) -> list[int]: ...


class ClipEncoder(nn.Module):
    """Frozen CLIP image/text feature extractor.

    Args:
        model: an ``open_clip.model.CLIP`` (batch-first text transformer, open_clip >= 2.29).
        tokenizer: its BPE tokenizer.
        image_size: side of the square frames given to :meth:`encode_images`; defaults to the
            model's own image size.
    """

    def __init__(self, model: open_clip.model.CLIP, tokenizer: Tokenizer,
                 image_size: int | None = None) -> None:
        super().__init__()
        if not isinstance(model, open_clip.model.CLIP):
            raise TypeError(f"expected an open_clip CLIP model, got {type(model).__name__}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self._image_size = image_size or model.visual.image_size[0]
        # The image tower's attention through SDPA (same output up to float rounding; most
        # of CLIP's cost is this tower); set_fast_inference(False) restores open_clip's own.
        self.set_fast_inference(True)
        grid = getattr(model.visual, "grid_size", None)
        patch = getattr(model.visual, "patch_size", None)
        if grid is not None and patch is not None and self._image_size // patch[0] != grid[0]:
            raise ValueError(f"{self._image_size}-px frames give a {self._image_size // patch[0]}"
                             f"-patch grid, the model expects {grid[0]}")

    @classmethod
    def from_model(cls, model: open_clip.model.CLIP, tokenizer: Tokenizer,
                   image_size: int | None = None) -> ClipEncoder:
        """Wrap an already built open_clip model (see the class arguments)."""
        return cls(model, tokenizer, image_size=image_size)

    @classmethod
    def from_pretrained(
        cls,
        name: str = DEFAULT_CLIP_MODEL,
        device: str | torch.device = "cpu",
        tokenizer_name: str = DEFAULT_CLIP_TOKENIZER,
        image_size: int = DEFAULT_CLIP_IMAGE_SIZE,
        cache_dir: str | None = None,
    ) -> ClipEncoder:
        """Load CLIP weights through open_clip (Hugging Face cache; honours ``HF_HUB_OFFLINE``),
        holding them once in memory (:func:`~saganet.features.clip_weights.load_open_clip`).

        Args:
            name: open_clip model id, e.g. ``hf-hub:apple/DFN5B-CLIP-ViT-H-14-384``.
            device: where to put the model.
            tokenizer_name: open_clip name whose tokenizer to use.
            image_size: frame size given to :meth:`encode_images`.
            cache_dir: Hugging Face cache folder (default: the hub's own).
        """
        try:
            model = load_open_clip(name, cache_dir=cache_dir).to(device)
        except FileNotFoundError as err:
            hint = (" (HF_HUB_OFFLINE is set: run once with network access to fill the cache)"
                    if hf_constants.HF_HUB_OFFLINE else "")
            raise UserInputError(f"cannot load CLIP weights {name} into the Hugging Face cache "
                                 f"{cache_dir or hf_constants.HF_HUB_CACHE}{hint}: {err}") from err
        tokenizer = open_clip.get_tokenizer(tokenizer_name)
        return cls(model, tokenizer, image_size=image_size)

    def set_fast_inference(self, enabled: bool = True) -> ClipEncoder:
        """Run the image tower's self-attention through SDPA (default) or, with False, through
        :class:`torch.nn.MultiheadAttention`'s own forward, the reference operations.

        See :mod:`saganet.features.clip_attention`. Returns ``self``.
        """
        use_sdpa_attention(self.model.visual, enabled)
        return self

    def train(self, mode: bool = True) -> ClipEncoder:
        """CLIP is never trained: it stays in eval mode whatever a training loop asks."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def image_size(self) -> int:
        """Side of the square frames :meth:`encode_images` expects."""
        return self._image_size

    @property
    def device(self) -> torch.device:
        """Where the image tower's weights are (and its features come out)."""
        return next(self.model.visual.parameters()).device

    @property
    def embed_dim(self) -> int:
        """Width of the image features (1024 for DFN5B ViT-H/14)."""
        return self.model.visual.output_dim

    @property
    def text_width(self) -> int:
        """Width of the per-token text features (1024 for DFN5B ViT-H/14)."""
        return self.model.transformer.width

    @property
    def context_length(self) -> int:
        """Token positions of every text feature (77)."""
        return self.model.context_length

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Tokens of each text including start and end; above :attr:`context_length` = truncated.

        Args:
            texts: one prompt or several.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        return [len(self.tokenizer.encode(text)) + 2 for text in texts]

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """BPE tokens ``(N, 77)``, zero padded; over-long prompts are truncated with a warning.

        Args:
            texts: one prompt or several.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        for text, count in zip(texts, self.count_tokens(texts), strict=True):
            if count > self.context_length:
                log.warning("prompt has %d tokens, CLIP reads %d: truncated (%.60r...)",
                            count, self.context_length, text)
        return self.tokenizer(texts)

    @torch.no_grad()
    def encode_images(self, frames: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """L2-normalised image embeddings of frames.

        Args:
            frames: ``(B, T, 3, S, S)`` in [0, 1] with ``S`` = :attr:`image_size`, on any
                device and of any float type (moved to CLIP's); clips that share memory
                (``expand``) are encoded once.
            chunk_size: images per forward pass; ``None`` = all at once.

        Returns:
            ``(B, T, embed_dim)``.
        """
        size = self.image_size
        if frames.dim() != 5 or tuple(frames.shape[2:]) != (3, size, size):
            raise ValueError(f"frames must be (B, T, 3, {size}, {size}) (clips, frames, channels, "
                             f"height, width), got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            # uint8 frames would pass through unscaled (0-255 read as [0, 1]).
            raise ValueError(f"frames must be float in [0, 1], got {frames.dtype} "
                             "(saganet.media.video.clip_input converts uint8 frames)")
        # Clips that are the same memory (one video's frames expanded over the objects that
        # sound in it) are encoded once: CLIP is most of a clip's cost.
        first_of: dict[int, int] = {}
        positions: list[int] = []
        slots = []
        for i in range(frames.shape[0]):
            pointer = frames[i].data_ptr()
            if pointer not in first_of:
                first_of[pointer] = len(positions)
                positions.append(i)
            slots.append(first_of[pointer])
        if len(positions) < frames.shape[0]:
            frames = frames[positions]
        # Moved here, after the selection: moving an expanded tensor copies every clip.
        weight = next(self.model.visual.parameters())
        frames = frames.to(device=weight.device, dtype=weight.dtype)
        b, t = frames.shape[:2]
        like = dict(dtype=frames.dtype, device=frames.device)
        mean = torch.tensor(OPENAI_DATASET_MEAN, **like)[:, None, None]
        std = torch.tensor(OPENAI_DATASET_STD, **like)[:, None, None]
        images = ((frames - mean) / std).flatten(0, 1)  # (B*T, 3, S, S)
        features = [self.model.encode_image(chunk, normalize=True)
                    for chunk in images.split(chunk_size or images.shape[0])]
        features = torch.cat(features).unflatten(0, (b, t))
        if len(positions) < len(slots):
            features = features[slots]
        return features

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-token text features of token ids ``(N, 77)`` -> ``(N, 77, text_width)``."""
        model = self.model
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens.to(model.positional_embedding.device)).to(cast_dtype)
        x = x + model.positional_embedding.to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask)  # batch-first (open_clip >= 2.29)
        x = model.ln_final(x)  # (N, 77, W)
        return F.normalize(x, dim=-1)

    def encode_text(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Per-token text features of prompts -> ``(N, 77, text_width)``, padding included.

        Args:
            texts: one prompt or several (the empty string is a valid prompt).
        """
        return self.encode_tokens(self.tokenize(texts))


def tiny_clip(
    embed_dim: int = 64,
    seed: int = 0,
    text_width: int = 64,
    image_size: int = DEFAULT_CLIP_IMAGE_SIZE,
    patch_size: int = 64,
) -> ClipEncoder:
    """A tiny random CLIP with the real BPE tokenizer, built without any download.

    It takes the same 384-px frames as the real model (a 64-px patch keeps it cheap: 6 x 6
    patches) and the same 77-token prompts; one layer per tower, QuickGELU like DFN5B.

    Args:
        embed_dim: image feature width.
        seed: seed of the random weights (the global RNG is left untouched).
        text_width: text feature width.
        image_size: frame size.
        patch_size: vision patch side.
    """
    vision = open_clip.model.CLIPVisionCfg(layers=1, width=64, head_width=32,
                                           patch_size=patch_size, image_size=image_size)
    text = open_clip.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=text_width,
                                       heads=2, layers=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.model.CLIP(embed_dim, vision, text, quick_gelu=True)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=77)
    return ClipEncoder.from_model(model, tokenizer)
