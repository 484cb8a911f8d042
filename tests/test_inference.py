"""``generate()`` as a library user calls it: batches built by hand, seeds and generators,
repeated calls on one set of models, grad modes, inputs as read from files, and bad input
reported as one-line :class:`UserInputError` before any model runs."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch

from saganet.debug_weights import build_debug_models
from saganet.errors import UserInputError
from saganet.inference import (
    GenerationBatch,
    SamplingOptions,
    decode,
    encode_conditions,
    encode_sync_features,
    generate,
    sample,
)
from saganet.media.video import clip_input, mask_input, sync_input
from saganet.models import SAGANetModels

OPTIONS = SamplingOptions(num_steps=2)
# The shortest clip the Synchformer takes (one 16-frame window) plus a little: fast.
DURATION = 0.8


@pytest.fixture(scope="module")
def models() -> SAGANetModels:
    models = build_debug_models(seed=0)
    models.set_duration(DURATION)
    return models


def uint8_batch(models: SAGANetModels, size: int, seed: int = 0) -> GenerationBatch:
    """``size`` random clips as read from files (uint8 frames, 0/255 masks), sized for the
    models' duration."""
    sequence = models.sequence
    sync_len, clip_len = int(sequence.num_sync_frames), sequence.clip_seq_len
    side = models.clip_encoder.image_size
    g = torch.Generator().manual_seed(seed)
    sync = torch.randint(0, 256, (size, sync_len, 3, 224, 224), generator=g, dtype=torch.uint8)
    masks = torch.zeros(size, sync_len, 1, 224, 224, dtype=torch.uint8)
    for k in range(size):  # one square per clip, at another place in each
        masks[k, :, :, 20 + 30 * k : 120 + 30 * k, 40 : 140] = 255
    clip = torch.randint(0, 256, (size, clip_len, 3, side, side), generator=g, dtype=torch.uint8)
    return GenerationBatch(sync_frames=sync, masks=masks, clip_frames=clip,
                           texts=[f"violin {k}" for k in range(size)],
                           negative_texts=["" for _ in range(size)])


def float_batch(batch: GenerationBatch) -> GenerationBatch:
    """The documented float layout of a uint8 batch."""
    return dataclasses.replace(batch, sync_frames=sync_input(batch.sync_frames),
                               masks=mask_input(batch.masks),
                               clip_frames=clip_input(batch.clip_frames))


def run(models: SAGANetModels, batch: GenerationBatch, seed: int = 7) -> torch.Tensor:
    return generate(models, batch, generator=torch.Generator().manual_seed(seed),
                    options=OPTIONS).audio


def test_same_seed_same_audio_and_no_state_between_calls(models) -> None:
    batch = float_batch(uint8_batch(models, 1))
    first = run(models, batch)
    other_seed = run(models, batch, seed=8)
    with torch.no_grad():
        again = run(models, batch)
    with torch.inference_mode():
        inside = run(models, batch)
    assert torch.equal(first, again) and torch.equal(first, inside)
    assert not torch.equal(first, other_seed)
    assert first.shape == (1, 1, models.sequence.num_audio_samples)


def test_one_generator_per_clip_makes_a_clip_independent_of_its_batch(models) -> None:
    pair = float_batch(uint8_batch(models, 2))
    seeds = [3, 4]
    together = generate(models, pair, options=OPTIONS,
                        generator=[torch.Generator().manual_seed(s) for s in seeds]).audio
    for k, seed in enumerate(seeds):
        alone = dataclasses.replace(
            pair, sync_frames=pair.sync_frames[k : k + 1], masks=pair.masks[k : k + 1],
            clip_frames=pair.clip_frames[k : k + 1], texts=pair.texts[k : k + 1],
            negative_texts=pair.negative_texts[k : k + 1])
        # Equal up to float rounding: batched products may sum in another order.
        torch.testing.assert_close(together[k : k + 1], run(models, alone, seed),
                                   atol=1e-4, rtol=0)


def test_frames_and_masks_as_read_from_files_are_converted(models) -> None:
    raw = uint8_batch(models, 1)
    expected = run(models, float_batch(raw))
    assert torch.equal(run(models, raw), expected)
    boolean = dataclasses.replace(float_batch(raw), masks=raw.masks > 0)
    assert torch.equal(run(models, boolean), expected)


def test_results_are_ordinary_tensors(models) -> None:
    result = generate(models, float_batch(uint8_batch(models, 1)),
                      generator=torch.Generator().manual_seed(0), options=OPTIONS)
    peak = result.audio.abs().max()
    result.audio /= peak  # in place, as a user normalises audio
    result.latents.mul_(2)
    assert result.audio.abs().max().item() == pytest.approx(1.0)
    assert not result.audio.is_inference() and not result.latents.is_inference()


def _bad_batches() -> dict[str, tuple[Callable[[GenerationBatch], GenerationBatch], str]]:
    """Mistakes a user makes, each with the words its error must hold."""
    def replace(**changes):
        return lambda b: dataclasses.replace(b, **{k: f(b) for k, f in changes.items()})

    return {
        "no batch dimension": (replace(sync_frames=lambda b: b.sync_frames[0]), "5-D"),
        "masks with fewer frames": (replace(masks=lambda b: b.masks[:, 1:]), "masks"),
        "masks of another size": (replace(masks=lambda b: b.masks[..., ::2, ::2]), "masks"),
        "masks in three channels": (replace(masks=lambda b: b.masks.expand(-1, -1, 3, -1, -1)),
                                    "channel"),
        "frames of another size": (replace(sync_frames=lambda b: b.sync_frames[..., 1:, 1:],
                                           masks=lambda b: b.masks[..., 1:, 1:]), "224x224"),
        "clips of another duration": (replace(sync_frames=lambda b: b.sync_frames[:, :-8],
                                              masks=lambda b: b.masks[:, :-8]), "set_duration"),
        "CLIP frames of another duration": (replace(clip_frames=lambda b: b.clip_frames[:, 1:]),
                                            "set_duration"),
        "CLIP frames of another size": (replace(clip_frames=lambda b: b.clip_frames[..., 1:, 1:]),
                                        "clip_frames"),
        "a prompt as a bare string": (replace(texts=lambda b: b.texts[0]), "list of strings"),
        "more prompts than clips": (replace(texts=lambda b: [*b.texts, "x"]), "one per clip"),
        "more names than clips": (replace(names=lambda b: ["a", "b", "c"]),
                                  "one per clip"),
        "fewer negative prompts than clips": (
            replace(negative_texts=lambda b: b.negative_texts[1:]), "one per clip"),
        "numpy frames": (replace(sync_frames=lambda b: b.sync_frames.numpy()), "torch.Tensor"),
        "integer masks": (replace(masks=lambda b: b.masks.long()), "float"),
        "an empty batch": (replace(sync_frames=lambda b: b.sync_frames[:0],
                                   masks=lambda b: b.masks[:0],
                                   clip_frames=lambda b: b.clip_frames[:0],
                                   texts=lambda b: [], negative_texts=lambda b: []), "empty"),
        "detail frames without their masks": (replace(detail_frames=lambda b: b.sync_frames),
                                              "detail_masks"),
        "text features for another batch": (replace(
            texts=lambda b: None,
            text_features=lambda b: torch.zeros(len(b) + 1, 77, 64)), "text_features"),
    }


def test_the_empty_mask_warning_names_the_clips_of_the_batch(models, caplog) -> None:
    """generate() crops the clips: a clip without its object is named as the batch names it."""
    batch = uint8_batch(models, 2)
    batch.masks[1] = 0
    names = ["solos/violin/a_0_1000", "solos/cello/b_0_1000"]
    with caplog.at_level(logging.WARNING, logger="saganet.features.focal_crop"):
        run(models, dataclasses.replace(batch, names=names))
    assert f"clip(s) {names[1]}:" in caplog.text and names[0] not in caplog.text


@pytest.mark.parametrize("mistake", list(_bad_batches()))
def test_bad_batches_are_one_line_user_errors(models, mistake: str) -> None:
    change, words = _bad_batches()[mistake]
    batch = change(uint8_batch(models, 2))
    with pytest.raises(UserInputError) as info:
        run(models, batch)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("field", ["clip_features", "sync_features", "text_features",
                                   "negative_text_features"])
@pytest.mark.parametrize("wrong", ["channels", "tokens"])
def test_precomputed_features_of_another_shape_are_user_errors(models, field: str,
                                                               wrong: str) -> None:
    """Features of another encoder (other channels) or another length are named, not a
    matrix-shape error from inside the network."""
    config, sequence = models.network.config, models.sequence
    tokens, channels = {"clip_features": (sequence.clip_seq_len, config.clip_dim),
                        "sync_features": (sequence.sync_seq_len, config.sync_dim)}.get(
        field, (config.text_seq_len, config.text_dim))
    shape = (1, tokens + 1, channels) if wrong == "tokens" else (1, tokens, channels + 1)
    replaced = {"clip_features": {"clip_frames": None}, "sync_features": {},
                "text_features": {"texts": None}}.get(field, {"negative_texts": None})
    batch = dataclasses.replace(uint8_batch(models, 1), **{field: torch.zeros(shape)},
                                **replaced)
    with pytest.raises(UserInputError, match=f"{field} .*{wrong if wrong == 'channels' else ''}"):
        run(models, batch)


def test_precomputed_sync_features_give_the_same_audio(models) -> None:
    """``encode_sync_features`` computes what generate() would: passed as ``sync_features``
    they give the same audio, and the Synchformer does not run again."""
    batch = uint8_batch(models, 2, seed=3)
    expected = run(models, batch)
    features = encode_sync_features(models, batch, OPTIONS)
    sequence, config = models.sequence, models.network.config
    assert features.shape == (len(batch), sequence.sync_seq_len, config.sync_dim)
    synchformer = models.synchformer
    try:
        models.synchformer = None  # would fail if it ran
        ours = run(models, dataclasses.replace(batch, sync_features=features))
    finally:
        models.synchformer = synchformer
    assert torch.equal(ours, expected)


def test_models_cast_to_double_generate_audio(models) -> None:
    """``models.to(torch.float64)`` runs: the codec's norms accumulate in at least fp32, not
    in exactly fp32, which a float64 input refused deep inside torch."""
    double = build_debug_models(seed=0).to(torch.float64)
    double.set_duration(models.sequence.duration)
    audio = run(double, float_batch(uint8_batch(models, 1)))
    assert audio.dtype == torch.float32 and audio.isfinite().all()
    assert audio.shape == (1, 1, double.sequence.num_audio_samples)


def test_models_set_to_another_duration_say_how_to_fix_it(models) -> None:
    batch = uint8_batch(models, 1)
    models.set_duration(2 * DURATION)
    try:
        with pytest.raises(UserInputError, match=r"models\.set_duration"):
            run(models, batch)
    finally:
        models.set_duration(DURATION)
    assert run(models, batch).shape[-1] == models.sequence.num_audio_samples


@pytest.mark.parametrize("generator", [42, None, [42]])
def test_a_seed_instead_of_a_generator_is_a_user_error(models, generator) -> None:
    with pytest.raises(UserInputError, match=r"torch\.Generator"):
        generate(models, uint8_batch(models, 1), generator=generator, options=OPTIONS)


@pytest.mark.parametrize("extra", [-1, 1])
def test_a_generator_list_of_another_length_is_a_user_error_before_any_model_runs(
        models, extra: int, monkeypatch) -> None:
    batch = uint8_batch(models, 2)
    generators = [torch.Generator().manual_seed(k) for k in range(len(batch) + extra)]
    monkeypatch.setattr(models.synchformer, "forward", None)  # any model run would fail
    with pytest.raises(UserInputError, match=r"generator.*one per clip"):
        generate(models, batch, generator=generators, options=OPTIONS)


@pytest.mark.parametrize("options", [
    {"num_steps": 0}, {"num_steps": 2.5}, {"method": "rk4"}, {"clip_chunk_size": 0},
    {"sync_chunk_size": -1}, {"network_chunk_size": 0}, {"cfg_strength": float("nan")},
    {"cfg_strength": float("inf")}, {"cfg_strength": "7"}])
def test_sampling_options_are_checked_when_built(options: dict) -> None:
    with pytest.raises(UserInputError, match=next(iter(options))):
        SamplingOptions(**options)


def test_options_given_as_a_dict_are_a_user_error(models) -> None:
    with pytest.raises(UserInputError, match=r"options.*SamplingOptions\(\*\*settings\)"):
        generate(models, uint8_batch(models, 1), generator=torch.Generator().manual_seed(0),
                 options={"num_steps": 2})


def test_importing_saganet_leaves_torch_global_state_alone() -> None:
    """A notebook's thread count, default dtype, grad mode, RNG and matmul settings survive
    ``import saganet...`` (only the entry points apply the thread policy)."""
    probe = (
        "import json, torch\n"
        "def state():\n"
        "    return [torch.get_num_threads(), torch.get_num_interop_threads(),\n"
        "            str(torch.get_default_dtype()), torch.is_grad_enabled(),\n"
        "            torch.are_deterministic_algorithms_enabled(),\n"
        "            torch.get_float32_matmul_precision(),\n"
        "            torch.backends.cudnn.benchmark, torch.random.initial_seed(),\n"
        "            torch.random.get_rng_state().tolist()]\n"
        "torch.set_num_threads(3)\n"
        "before = state()\n"
        "import saganet.inference, saganet.pipeline, saganet.soundtrack, saganet.media\n"
        "import saganet.media.masks, saganet.features, saganet.codec, saganet.model\n"
        "print(json.dumps([before, state()]))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    before, after = json.loads(out.splitlines()[-1])
    assert after == before


@pytest.mark.parametrize("mistake", ["unbatched", "short", "channels", "batch", "integer"])
def test_sample_names_noise_of_the_wrong_shape_or_type(models, mistake: str) -> None:
    """``sample`` is public: noise that does not fit the conditions or the models is one
    line naming ``noise`` and the shape wanted, not an error deep in the network."""
    batch = uint8_batch(models, 1)
    conditions, empty = encode_conditions(models, batch, OPTIONS)
    net = models.network.config
    shape = (len(batch), net.latent_seq_len, net.latent_dim)
    noise = {"unbatched": torch.randn(shape[1:]),
             "short": torch.randn(shape[0], shape[1] - 1, shape[2]),
             "channels": torch.randn(*shape[:2], shape[2] + 1),
             "batch": torch.randn(shape[0] + 1, *shape[1:]),
             "integer": torch.zeros(shape, dtype=torch.long)}[mistake]
    with pytest.raises(UserInputError, match=r"^noise .*\(1, \d+, \d+\)") as info:
        sample(models, conditions, empty, noise, options=OPTIONS)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [torch.long, torch.uint8, torch.bool])
def test_decode_names_latents_that_are_not_floats(models, dtype: torch.dtype) -> None:
    """Integer latents are not latents (they were cast and decoded as if they were)."""
    net = models.network.config
    latents = torch.zeros(1, net.latent_seq_len, net.latent_dim, dtype=dtype)
    with pytest.raises(UserInputError, match=f"^latents must be a float tensor .*, got {dtype}"):
        decode(models, latents)
    # Float latents of another dtype than the codec's are taken.
    audio = decode(models, latents.to(torch.float64))
    assert audio.shape == (1, 1, net.latent_seq_len * models.codec.samples_per_latent)


def test_sample_takes_noise_of_another_float_dtype(models) -> None:
    """Noise in float64 (or on another device) is cast to the models', as a batch's frames are,
    and gives the latents of the same noise in the models' dtype."""
    batch = uint8_batch(models, 1)
    conditions, empty = encode_conditions(models, batch, OPTIONS)
    net = models.network.config
    noise = torch.randn(len(batch), net.latent_seq_len, net.latent_dim, dtype=torch.float64)
    latents = sample(models, conditions, empty, noise, options=OPTIONS)
    expected = sample(models, conditions, empty, noise.to(models.dtype), options=OPTIONS)
    assert latents.dtype == models.dtype
    assert torch.equal(latents, expected)
