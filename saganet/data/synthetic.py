"""The synthetic ``debug`` dataset: deterministic random samples with something to learn.

Every sample belongs to one of a few classes. A class fixes the audio latent pattern, the CLIP
and text feature prototypes, the colour layout of the video and the position of the mask box;
samples add small noise to the features (the videos of a class are shared, which keeps the
dataset cheap: they are built once). The conditions therefore predict the latent, and even an
unconditional model can learn the latent distribution, so the flow-matching loss of a tiny
network falls within a few dozen steps. Samples are a pure function of ``(seed, index)``: no
files, no global random state, identical in every process.

Samples follow :class:`saganet.data.sms_dataset.SampleShapes`; the focal crops come from
:func:`saganet.features.focal_crop` like the on-the-fly path of the real datasets.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from saganet.data.sms_dataset import SampleShapes
from saganet.features.focal_crop import focal_crop

COARSE_GRID = 7  # videos are upsampled from a 7x7 colour grid (cheap, and crops stay smooth)
FEATURE_NOISE = 0.1
LATENT_STD = 0.05


class SyntheticClips(Dataset):
    """A fixed-size synthetic split.

    Args:
        size: number of samples.
        shapes: sample shapes (those the model being trained needs).
        seed: selects the class prototypes and per-sample noise; train and validation splits
            share prototypes when they share ``seed`` and differ through ``offset``.
        num_classes: number of classes.
        offset: index of the first sample (keeps validation samples distinct from training).
    """

    def __init__(self, size: int, shapes: SampleShapes, seed: int = 0, num_classes: int = 4,
                 offset: int = 0) -> None:
        self.size = size
        self.shapes = shapes
        self.seed = seed
        self.offset = offset
        self.num_classes = num_classes
        s = shapes
        gen = torch.Generator().manual_seed(seed)
        k = num_classes
        self.latents = torch.randn(k, s.latent_len, s.latent_dim, generator=gen)
        self.clip_protos = torch.randn(k, s.clip_len, s.clip_dim, generator=gen)
        self.text_protos = torch.randn(k, s.text_len, s.text_dim, generator=gen)
        self.colours = torch.rand(k, 3, COARSE_GRID, COARSE_GRID, generator=gen)
        side = s.frame_size
        box = torch.randint(side // 4, side // 2, (k, 2), generator=gen)  # (K, [h, w])
        corner = (torch.rand(k, 2, generator=gen) * (side - box)).long()  # (K, [y, x])
        self.boxes = torch.cat([corner, corner + box], dim=1)  # (K, [y0, x0, y1, x1])
        self._videos: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.size

    def sample_id(self, index: int) -> str:
        """The id of sample ``index``."""
        return f"synthetic-{self.offset + index:06d}"

    def ground_truth_file(self, index: int) -> None:
        """Synthetic samples have no audio file: their true audio is their latents decoded."""
        return None

    def class_of(self, index: int) -> int:
        """Class of sample ``index``."""
        return (index + self.offset) % self.num_classes

    def latent_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the latents (what a real dataset would measure)."""
        counts = torch.bincount(torch.tensor([self.class_of(i) for i in range(self.size)]),
                                minlength=self.num_classes).float()
        weights = counts / counts.sum()
        mean = torch.einsum("k,klc->c", weights, self.latents) / self.shapes.latent_len
        var = torch.einsum("k,klc->c", weights, (self.latents - mean) ** 2)
        return mean, (var / self.shapes.latent_len).sqrt()

    def features(self, index: int) -> dict[str, Any]:
        """The precomputed-feature part of sample ``index`` (latent posterior, CLIP, text)."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        c = self.class_of(index)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.offset + index + 1)

        def noisy(proto: torch.Tensor) -> torch.Tensor:
            return proto + FEATURE_NOISE * torch.randn(proto.shape, generator=gen)

        a_mean = noisy(self.latents[c])
        return {"id": self.sample_id(index), "caption": f"class {c}",
                "a_mean": a_mean, "a_std": torch.full_like(a_mean, LATENT_STD),
                "clip_features": noisy(self.clip_protos[c]),
                "text_features": noisy(self.text_protos[c])}

    def class_videos(self, c: int) -> dict[str, torch.Tensor]:
        """The videos of class ``c`` (shared by its samples; built once, then cached)."""
        if c not in self._videos:
            s = self.shapes
            coarse = self.colours[c].expand(s.sync_frames, -1, -1, -1)  # (T, 3, 7, 7)
            frames = F.interpolate(coarse, size=(s.frame_size, s.frame_size), mode="nearest")
            frames = (frames * 255).round().to(torch.uint8)  # (T, 3, S, S)
            y0, x0, y1, x1 = self.boxes[c].tolist()
            masks = torch.zeros(s.sync_frames, 1, s.frame_size, s.frame_size,
                                dtype=torch.uint8)
            masks[:, :, y0:y1, x0:x1] = 255
            detail, mask_detail = focal_crop(frames[None], masks[None])
            self._videos[c] = {"sync_video": frames, "sync_detail_video": detail[0],
                               "mask_video": masks, "mask_detail_video": mask_detail[0]}
        return self._videos[c]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.features(index), **self.class_videos(self.class_of(index))}
