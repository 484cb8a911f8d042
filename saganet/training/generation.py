"""Audio generated during training for a few fixed validation clips, through the shared
:func:`saganet.inference.generate`.

CLIP and text features come precomputed with the clips (as in training); the Synchformer and the
network are the live training modules; the codec is loaded once. The same clips and the same
noise seed are used at every generation, so the files under ``<run_dir>/val/<step>/`` can be
compared across steps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from saganet import weights
from saganet.codec import AudioCodec, AudioCodecConfig, load_vae, load_vocoder
from saganet.data.sms_dataset import mask_to_unit, video_to_unit
from saganet.features.synchformer import SynchformerWithContext
from saganet.inference import GenerationBatch, SamplingOptions, generate
from saganet.media.output import write_flac
from saganet.model import FlowNetwork, SequenceConfig
from saganet.models import SAGANetModels

log = logging.getLogger(__name__)


def build_codec(kind: str, weights_dir: str | None = None) -> AudioCodec:
    """The decoder for generations: ``44k`` (published VAE + BigVGAN-v2) or ``debug`` (random).

    Args:
        kind: codec choice of the model setup.
        weights_dir: weights cache folder.
    """
    if kind == "debug":
        return AudioCodec.from_config(AudioCodecConfig.debug(), need_encoder=False)
    if kind != "44k":
        raise ValueError(f"unknown codec {kind!r}; choose 44k or debug")
    vae = load_vae(weights.resolve("v1-44.pth", weights_dir), "44k", need_encoder=False)
    vocoder = load_vocoder(weights.resolve(weights.VOCODER_REPO, weights_dir),
                           local_files_only=True)
    return AudioCodec(vae, vocoder, AudioCodecConfig.for_mode("44k").mel)


def file_name(sample_id: str) -> str:
    """A flat file name for a sample id (ids may contain folders)."""
    return sample_id.replace(os.sep, "-").replace("/", "-") + ".flac"


class ValidationGenerator:
    """Generates the same validation clips at every call and writes them as FLAC.

    Args:
        samples: the clips (dataset samples; failed ones must already be removed).
        codec: the audio decoder (moved to ``device`` here).
        sequence: clip duration and rates of the run.
        options: sampler settings.
        seed: noise seed (fixed, so generations differ only through the weights).
        out_dir: files go to ``<out_dir>/<step:09d>/<id>.flac``.
        device: where the generation runs.
    """

    def __init__(self, samples: Sequence[dict[str, Any]], codec: AudioCodec,
                 sequence: SequenceConfig, options: SamplingOptions, seed: int,
                 out_dir: str | os.PathLike[str], device: torch.device) -> None:
        if not samples:
            raise ValueError("no validation clips to generate")
        self.ids = [s["id"] for s in samples]
        self.codec = codec.to(device)
        self.sequence = sequence
        self.options = options
        self.seed = seed
        self.out_dir = Path(out_dir)
        self.device = device

        def stack(key: str) -> torch.Tensor:
            return torch.stack([s[key] for s in samples])

        self.batch = GenerationBatch(
            sync_frames=video_to_unit(stack("sync_video")), masks=mask_to_unit(stack("mask_video")),
            detail_frames=video_to_unit(stack("sync_detail_video")),
            detail_masks=mask_to_unit(stack("mask_detail_video")),
            clip_features=stack("clip_features"), text_features=stack("text_features"))

    def __call__(self, network: FlowNetwork, synchformer: SynchformerWithContext,
                 step: int) -> list[Path]:
        """Generate with the current weights and write the files.

        Args:
            network: the live flow network (put in eval mode during the call).
            synchformer: the live Synchformer.
            step: training step (names the output folder).
        """
        modes = network.training, synchformer.training
        network.eval()
        synchformer.eval()
        try:
            models = SAGANetModels(network, synchformer, None, self.codec, self.sequence)
            generator = torch.Generator(self.device).manual_seed(self.seed)
            result = generate(models, self.batch, generator=generator, options=self.options)
        finally:
            network.train(modes[0])
            synchformer.train(modes[1])
        folder = self.out_dir / f"{step:09d}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for sample_id, audio in zip(self.ids, result.audio, strict=True):
            paths.append(write_flac(folder / file_name(sample_id), audio, result.sampling_rate,
                                    overwrite=True))
        log.info("step %d: generated %d validation clip(s) in %s", step, len(paths), folder)
        return paths
