"""Build an open_clip model from its checkpoint while holding its weights only once.

``open_clip.create_model_from_pretrained`` builds the model with random weights and then copies
the checkpoint into it, so the process briefly holds two copies (7.4 GiB for the fp32 DFN5B
ViT-H/14). Here the model is built with its parameters left uninitialised (their memory is
reserved but never written, so it is never resident), and the checkpoint's tensors then
*become* the parameters (``load_state_dict(assign=True)``): the reserved memory is released
without ever having been touched. open_clip's own checkpoint conversions still run, because
the checkpoint goes through ``open_clip.load_checkpoint``.

The values never depend on skipping the initialisation: every parameter is replaced by the
checkpoint (strictly, every key must be present), and buffers that do not come from the
checkpoint (the text tower's causal mask) are built as usual.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from saganet.errors import UserInputError
from saganet.state_dict import load_state_dict_strict

# Writers of parameter values used while modules initialise themselves: torch.nn.init's
# functions and the in-place tensor methods they (and hand-written inits) are made of.
_INIT_WRITERS = frozenset({
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
    "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "orthogonal_", "sparse_", "fill_", "zero_", "copy_", "erfinv_", "mul_", "add_", "sub_",
    "div_", "clamp_", "exp_", "random_", "bernoulli_", "exponential_", "log_normal_",
})

# open_clip's order of preference among the weight files of a model folder.
_CHECKPOINT_NAMES = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth", "model.safetensors",
    "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)


class SkipParameterInit(TorchFunctionMode):
    """While active, initialisers that write into an ``nn.Parameter`` do nothing.

    Only for models whose every parameter is loaded afterwards: their values stay whatever the
    allocator returned.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in _INIT_WRITERS:
            # torch.nn.init passes its tensor by keyword when it dispatches here.
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, nn.Parameter):
                return target
        return func(*args, **kwargs)


def checkpoint_in_folder(folder: str | Path) -> Path:
    """The weights file of an open_clip model folder (``local-dir:`` models).

    Raises:
        UserInputError: the folder holds none of open_clip's weight file names.
    """
    folder = Path(folder)
    for name in _CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise UserInputError(f"no CLIP weights file ({', '.join(_CHECKPOINT_NAMES[:3])}, ...)",
                         folder)


@contextlib.contextmanager
def _quiet_random_weights_warning() -> Iterator[None]:
    """Hide open_clip's "initialized randomly" warning: the weights are loaded right after."""
    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _checkpoint_of(name: str, cache_dir: str | None) -> Path:
    schema, _, identifier = name.partition(":")
    if schema == "local-dir":
        return checkpoint_in_folder(identifier)
    from open_clip.pretrained import download_pretrained_from_hf

    return Path(download_pretrained_from_hf(identifier, cache_dir=cache_dir))


def load_open_clip(name: str, cache_dir: str | None = None) -> nn.Module:
    """An open_clip model with its checkpoint's weights, on the CPU, in evaluation mode.

    Args:
        name: ``local-dir:<folder>`` or ``hf-hub:<repo>`` (the schemes that name one weights
            file); other names go through ``open_clip.create_model_from_pretrained``.
        cache_dir: Hugging Face cache folder for ``hf-hub:`` models (default: the hub's).

    Raises:
        CheckpointMismatchError: the checkpoint's keys or shapes do not fit the model.
        FileNotFoundError: a ``hf-hub:`` file is neither cached nor downloadable.
    """
    import open_clip

    if not name.startswith(("local-dir:", "hf-hub:")):
        model = open_clip.create_model_from_pretrained(name, return_transform=False,
                                                       cache_dir=cache_dir)
        return model.eval()
    checkpoint = _checkpoint_of(name, cache_dir)
    with SkipParameterInit(), _quiet_random_weights_warning():
        model = open_clip.create_model(name, load_weights=False, cache_dir=cache_dir)

    def assign(state_dict: dict[str, torch.Tensor], strict: bool = True) -> None:
        # open_clip calls this after its conversions; the class's method does the loading.
        del model.load_state_dict
        load_state_dict_strict(model, state_dict, what=str(checkpoint), assign=True)

    model.load_state_dict = assign
    try:
        open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
    finally:
        model.__dict__.pop("load_state_dict", None)
    return model.eval()
