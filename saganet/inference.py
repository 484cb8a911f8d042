"""``generate()``: the one path from video, mask and prompt to audio.

``demo.py``, ``batch_eval.py``, ``python -m saganet.batch``, the web app and the trainer's
validation all run it, so a fix or a speed-up here reaches every user. Its three stages are
public because long videos run them apart (:mod:`saganet.soundtrack`): conditions are encoded
window by window while the video streams past, all windows are sampled together, and the
latents are decoded window by window.

1. :func:`encode_conditions`: CLIP image and text features, focal crop and
   segmentation-aware Synchformer features, projected by the network;
2. :func:`sample`: flow sampling with classifier-free guidance (negative prompts optional),
   optionally fusing the velocities of overlapping windows at every step;
3. :func:`decode`: VAE decoder and vocoder.

The only random draw is the initial noise, taken from the caller's generator, so a seed fixes
the result on a given device and dtype.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING

import torch

from saganet.cancel import CancelToken
from saganet.errors import UserInputError, check_cfg_strength
from saganet.features import encode_sync, focal_crop, focal_crop_boxes
from saganet.inference_checks import checked_batch
from saganet.model import Conditions, FlowMatching
from saganet.model.flow_matching import METHODS as SAMPLING_METHODS
from saganet.models import SAGANetModels
from saganet.progress import progress_bar

if TYPE_CHECKING:
    from saganet.features.clip import ClipEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample.

    Args:
        cfg_strength: classifier-free guidance strength (below 1: conditional flow only).
        num_steps: Euler steps (ignored by the adaptive solver).
        method: ``"euler"`` or ``"adaptive"`` (dopri5).
        batch_cfg: run the conditional and unconditional passes as one batch (faster; equal
            up to float rounding).
        clip_chunk_size: CLIP images per forward pass (None: all at once). Chunks bound the
            activation memory (about 0.1 GB per image at 384 px, fp32); on a CPU 1, 4 or 40
            images per pass cost the same time per image.
        sync_chunk_size: Synchformer windows per forward pass (None: all at once); each window
            is already 1569 tokens, so small chunks cost no speed.
        network_chunk_size: clips per network pass while sampling (None: the whole batch);
            bounds the activation memory of large batches (many windows of a long video).
        release_clip: drop ``models.clip_encoder`` (about 4 GB of fp32 weights) as soon as the
            CLIP features are computed, so that the later stages reuse its memory. For
            one-shot runs only: the models cannot encode CLIP features afterwards.
    """

    cfg_strength: float = 4.5
    num_steps: int = 25
    method: str = "euler"
    batch_cfg: bool = True
    clip_chunk_size: int | None = 4
    sync_chunk_size: int | None = 2
    network_chunk_size: int | None = None
    release_clip: bool = False

    def __post_init__(self) -> None:
        # Checked when built, not steps later inside the sampler (0 chunks meant "all"; a NaN
        # guidance strength gave NaN audio without an error).
        object.__setattr__(self, "cfg_strength",
                           check_cfg_strength(self.cfg_strength, "SamplingOptions.cfg_strength"))
        if self.method not in SAMPLING_METHODS:
            raise UserInputError(f"SamplingOptions.method {self.method!r} is unknown; choose "
                                 f"one of {', '.join(SAMPLING_METHODS)}")
        if not _positive_int(self.num_steps):
            raise UserInputError(f"SamplingOptions.num_steps must be a positive int, got "
                                 f"{self.num_steps!r}")
        for name in ("clip_chunk_size", "sync_chunk_size", "network_chunk_size"):
            value = getattr(self, name)
            if value is not None and not _positive_int(value):
                raise UserInputError(f"SamplingOptions.{name} must be a positive int or None "
                                     f"(all at once), got {value!r}")


def checked_options(options: SamplingOptions | None) -> SamplingOptions:
    """``options``, or the defaults for None; anything else (a dict of settings) is a
    :class:`UserInputError` here, not an ``AttributeError`` once the work has started."""
    if options is None:
        return SamplingOptions()
    if not isinstance(options, SamplingOptions):
        hint = " (SamplingOptions(**settings) builds one)" if isinstance(options, dict) else ""
        raise UserInputError(f"options must be a saganet.inference.SamplingOptions or None, "
                             f"got {type(options).__name__}{hint}")
    return options


def _positive_int(value: object) -> bool:
    # Any integer type (Python, NumPy, a config's), not bool.
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


@dataclass
class GenerationBatch:
    """Inputs for ``B`` clips of the same duration (the duration the models are set to).

    Frames may also be uint8 (0-255) and masks uint8 (0/255) or bool, as read from files: they
    are converted as :func:`saganet.media.load_video_inputs` converts them. Tensors may be on
    any device. :func:`generate` checks the batch first (:mod:`saganet.inference_checks`).

    Args:
        sync_frames: ``(B, Ts, 3, 224, 224)`` 25 fps frames in [-1, 1].
        masks: ``(B, Ts, 1, 224, 224)`` 25 fps masks in [0, 1].
        clip_frames: ``(B, Tc, 3, S, S)`` 8 fps frames in [0, 1] at the CLIP size, or None for
            no CLIP condition (``--mask_away_clip``).
        texts: one prompt per clip, a list (None: the network's stored empty prompt).
        negative_texts: one negative prompt per clip, used by the unconditional branch
            (None: the stored empty prompt).
        detail_frames: focal-crop frames like ``sync_frames`` (computed from the masks if None).
        detail_masks: focal-crop masks like ``masks``.
        clip_features: precomputed ``(B, Tc, clip_dim)`` CLIP features (replace clip_frames).
        sync_features: precomputed ``(B, Ns, sync_dim)`` Synchformer features
            (:func:`encode_sync_features`; replace the Synchformer's pass over sync_frames and
            masks, which are still checked).
        text_features: precomputed ``(B, 77, text_dim)`` text features (replace texts).
        negative_text_features: precomputed features of the negative prompts (replace
            negative_texts).
        names: one name per clip (its id), used in warnings (a clip whose mask is empty in
            every frame); None names the clips by their position in the batch.
    """

    sync_frames: torch.Tensor
    masks: torch.Tensor
    clip_frames: torch.Tensor | None = None
    texts: Sequence[str] | None = None
    negative_texts: Sequence[str] | None = None
    detail_frames: torch.Tensor | None = None
    detail_masks: torch.Tensor | None = None
    clip_features: torch.Tensor | None = None
    sync_features: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    negative_text_features: torch.Tensor | None = None
    names: Sequence[str] | None = None

    def __len__(self) -> int:
        return self.sync_frames.shape[0]


@dataclass
class GenerationResult:
    """Audio ``(B, 1, L)`` float32 in [-1, 1] at ``sampling_rate`` and latents ``(B, N, C)``,
    ordinary CPU tensors (not inference tensors: they may be edited in place)."""

    audio: torch.Tensor
    latents: torch.Tensor
    sampling_rate: int


@torch.inference_mode()
def encode_conditions(models: SAGANetModels, batch: GenerationBatch,
                      options: SamplingOptions) -> tuple[Conditions, Conditions]:
    """Features of a batch turned into the conditional and unconditional branch inputs.

    Args:
        models: loaded models, set to the clips' duration.
        batch: the clips (checked first; see :mod:`saganet.inference_checks`).
        options: chunk sizes and ``release_clip``.

    Raises:
        UserInputError: a batch that does not fit itself or the models (one line).
    """
    return _encode(models, _checked(models, batch), checked_options(options))


def _encode(models: SAGANetModels, batch: GenerationBatch,
            options: SamplingOptions) -> tuple[Conditions, Conditions]:
    """:func:`encode_conditions` of a batch and options already checked."""
    net, device, dtype, b = models.network, models.device, models.dtype, len(batch)
    # Everything CLIP computes comes first, so that CLIP can be released before the rest.
    if batch.clip_features is not None:
        clip_f = batch.clip_features.to(device, dtype)
    elif batch.clip_frames is not None:
        # Unmoved: the encoder moves each distinct clip once (objects share their video's).
        clip_f = _clip_encoder(models).encode_images(batch.clip_frames,
                                                     chunk_size=options.clip_chunk_size)
    else:
        clip_f = net.get_empty_clip_sequence(b)
    if batch.text_features is not None:
        text_f = batch.text_features.to(device, dtype)
    elif batch.texts is not None:
        text_f = _clip_encoder(models).encode_text(list(batch.texts))
    else:
        text_f = net.get_empty_string_sequence(b)
    negative = None
    if batch.negative_text_features is not None:
        negative = batch.negative_text_features.to(device, dtype)
    elif batch.negative_texts is not None:
        negative = _clip_encoder(models).encode_text(list(batch.negative_texts))
    if options.release_clip and models.clip_encoder is not None:
        models.clip_encoder = None
        gc.collect()
        log.info("CLIP released after use")
    if batch.sync_features is not None:
        sync_f = batch.sync_features.to(device, dtype)
    else:
        sync_f = _sync_features(models, batch, options)
    conditions = net.preprocess_conditions(clip_f, sync_f, text_f)
    return conditions, net.get_empty_conditions(b, negative_text_features=negative)


@torch.inference_mode()
def encode_sync_features(models: SAGANetModels, batch: GenerationBatch,
                         options: SamplingOptions | None = None) -> torch.Tensor:
    """The segmentation-aware Synchformer's features of a batch's frames and masks, as
    ``GenerationBatch.sync_features`` takes them: they depend on nothing else (not on the
    prompts, CLIP or the sampler), so they can be kept for another generation.

    Args:
        models: loaded models, set to the clips' duration.
        batch: the clips (checked first; its CLIP and text fields are not used).
        options: ``sync_chunk_size``.

    Returns:
        ``(B, Ns, sync_dim)`` on the models' device, in their dtype.
    """
    return _sync_features(models, _checked(models, batch), checked_options(options))


def _sync_features(models: SAGANetModels, batch: GenerationBatch,
                   options: SamplingOptions) -> torch.Tensor:
    """:func:`encode_sync_features` of a batch and options already checked."""
    device, dtype = models.device, models.dtype
    frames, masks = batch.sync_frames, batch.masks
    detail_frames, detail_masks = batch.detail_frames, batch.detail_masks
    if detail_frames is None or detail_masks is None:
        # The crop box comes from CPU float masks: any non-zero pixel counts, as in training.
        # The crops are resized in fp32 where the Synchformer runs: on a GPU, not on the
        # host's cores (0.4 CPU-seconds per 5 s window).
        boxes = focal_crop_boxes(masks.float(), names=batch.names)
        frames, masks = frames.to(device, torch.float32), masks.to(device, torch.float32)
        detail_frames, detail_masks = focal_crop(frames, masks, boxes=boxes)
    return encode_sync(models.synchformer,
                       *(x.to(device, dtype) for x in (frames, masks, detail_frames, detail_masks)),
                       chunk_size=options.sync_chunk_size)


def _checked(models: SAGANetModels, batch: GenerationBatch) -> GenerationBatch:
    """``batch`` checked against the models (:func:`~saganet.inference_checks.checked_batch`)."""
    clip, config = models.clip_encoder, models.network.config
    return checked_batch(batch, models.sequence, None if clip is None else clip.image_size,
                         clip_dim=config.clip_dim, sync_dim=config.sync_dim,
                         text_shape=(config.text_seq_len, config.text_dim))


def _clip_encoder(models: SAGANetModels) -> ClipEncoder:
    if models.clip_encoder is None:
        raise ValueError("these models were loaded without CLIP; pass precomputed features")
    return models.clip_encoder


def initial_noise(shape: tuple[int, int, int],
                  generator: torch.Generator | Sequence[torch.Generator],
                  device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal ``(B, N, C)`` noise from one generator, or from one generator per clip."""
    check_generator(generator, shape[0])
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=device, dtype=dtype)
                      for g in generator])


def check_generator(generator: object, size: int) -> None:
    """``generator`` is one ``torch.Generator`` or a list of one per clip of a batch of ``size``.

    Raises:
        UserInputError: a seed or anything else, or a list of another length than the batch.
    """
    if isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, Sequence) or not all(isinstance(g, torch.Generator)
                                                      for g in generator):
        raise UserInputError(f"generator must be a torch.Generator or a list of one per clip, "
                             f"got {type(generator).__name__} (a seed: "
                             "torch.Generator(device).manual_seed(seed))")
    if len(generator) != size:
        raise UserInputError(f"generator: {len(generator)} generator(s) for a batch of {size} "
                             "clip(s): give one per clip, or a single one")


VelocityFusion = Callable[[torch.Tensor], torch.Tensor]
"""Maps the guided velocity ``(B, N, C)`` of a batch to the velocity actually integrated; a
long video's windows share their overlap this way (:mod:`saganet.soundtrack.join`)."""


@torch.inference_mode()
def sample(models: SAGANetModels, conditions: Conditions, empty: Conditions,
           noise: torch.Tensor, *, options: SamplingOptions | None = None,
           fuse: VelocityFusion | None = None, progress: bool = False,
           on_step: Callable[[int], None] | None = None,
           cancel: CancelToken | None = None) -> torch.Tensor:
    """Integrate the guided flow from ``noise`` to un-normalised latents ``(B, N, C)``.

    Args:
        models: loaded models, set to the clips' duration.
        conditions: conditional branch (:func:`encode_conditions`).
        empty: unconditional branch.
        noise: ``(B, N, C)`` initial noise (:func:`initial_noise`): ``B`` clips of the
            conditions, ``N`` latents of the models' duration, ``C`` latent channels; any
            float dtype and device (cast to the models').
        options: sampler settings.
        fuse: applied to every guided velocity before the step is taken.
        progress: show a progress bar over the network evaluations.
        on_step: called with the number of network evaluations done so far.
        cancel: checked before every network evaluation (raises
            :class:`~saganet.cancel.CancelledError` once cancelled).

    Raises:
        UserInputError: noise of another shape than the conditions and models need, or not
            floating point.
    """
    options = checked_options(options)
    net = models.network
    noise = _checked_noise(noise, (len(conditions.clip_f), net.config.latent_seq_len,
                                   net.config.latent_dim), models)
    chunk = options.network_chunk_size or len(noise)
    bar = progress_bar(total=options.num_steps if options.method == "euler" else None,
                       desc="sampling", unit="step", disable=not progress, leave=False)
    calls = 0

    def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        if cancel is not None:
            cancel.check()
        parts = [net.ode_wrapper(t, x[i : i + chunk],
                                 conditions.select(slice(i, i + chunk)),
                                 empty.select(slice(i, i + chunk)),
                                 options.cfg_strength, batched=options.batch_cfg)
                 for i in range(0, len(x), chunk)]
        v = parts[0] if len(parts) == 1 else torch.cat(parts)
        calls += 1
        bar.update(1)
        if on_step is not None:
            on_step(calls)
        return v if fuse is None else fuse(v)

    try:
        flow = FlowMatching(method=options.method, num_steps=options.num_steps)
        return net.unnormalize(flow.to_data(velocity, noise))  # (B, N, C)
    finally:
        bar.close()


def _checked_noise(noise: object, shape: tuple[int, int, int],
                   models: SAGANetModels) -> torch.Tensor:
    # Checked here: a wrong shape failed deep in the network (a batch of another size as a
    # broadcast error, a missing batch axis as a wrong token count), another dtype in a matmul.
    if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != shape \
            or not noise.is_floating_point():
        got = (f"{noise.dtype} {tuple(noise.shape)}" if isinstance(noise, torch.Tensor)
               else type(noise).__name__)
        raise UserInputError(f"noise must be a float tensor {shape} (clips of the conditions, "
                             f"latents of the models' duration, latent channels), got {got}")
    return noise.to(device=models.device, dtype=models.dtype)


@torch.inference_mode()
def decode(models: SAGANetModels, latents: torch.Tensor) -> torch.Tensor:
    """Audio ``(B, 1, N * samples_per_latent)`` float32 in [-1, 1], on the CPU (an inference
    tensor, like :func:`sample`'s latents: ``.clone()`` it to edit it in place).

    Args:
        models: loaded models (their codec decodes).
        latents: ``(B, N, C)`` latents as :func:`sample` returns them (un-normalised), ``C``
            the codec's latent channels, on the models' device; any float dtype (cast to the
            codec's).

    Raises:
        UserInputError: latents that are not a floating-point tensor.
        ValueError: latents of another rank or channel count than the codec's.
    """
    # Integer latents would be cast and decoded as if they were latents: never what was meant.
    if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
        got = latents.dtype if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise UserInputError(f"latents must be a float tensor (B, N, {models.codec.latent_dim}) "
                             f"(clips, latents, latent channels), got {got}")
    return models.codec.decode(latents).float().clamp(-1, 1).cpu()


def generate(
    models: SAGANetModels,
    batch: GenerationBatch,
    *,
    generator: torch.Generator | Sequence[torch.Generator],
    options: SamplingOptions | None = None,
    progress: bool = False,
    on_step: Callable[[int], None] | None = None,
    cancel: CancelToken | None = None,
) -> GenerationResult:
    """Generate audio for a batch of clips.

    Args:
        models: loaded models (see :func:`saganet.pipeline.load_models`), already set to the
            batch's duration with ``models.set_duration``.
        batch: the clips.
        generator: source of the initial noise (on the models' device), or one generator per
            clip so that a clip's noise does not depend on the rest of the batch.
        options: sampler settings.
        progress: show a progress bar over the network evaluations.
        on_step: called with the number of network evaluations done so far.
        cancel: checked before the features, every network evaluation and the decoding
            (raises :class:`~saganet.cancel.CancelledError` once cancelled).

    Raises:
        UserInputError: a batch that does not fit itself or the models' duration (shapes,
            frame counts, one prompt per clip), named in one line.
    """
    options = checked_options(options)
    # The batch, then the generators against its size, before the features are encoded.
    batch = _checked(models, batch)
    check_generator(generator, len(batch))
    if cancel is not None:
        cancel.check()
    with torch.inference_mode():
        conditions, empty = _encode(models, batch, options)
        net = models.network
        shape = (len(batch), net.config.latent_seq_len, net.config.latent_dim)
        x0 = initial_noise(shape, generator, models.device, models.dtype)  # (B, N, C)
        latents = sample(models, conditions, empty, x0, options=options, progress=progress,
                         on_step=on_step, cancel=cancel)
        if cancel is not None:
            cancel.check()
        audio = decode(models, latents)
    # Copied outside inference mode: inference tensors refuse in-place edits (normalising the
    # audio, `audio *= gain`) and autograd, which callers of a library may well do.
    return GenerationResult(audio.clone(), latents.float().cpu().clone(),
                            models.codec.sampling_rate)
