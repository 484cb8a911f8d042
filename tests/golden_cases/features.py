"""Golden handlers and manifests for saganet.features (Synchformer variants, focal crop)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from saganet.features import (
    Synchformer,
    SynchformerConfig,
    SynchformerWithContext,
    focal_crop,
    focal_crop_boxes,
)
from saganet.state_dict import load_state_dict_strict
from tests.golden_cases.compare import assert_outputs, manifest_shapes


def _config(case: dict) -> SynchformerConfig:
    """Our config from the reference's effective knobs (same names)."""
    effective = dict(case["config"]["effective"])
    # Only the variant the released models use is implemented.
    assert effective.pop("pos_embed") == "separate", effective
    assert effective.pop("attn_layer") == "divided", effective
    known = {f.name for f in dataclasses.fields(SynchformerConfig)}
    assert set(effective) <= known, f"unknown knobs {set(effective) - known}"
    return SynchformerConfig(**effective)


def _segments(x: torch.Tensor) -> torch.Tensor:
    """Reference window layout (B, S, T, C, H, W) -> encoder input (B*S, C, T, H, W)."""
    return x.permute(0, 1, 3, 2, 4, 5).flatten(0, 1)


def _synchformer_with_context(case: dict) -> None:
    model = SynchformerWithContext(_config(case))
    load_state_dict_strict(model, case["state_dict"], what=case["case"])
    x, mask = case["inputs"]["x"], case["inputs"]["mask"]
    detail_x, detail_mask = case["inputs"]["detail_x"], case["inputs"]["detail_mask"]
    produced = {}
    model.eval()
    with torch.inference_mode():
        produced["features"] = model(x, mask, detail_x, detail_mask)
        encoder = model.vfeat_extractor
        context = encoder.context_tokens(_segments(x), _segments(mask))
        produced["inter.full_pass_tokens"] = context
        produced["inter.detail_pass_tokens"] = encoder.focal_tokens(
            _segments(detail_x), _segments(detail_mask), context)
        produced["inter.patch_embed_3d"] = encoder.patch_embed_3d(_segments(x))
        produced["inter.patch_embed_3d_mask"] = encoder.patch_embed_3d_mask(_segments(mask))
    produced["features_eval_grad"] = model(x, mask, detail_x, detail_mask)
    model.train()
    produced["features_train_mode"] = model(x, mask, detail_x, detail_mask)
    assert_outputs(case, produced)


def _synchformer(case: dict) -> None:
    model = Synchformer(_config(case))
    load_state_dict_strict(model, case["state_dict"], what=case["case"])
    x = case["inputs"]["x"]
    produced = {}
    model.eval()
    with torch.inference_mode():
        produced["features"] = model(x)
    model.train()
    produced["features_train_mode"] = model(x)
    assert_outputs(case, produced)


def _focal_crop(case: dict) -> None:
    x, masks = case["inputs"]["x"], case["inputs"]["x_mask"]
    boxes = focal_crop_boxes(masks)
    recorded = [[w["crop_x0"], w["crop_y0"], w["crop_x1"], w["crop_y1"]]
                for w in case["notes"]["crop_window"]]
    assert boxes.tolist() == recorded, f"{case['case']}: box {boxes.tolist()} != {recorded}"
    detail_x, detail_mask = focal_crop(x, masks)
    assert_outputs(case, {"detail_x": detail_x, "detail_mask": detail_mask})


def _official(cls: type[torch.nn.Module]) -> Callable[[], dict[str, tuple]]:
    def build() -> dict[str, tuple]:
        with torch.device("meta"):
            return manifest_shapes(cls(SynchformerConfig()))

    return build


HANDLERS: dict[str, Callable[[dict], None]] = {
    "saganet.ext.synchformer.synchformer_with_context.SynchformerWithContext":
        _synchformer_with_context,
    "saganet.ext.synchformer.synchformer.Synchformer": _synchformer,
    "training.extract_focal_prompt.run_focal_crop": _focal_crop,
}

MANIFESTS: dict[str, Callable[[], dict[str, tuple]]] = {
    "synchformer": _official(Synchformer),
    "synchformer_with_context": _official(SynchformerWithContext),
}
