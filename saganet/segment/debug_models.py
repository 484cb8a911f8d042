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
import tempfile
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

    from saganet.segment.models import transformers_bars_off

    torch.manual_seed(seed)
    model = Sam2VideoModel(tiny_sam2_config(image_size)).eval()
    if object_present is not None:
        with torch.no_grad():
            bias = model.mask_decoder.pred_obj_score_head.proj_out.bias
            bias.fill_(_SCORE_BIAS if object_present else -_SCORE_BIAS)
    folder = Path(folder)
    with transformers_bars_off():
        model.save_pretrained(folder)
    return folder


def _tiny_tokenizer(folder: Path):
    """A CLIP tokenizer over single letters (vocabulary files written into ``folder``): enough
    to turn any phrase into tokens offline."""
    import json

    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[f"{letter}</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab_file=str(folder / "vocab.json"),
                         merges_file=str(folder / "merges.txt"), pad_token="<|endoftext|>")


def tiny_sam3_config(image_size: int = 112):
    """A ``Sam3VideoConfig`` at toy size.

    Args:
        image_size: side of the square model input (a multiple of the 14-pixel patch).
    """
    from transformers import Sam3VideoConfig

    side, width = image_size, _WIDTH
    tokens = side // 14
    vit = dict(model_type="sam3_vit_model", hidden_size=width, intermediate_size=256,
               num_hidden_layers=2, num_attention_heads=2, image_size=side, patch_size=14,
               window_size=tokens // 2, global_attn_indexes=[1], pretrain_image_size=side)
    vision = dict(backbone_config=vit, fpn_hidden_size=width,
                  backbone_feature_sizes=[[tokens * 4] * 2, [tokens * 2] * 2, [tokens] * 2])
    text = dict(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=32, bos_token_id=0,
                eos_token_id=1, pad_token_id=1)
    layer = dict(hidden_size=width, num_layers=1, num_attention_heads=2, intermediate_size=256)
    detector = dict(vision_config=vision, text_config=text, geometry_encoder_config=layer,
                    detr_encoder_config=layer, detr_decoder_config={**layer, "num_queries": 2},
                    mask_decoder_config=dict(hidden_size=width, num_upsampling_stages=3,
                                             num_attention_heads=2))
    tracker = dict(
        vision_config=vision, image_size=side,
        prompt_encoder_config=dict(hidden_size=width, image_size=side, patch_size=14),
        mask_decoder_config=dict(hidden_size=width, mlp_dim=256, num_attention_heads=2,
                                 iou_head_hidden_dim=64),
        memory_attention_hidden_size=width, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[tokens, tokens], memory_encoder_hidden_size=width,
        mask_downsampler_embed_dim=width, memory_fuser_num_layers=1,
        memory_fuser_embed_dim=width, memory_fuser_intermediate_dim=256)
    # Random masks barely overlap: any overlap associates a detection with a track, so the
    # same few objects are followed instead of new ones piling up frame after frame.
    return Sam3VideoConfig(detector_config=detector, tracker_config=tracker,
                           low_res_mask_size=4 * tokens, assoc_iou_thresh=0.0,
                           trk_assoc_iou_thresh=0.0, max_num_objects=4)


def write_tiny_sam3(folder: str | os.PathLike[str], object_present: bool | None = True,
                    seed: int = 0, image_size: int = 112) -> Path:
    """Save a random tiny ``Sam3VideoModel`` with its processor and tokenizer into ``folder``.

    Args:
        folder: where to save (created).
        object_present: make every phrase detected with full confidence (True), never (False),
            or leave it to the random weights (None).
        seed: seed of the random weights.
        image_size: side of the model input.
    """
    from transformers import (
        Sam2VideoVideoProcessor,
        Sam3ImageProcessor,
        Sam3VideoModel,
        Sam3VideoProcessor,
    )

    from saganet.segment.models import transformers_bars_off

    torch.manual_seed(seed)
    model = Sam3VideoModel(tiny_sam3_config(image_size)).eval()
    if object_present is not None:
        detector = model.detector_model
        sign = 1.0 if object_present else -1.0
        with torch.no_grad():
            # Presence of the phrase, and the score of every query for it: constant verdicts.
            detector.detr_decoder.presence_head.layer3.bias.fill_(sign * _SCORE_BIAS)
            scoring = detector.dot_product_scoring
            for proj in (scoring.query_proj, scoring.text_proj):
                proj.weight.zero_()
                proj.bias.fill_(1.0)
            if not object_present:
                scoring.text_proj.bias.fill_(-1.0)
    folder = Path(folder)
    size = {"height": image_size, "width": image_size}
    with tempfile.TemporaryDirectory() as vocab:
        processor = Sam3VideoProcessor(
            image_processor=Sam3ImageProcessor(size=size),
            video_processor=Sam2VideoVideoProcessor(size=size, image_mean=[0.5] * 3,
                                                    image_std=[0.5] * 3),
            tokenizer=_tiny_tokenizer(Path(vocab)), target_size=image_size)
        with transformers_bars_off():
            model.save_pretrained(folder)
            processor.save_pretrained(folder)
    return folder
