"""The models of one SAGANet pipeline, held together: what :func:`saganet.inference.generate`
runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from saganet.codec import AudioCodec
from saganet.features import SynchformerWithContext
from saganet.model import FlowNetwork, SequenceConfig

if TYPE_CHECKING:
    # Only named in annotations: importing it imports open_clip (seconds).
    from saganet.features.clip import ClipEncoder


class SAGANetModels(nn.Module):
    """Everything :func:`saganet.inference.generate` needs, moved and cast together.

    Args:
        network: the flow network.
        synchformer: the segmentation-aware Synchformer.
        clip_encoder: CLIP image/text encoder; ``None`` when features come precomputed
            (training).
        codec: VAE decoder + vocoder.
        sequence: clip duration and rates the network is set up for.
    """

    def __init__(self, network: FlowNetwork, synchformer: SynchformerWithContext,
                 clip_encoder: ClipEncoder | None, codec: AudioCodec,
                 sequence: SequenceConfig) -> None:
        super().__init__()
        self.network = network
        self.synchformer = synchformer
        self.clip_encoder = clip_encoder
        self.codec = codec
        self.sequence = sequence
        # The clip length the network was trained on: long videos are cut into windows of it.
        self.training_sequence = sequence
        # What the weights are, as results record it (saganet.soundtrack.settings): the
        # variant and the file name of a checkpoint of one's own; None where they were built
        # otherwise or came with the variant.
        self.variant: str | None = None
        self.checkpoint_name: str | None = None

    @property
    def device(self) -> torch.device:
        return self.network.latent_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.network.latent_mean.dtype

    def set_duration(self, duration: float) -> SequenceConfig:
        """Set the clip length: new sequence lengths and RoPE tables (fp32, on the device).

        Call it after moving/casting the models, as the tables are rebuilt where they live.
        """
        self.sequence = self.sequence.with_duration(duration)
        self.network.update_seq_lengths(self.sequence.latent_seq_len,
                                        self.sequence.clip_seq_len, self.sequence.sync_seq_len)
        return self.sequence
