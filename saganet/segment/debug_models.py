"""Tiny random SAM 2 / SAM 3 video models, for tests, benchmarks and the ``debug`` tracker.

They have the real architectures at toy sizes (a 64-pixel input, a few narrow layers) and are
saved with ``save_pretrained``, so they load through the same code as the published models.
Their masks mean nothing; ``object_present`` biases the object-score head so that an object is
always (True), never (False) or randomly (None) reported present.

Sizes respect the architectures' constraints: hidden widths are multiples of 64 above 64, the
memory encoder keeps 64 output channels, a global-attention block is never first in its stage,
and SAM 3's detector widths equal its FPN width.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

DEBUG_INPUT_SIZE = 64
_WIDTH = 128
# Object-score bias that makes the verdict certain whatever the random features say.
_SCORE_BIAS = 30.0


def tiny_sam2_config(image_size: int = DEBUG_INPUT_SIZE):
    """A ``Sam2VideoConfig`` at toy size.

    Args:
        image_size: side of the square model input (a multiple of 64).
    """
    from transformers import Sam2VideoConfig

    side = image_size
    hiera = dict(model_type="sam2_hiera_det_model", hidden_size=32, num_attention_heads=1,
                 image_size=[side, side], blocks_per_stage=[1, 1, 2, 1],
                 embed_dim_per_stage=[32, 64, 128, 256], num_attention_heads_per_stage=[1, 1, 2, 2],
                 window_size_per_stage=[4, 4, 4, 2], global_attention_blocks=[3],
                 window_positional_embedding_background_size=[2, 2])
    vision = dict(backbone_config=hiera, backbone_channel_list=[256, 128, 64, 32],
                  backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [side // 16] * 2],
                  fpn_hidden_size=_WIDTH)
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=_WIDTH, image_size=side, patch_size=16),
        mask_decoder_config=dict(hidden_size=_WIDTH, mlp_dim=256, num_attention_heads=2,
                                 iou_head_hidden_dim=64),
        image_size=side, memory_attention_hidden_size=_WIDTH, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[side // 16, side // 16],
        memory_encoder_hidden_size=_WIDTH, mask_downsampler_embed_dim=_WIDTH,
        memory_fuser_num_layers=1, memory_fuser_embed_dim=_WIDTH,
        memory_fuser_intermediate_dim=256)


def write_tiny_sam2(folder: str | os.PathLike[str], object_present: bool | None = True,
                    seed: int = 0, image_size: int = DEBUG_INPUT_SIZE) -> Path:
    """Save a random tiny ``Sam2VideoModel`` into ``folder``; returns the folder.

    Args:
        folder: where to save (created).
        object_present: bias the object score so objects are always / never found (None:
            leave it random).
        seed: seed of the random weights.
        image_size: side of the model input.
    """
    from transformers import Sam2VideoModel

    torch.manual_seed(seed)
    model = Sam2VideoModel(tiny_sam2_config(image_size)).eval()
    if object_present is not None:
        with torch.no_grad():
            bias = model.mask_decoder.pred_obj_score_head.proj_out.bias
            bias.fill_(_SCORE_BIAS if object_present else -_SCORE_BIAS)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder
