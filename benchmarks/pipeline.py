"""The whole demo path at official sizes with random weights: time and peak memory per stage.

Every module is built at its published size with random weights, so nothing is downloaded:
the ``small_44k_sa`` flow network, the segmentation-aware Synchformer, the 44.1 kHz VAE decoder
and BigVGAN-v2, and CLIP ViT-H/14 at 384 px (open_clip's ``ViT-H-14-378-quickgelu`` config at
384 px, the architecture of DFN5B-CLIP-ViT-H-14-384). Parameters that start at zero (gates,
adaLN, output layers) get small random values so that every path computes something.

Two paths run the same stages (read, clip_images, clip_text, focal_crop, synchformer,
sampling, vae, vocoder, write) in separate processes, alternating when repeated:

* ``baseline``: the straightforward path: fp32 always, every CLIP frame and every Synchformer window
  in one call, the reference's operations one for one (``set_fast_inference(False)``),
  two-pass guidance, glibc's default malloc, CLIP kept in memory;
* ``default``: what ``generate()`` does by default, in ``--dtype`` (bf16 on CUDA, fp32 on the
  CPU unless asked): CLIP and Synchformer in chunks
  (``SamplingOptions``), the focal crops resized on the models' device, the fast kernels,
  batched guidance, ``saganet.runtime``'s
  malloc settings, and CLIP released after use (``release_clip``, as a one-shot demo can).

Both use the same thread count. Each stage reports wall and CPU seconds and its peak memory:
resident set (VmHWM, reset before the stage) on the CPU, ``max_memory_allocated`` on CUDA.
The table shows the best of ``--repeats`` runs and the baseline/default ratios; the generated
audio of the two paths is compared at the end (they differ only by float rounding, amplified
by 25 guided steps). ``--max-extra-gb`` checks the default path's peak: at most the resident
size after building the models (interpreter and weights) plus the inputs plus this budget.
``--warmup`` runs the first duration once, untimed, before the timed runs: on a GPU the first
clip also pays for loading kernels and setting up cuBLAS and cuDNN, which is not what a clip
costs once a program has loaded.

The stages above give one clip of any length to the network at once, as ``generate()`` does.
``demo.py`` covers a video longer than the model's 5 s with overlapping windows instead
(``saganet.soundtrack``); ``--soundtrack`` runs each duration that way, through
``write_soundtrack`` (joint sampling, stems, mix and MP4 written), and reports its phases:
the default path's CLIP pass, then per window the frames and the Synchformer (with CLIP on
the baseline, which keeps CLIP and encodes window by window), sampling, decoding and writing.

Official sizes are slow on a small CPU (CLIP ViT-H/14 is ~1 TFLOP per frame): on 2 cores a
5 s clip takes about ten minutes per path. Measure parts:

    python benchmarks/pipeline.py --quick                            # 1 s clip, both paths
    python benchmarks/pipeline.py --duration 5 --stages sampling,vae,vocoder
    python benchmarks/pipeline.py --duration 5 30 --repeats 2        # the full measurement
    python benchmarks/pipeline.py --device cuda --dtype bfloat16 --compile --json out.json
    python benchmarks/pipeline.py --device cuda --duration 5 --warmup   # after one-off set-up
    python benchmarks/pipeline.py --soundtrack --duration 30 --objects 2   # demo.py's path
    python benchmarks/pipeline.py --tiny --json out.json   # smoke run: debug sizes, 1 s, 2 steps
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from sizes import (
    CLIP_IMAGE_SIZE,
    TINY_STEPS,
    Sizes,
    add_run_flags,
    check_device,
    write_json,
)
from synthetic_media import write_clip

from saganet.cli import positive_float, positive_int

if TYPE_CHECKING:
    from saganet.features.clip import ClipEncoder
    from saganet.models import SAGANetModels
    from saganet.soundtrack import ClipFeatures, Segment, SoundtrackRequest
    from saganet.soundtrack.plan import WindowPlan

STAGES = ("read", "clip_images", "clip_text", "focal_crop", "synchformer", "sampling", "vae",
          "vocoder", "write")
PATHS = ("baseline", "default")
# With --soundtrack: the phases of demo.py's path (saganet.soundtrack), reported by its progress
# callback: CLIP's pass over the windows (every frame once on the default path, each window's
# frames whole on the baseline), frames + Synchformer per window, sampling, decoding, files.
SOUNDTRACK_STAGES = ("clip", "features", "sampling", "decoding", "writing")
# With --compile: the first call of the compiled parts, timed apart from the stages.
COMPILE_STAGES = ("sampling_compile", "vocoder_compile")
# Wide enough for every stage name in the printed tables, the compile stages included.
NAME_WIDTH = max(len(name) for name in (*STAGES, *SOUNDTRACK_STAGES, *COMPILE_STAGES))
# Issue #16's GPU targets for the default path: a 5 s clip end to end after loading, in bf16.
GPU_TARGET_DURATION_S, GPU_TARGET_WALL_S, GPU_TARGET_PEAK_BYTES = 5.0, 1.0, 3e9
PROMPT, NEGATIVE_PROMPT = "violin", ""
CFG_STRENGTH, NUM_STEPS, SEED = 7.0, 25, 42
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


# ---------------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_gib() -> float:
    """Current resident set size in GiB (0 where /proc is missing)."""
    return (_status_kib("VmRSS") or 0) / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux); False if it cannot be reset."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_gib() -> float:
    """Resident-set high-water mark in GiB since the last reset (VmHWM)."""
    return (_status_kib("VmHWM") or 0) / 2**20


# ---------------------------------------------------------------------------------- models


@dataclasses.dataclass
class Models:
    """The official-size modules of one process (all but CLIP None until built, CLIP first)."""

    network: torch.nn.Module | None
    synchformer: torch.nn.Module | None
    clip: torch.nn.Module | None
    codec: torch.nn.Module | None

    def library(self, duration: float | None = None) -> SAGANetModels:
        """The built modules as saganet's own functions take them (CLIP as held now: None once
        released), set up for ``duration`` s of video when given (``write_soundtrack`` sets
        its window length itself)."""
        from saganet.model import CONFIG_44K_SA
        from saganet.models import SAGANetModels

        models = SAGANetModels(self.network, self.synchformer, self.clip, self.codec,
                               CONFIG_44K_SA)
        if duration is not None:
            models.set_duration(duration)
        return models


@torch.no_grad()
def _wake_up(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Small random values for the parameters that start at zero (gates, adaLN, outputs)."""
    for param in module.parameters():
        if param.is_floating_point() and not param.any():
            param.copy_(0.02 * torch.randn(param.shape, generator=generator))


def build_clip(device: torch.device, dtype: torch.dtype, tiny: bool = False) -> torch.nn.Module:
    """CLIP ViT-H/14 at 384 px with random weights (seeded); ``tiny``: a one-layer CLIP."""
    return Sizes(tiny).clip(device, dtype)


def build_models(device: torch.device, dtype: torch.dtype, need_clip: bool,
                 tiny: bool = False) -> Models:
    """Every module at its published size (``tiny``: the debug variant's), random weights
    (seeded: both paths get the same)."""
    models = Models(None, None, None, None)
    build_rest(models, device, dtype, tiny)
    if need_clip:
        models.clip = build_clip(device, dtype, tiny)
    return models


def build_rest(models: Models, device: torch.device, dtype: torch.dtype,
               tiny: bool = False) -> None:
    """The flow network, the Synchformer and the codec into ``models`` (seeded apart from CLIP,
    so the order of building does not change the weights); ``tiny``: the debug variant's."""
    from saganet.codec import AudioCodec
    from saganet.features import SynchformerWithContext
    from saganet.model import build_network

    sizes = Sizes(tiny)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    network = build_network(sizes.network).eval()
    with torch.no_grad():
        network.latent_mean.zero_()
        network.latent_std.fill_(1.0)
    synchformer = SynchformerWithContext(sizes.synchformer()).eval()
    codec = AudioCodec.from_config(sizes.codec(), need_encoder=False)
    for module in (network, synchformer):
        _wake_up(module, generator)
        module.requires_grad_(False)
    models.network = network.to(device=device, dtype=dtype)
    models.synchformer = synchformer.to(device=device, dtype=dtype)
    models.codec = codec.to(device=device, dtype=dtype)


def compile_models(models: Models) -> None:
    """torch.compile what batch_eval.py's ``compile=true`` compiles.

    Instance attributes shadow the methods: guided sampling reaches ``predict_flow``, the codec
    calls the vocoder's ``forward``. The first call of each (stages ``*_compile``) pays for the
    compilation.
    """
    network, vocoder = models.network, models.codec.vocoder
    network.predict_flow = torch.compile(network.predict_flow)
    vocoder.forward = torch.compile(vocoder.forward)


def _weights_gib(models: Models) -> float:
    modules = [m for m in (models.network, models.synchformer, models.clip, models.codec) if m]
    return sum(t.numel() * t.element_size() for m in modules
               for t in [*m.parameters(), *m.buffers()]) / 2**30


# ---------------------------------------------------------------------------------- stages


@dataclasses.dataclass
class StageResult:
    wall_s: float
    cpu_s: float
    peak_gib: float
    rss_after_gib: float


class StageTimer:
    """Runs stages and records time and peak memory of each."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.results: dict[str, StageResult] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        reset_peak_rss()

    def peak_gib(self) -> float:
        """Peak memory since :meth:`reset_peak`: allocated on CUDA, resident on the CPU."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**30
        return peak_rss_gib()

    def add(self, name: str, result: StageResult) -> None:
        """Record a stage's result; a stage met again adds its time (peak: the higher)."""
        old = self.results.get(name)
        if old is not None:
            result = StageResult(old.wall_s + result.wall_s, old.cpu_s + result.cpu_s,
                                 max(old.peak_gib, result.peak_gib), result.rss_after_gib)
        self.results[name] = result

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        gc.collect()
        self.sync()
        self.reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.sync()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.add(name, StageResult(wall, cpu, self.peak_gib(), rss_gib()))
        self.show(name)

    def show(self, name: str) -> None:
        result = self.results[name]
        print(f"    {name:{NAME_WIDTH}s} {result.wall_s:8.2f} s wall {result.cpu_s:8.2f} s CPU"
              f"  peak {result.peak_gib:6.2f} GiB", file=sys.stderr, flush=True)


class PhaseTimer:
    """A ``saganet.soundtrack`` progress callback that records its phases as stages.

    ``progress(phase, done, total)`` with ``done > 0`` reports work of ``phase`` just finished,
    so the time (and peak memory) since the previous report is the phase's; ``done == 0``
    announces a phase, and the time before it belongs to the phase reported before.
    """

    def __init__(self, timer: StageTimer) -> None:
        self.timer = timer
        self.phase: str | None = None  # of the previous report
        self.mark: tuple[float, float] | None = None  # its wall and CPU clocks

    def __call__(self, phase: str, done: int, total: int) -> None:
        self._interval(phase if done > 0 else self.phase)
        self.phase = phase

    def close(self) -> None:
        """Give the time since the last report to its phase; the next report starts afresh."""
        self._interval(self.phase)
        self.phase = self.mark = None

    def _interval(self, owner: str | None) -> None:
        self.timer.sync()
        wall, cpu = time.perf_counter(), time.process_time()
        if owner is not None and self.mark is not None:
            self.timer.add(owner, StageResult(wall - self.mark[0], cpu - self.mark[1],
                                              self.timer.peak_gib(), rss_gib()))
        self.timer.reset_peak()
        self.mark = (wall, cpu)


def path_dtype(path: str, args: argparse.Namespace) -> torch.dtype:
    """fp32 for the baseline; ``--dtype`` (auto: bf16 on CUDA, else fp32) for the default."""
    if path == "baseline" or args.dtype == "float32":
        return torch.float32
    if args.dtype == "auto":
        return torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    return torch.bfloat16


def num_steps(args: argparse.Namespace) -> int:
    """Guided Euler steps: the demo's 25, or a tiny run's few."""
    return TINY_STEPS if args.tiny else NUM_STEPS


def run_path(path: str, args: argparse.Namespace, duration: float, video: Path | None,
             mask: Path | None, models: Models, timer: StageTimer,
             out_dir: Path) -> dict[str, float]:
    """One duration through every stage of ``path``; returns facts about the run."""
    from saganet.codec.bigvgan import DEFAULT_CHUNK_FRAMES
    from saganet.features import encode_sync, focal_crop, focal_crop_boxes
    from saganet.inference import SamplingOptions, initial_noise, sample
    from saganet.media.masks import MaskVideo
    from saganet.media.output import write_flac, write_video_with_audio
    from saganet.media.video import CLIP_FPS, SYNC_FPS, load_video_inputs
    from saganet.model import CONFIG_44K_SA, VARIANTS

    device, dtype = torch.device(args.device), path_dtype(path, args)
    baseline = path == "baseline"
    options = SamplingOptions(cfg_strength=CFG_STRENGTH, num_steps=num_steps(args),
                              batch_cfg=not baseline, release_clip=not baseline)
    clip_chunk = None if baseline else options.clip_chunk_size
    sync_chunk = None if baseline else options.sync_chunk_size
    stages = set(args.stages)
    generator = torch.Generator().manual_seed(1)

    def random(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    objects = args.objects
    if "read" in stages and video is not None:
        with timer.stage("read"):
            inputs = load_video_inputs(video, mask, duration=duration)
            others = [MaskVideo(mask.with_name(f"mask_{k}.mp4")).read(0.0, inputs.duration)
                      for k in range(1, objects)]
        clip_frames, sync_frames = inputs.clip_frames, inputs.sync_frames
        count = len(inputs.masks)
        masks = torch.stack([inputs.masks, *(m[:count].float() / 255 for m in others)])
        duration = inputs.duration
    else:
        clip_frames = random(int(CLIP_FPS * duration), 3, CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE)
        sync_frames = random(int(SYNC_FPS * duration), 3, 224, 224, low=-1.0)
        masks = torch.zeros(objects, int(SYNC_FPS * duration), 1, 224, 224)
        for k in range(objects):  # side by side boxes
            left = 10 + k * 200 // objects
            masks[k, ..., 60:150, left:left + 60] = 1.0
    inputs_gib = sum(t.numel() * t.element_size()
                     for t in (clip_frames, sync_frames, masks)) / 2**30
    # Each object sounds in the same video. The straightforward path gives every object its
    # own copy of the frames (a loop over objects); the default path expands one copy, as the
    # renderer does, so CLIP encodes the frames once.
    if baseline:
        clip_batch = clip_frames[None].repeat(objects, 1, 1, 1, 1)
    else:
        clip_batch = clip_frames[None].expand(objects, -1, -1, -1, -1)
    sync_batch = sync_frames[None].expand(objects, -1, -1, -1, -1)

    sequence = CONFIG_44K_SA.with_duration(duration)
    config = VARIANTS[Sizes(args.tiny).network].with_sequence(sequence)
    facts = {"duration": duration, "inputs_gib": inputs_gib}

    if models.clip is not None:
        models.clip.set_fast_inference(not baseline)
    with torch.inference_mode():
        if "clip_images" in stages and models.clip is not None:
            with timer.stage("clip_images"):
                clip_f = models.clip.encode_images(clip_batch, chunk_size=clip_chunk)
        else:
            clip_f = random(objects, config.clip_seq_len, config.clip_dim).to(device, dtype)
        if "clip_text" in stages and models.clip is not None:
            with timer.stage("clip_text"):
                text_f = models.clip.encode_text([PROMPT] * objects)
                negative_f = models.clip.encode_text([NEGATIVE_PROMPT] * objects)
        else:
            text_f = random(objects, config.text_seq_len, config.text_dim).to(device, dtype)
            negative_f = random(objects, config.text_seq_len, config.text_dim).to(device, dtype)
    if options.release_clip:
        models.clip = None  # the path's only reference: its memory is free for what follows
        gc.collect()
    if models.network is None:
        # CLIP first, as demo.py does: the other models load into CLIP's former memory (built
        # outside inference mode, as load_models does: their weights are ordinary tensors).
        start = time.perf_counter()
        build_rest(models, device, dtype, args.tiny)
        if args.compile:
            compile_models(models)
        facts.update(rest_build_s=time.perf_counter() - start, rest_built_gib=rss_gib(),
                     rest_weights_gib=_weights_gib(models))
    library = models.library(duration)
    net, codec = models.network, models.codec
    for module in (net, models.synchformer, codec.vocoder):
        module.set_fast_inference(not baseline)
    # The straightforward path vocodes any length in one pass.
    codec.vocoder.chunk_frames = None if baseline else DEFAULT_CHUNK_FRAMES

    with torch.inference_mode():
        if "focal_crop" in stages:
            with timer.stage("focal_crop"):
                if baseline:
                    detail_frames, detail_masks = focal_crop(sync_batch, masks)
                else:  # as generate() does: boxes from the host's masks, resized on the
                    # device, whose copies of the frames and masks then feed the Synchformer
                    boxes = focal_crop_boxes(masks)
                    sync_batch, masks = sync_batch.to(device), masks.to(device)
                    detail_frames, detail_masks = focal_crop(sync_batch, masks, boxes=boxes)
        else:
            detail_frames, detail_masks = sync_batch, masks
        if "synchformer" in stages:
            with timer.stage("synchformer"):
                sync_f = encode_sync(models.synchformer,
                                     *(x.to(device, dtype) for x in (
                                         sync_batch, masks, detail_frames, detail_masks)),
                                     chunk_size=sync_chunk)
        else:
            sync_f = random(objects, config.sync_seq_len, config.sync_dim).to(device, dtype)
        del detail_frames, detail_masks
        shape = (objects, config.latent_seq_len, config.latent_dim)
        x0 = initial_noise(shape, torch.Generator(device).manual_seed(SEED), device, dtype)
        if "sampling" in stages:
            if args.compile:
                with timer.stage("sampling_compile"):  # one guided step: compiles the graph
                    cond = net.preprocess_conditions(clip_f, sync_f, text_f)
                    empty = net.get_empty_conditions(objects, negative_text_features=negative_f)
                    sample(library, cond, empty, x0,
                           options=dataclasses.replace(options, num_steps=1))
            with timer.stage("sampling"):
                cond = net.preprocess_conditions(clip_f, sync_f, text_f)
                empty = net.get_empty_conditions(objects, negative_text_features=negative_f)
                latents = sample(library, cond, empty, x0, options=options)
        else:
            latents = x0
        if "vae" in stages:
            with timer.stage("vae"):
                mel = codec.decode_mel(latents)
        else:
            mel = random(objects, codec.config.mel.num_mels, 2 * latents.shape[1], low=-5.0)
            mel = mel.to(device, dtype)
        if "vocoder" in stages:
            if args.compile:
                with timer.stage("vocoder_compile"):
                    codec.vocode(mel)
            with timer.stage("vocoder"):
                audio = codec.vocode(mel).float().clamp(-1, 1).cpu()
        else:
            audio = torch.zeros(objects, 1, mel.shape[-1] * codec.hop_length)
    torch.save({"audio": audio, "latents": latents.float().cpu()},
               out_dir / f"{path}-{duration:g}s.pt")
    if "write" in stages and video is not None:
        with timer.stage("write"):
            write_video_with_audio(video, audio[0], codec.sampling_rate,
                                   out_dir / f"{path}-{duration:g}s.mp4", duration=duration,
                                   overwrite=True)
            write_flac(out_dir / f"{path}-{duration:g}s.flac", audio[0], codec.sampling_rate,
                       overwrite=True)
    return facts


def run_soundtrack(path: str, args: argparse.Namespace, duration: float, video: Path,
                   models: Models, timer: StageTimer, out_dir: Path) -> dict[str, float]:
    """One duration the way ``demo.py`` runs a video: windows of the model's 5 s covering it,
    joined by joint sampling, one stem per object and the mix (``write_soundtrack``). The
    default path encodes CLIP first and releases it (``encode_clip_features``), as the demo
    does; the baseline keeps CLIP, encodes every window's frames whole (also those the window
    before encoded) and runs the reference operations, no chunks and two-pass guidance."""
    from saganet.codec.bigvgan import DEFAULT_CHUNK_FRAMES
    from saganet.inference import SamplingOptions
    from saganet.media.audio import load_mono_audio
    from saganet.media.masks import MaskVideo
    from saganet.model import CONFIG_44K_SA
    from saganet.soundtrack import (
        SoundObject,
        SoundtrackRequest,
        encode_clip_features,
        plan_soundtrack,
        resolve_segment,
        write_soundtrack,
    )

    device, dtype = torch.device(args.device), path_dtype(path, args)
    baseline = path == "baseline"
    options = SamplingOptions(cfg_strength=CFG_STRENGTH, num_steps=num_steps(args))
    if baseline:
        options = dataclasses.replace(options, batch_cfg=False, clip_chunk_size=None,
                                      sync_chunk_size=None)
    request = SoundtrackRequest(
        video=video, output_dir=out_dir / f"{path}-{duration:g}s", duration=duration,
        objects=tuple(SoundObject(f"object_{k}", MaskVideo(video.with_name(f"mask_{k}.mp4")),
                                  PROMPT) for k in range(args.objects)))
    segment = resolve_segment(request)
    plan = plan_soundtrack(request, segment, CONFIG_44K_SA,
                           Sizes(args.tiny).codec().samples_per_latent)
    phases = PhaseTimer(timer)
    facts: dict[str, float] = {"duration": segment.duration, "inputs_gib": 0.0,
                               "windows": len(plan.windows), "window_s": plan.window_duration}
    models.clip.set_fast_inference(not baseline)
    if baseline:
        clip_features = _every_window_clip_features(models.clip, request, segment, plan, phases)
        phases.close()
    else:
        clip_features = encode_clip_features(models.clip, request, segment, plan,
                                             options=options, progress=phases)
        phases.close()
        models.clip = None  # the path's only reference, as demo.py drops its encoder
        gc.collect()
        start = time.perf_counter()
        build_rest(models, device, dtype, args.tiny)
        facts.update(rest_build_s=time.perf_counter() - start, rest_built_gib=rss_gib(),
                     rest_weights_gib=_weights_gib(models))
    for module in (models.network, models.synchformer, models.codec.vocoder):
        module.set_fast_inference(not baseline)
    models.codec.vocoder.chunk_frames = None if baseline else DEFAULT_CHUNK_FRAMES
    try:
        result = write_soundtrack(models.library(), request, options=options, seed=SEED,
                                  progress=phases, clip_features=clip_features)
    finally:
        phases.close()
    for name in timer.results:
        timer.show(name)
    rate = models.codec.sampling_rate
    count = round(segment.duration * rate)
    stems = [result.outputs.stems.get(o.name, result.outputs.mix) for o in request.objects]
    audio = torch.stack([load_mono_audio(f, count, rate).waveform.reshape(1, -1)
                         for f in stems])
    torch.save({"audio": audio}, out_dir / f"{path}-{duration:g}s.pt")
    return facts


def _every_window_clip_features(clip: ClipEncoder, request: SoundtrackRequest, segment: Segment,
                                plan: WindowPlan, progress: PhaseTimer) -> ClipFeatures:
    """The straightforward CLIP pass of a soundtrack: each window's frames at once, including
    those it shares with the window before (the default path encodes each frame once)."""
    from saganet.media.windows import read_windows
    from saganet.soundtrack import ClipFeatures
    from saganet.soundtrack.render import window_start

    starts = [window_start(segment, w) for w in plan.windows]
    progress("clip", 0, len(starts))
    images = []
    with torch.inference_mode():
        for frames in read_windows(request.video, starts, plan.window_duration):
            images.append(clip.encode_images(frames.clip_frames[None]))
            progress("clip", frames.index + 1, len(starts))
        prompts = [clip.encode_text([o.prompt]) for o in request.objects]
        negatives = [clip.encode_text([request.negative_prompt(o)]) for o in request.objects]
    return ClipFeatures(starts, plan.window_duration, images, prompts, negatives)


def _freeze_imports(need_clip: bool) -> None:
    """Import what the stages use and move every object alive now out of the collector's sight.

    Each stage starts with ``gc.collect()`` so that one stage's garbage does not count in the
    next one's peak; a full collection walks every object, and the imported libraries' (torch,
    open_clip, the library) made it 0.4 s each, 19 times per process. Module-level objects
    live as long as the process anyway; the models are built after this, so their reference
    cycles (released CLIP among them) stay collectable.
    """
    import saganet.codec
    import saganet.features
    import saganet.inference
    import saganet.media.output
    import saganet.media.video
    import saganet.model
    import saganet.soundtrack  # noqa: F401

    if need_clip:
        import open_clip  # noqa: F401
    gc.collect()
    gc.freeze()


def child(args: argparse.Namespace) -> None:
    """One path in this process; writes its measurements as JSON to ``args.result``."""
    from saganet.runtime import available_cores, choose_policy, keep_freed_memory

    device, dtype = torch.device(args.device), path_dtype(args.path, args)
    threads = args.threads or choose_policy(available_cores(), tiny=args.tiny).intra_op
    torch.set_num_threads(threads)
    if args.path == "default":
        keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(args.work_dir)
    need_clip = args.soundtrack or bool({"clip_images", "clip_text"} & set(args.stages))
    _freeze_imports(need_clip)
    # The interpreter with the libraries imported (build_s therefore leaves their import out).
    base_gib = rss_gib()
    start = time.perf_counter()
    # The default path loads CLIP alone and the rest once CLIP is released, as demo.py does.
    clip_first = need_clip and args.path == "default"
    if clip_first:
        models = Models(None, None, build_clip(device, dtype, args.tiny), None)
    else:
        models = build_models(device, dtype, need_clip, args.tiny)
        if args.compile:
            compile_models(models)
    build_s = time.perf_counter() - start
    weights_gib = clip_weights_gib = _weights_gib(models)
    built_gib = rss_gib()
    print(f"  [{args.path}] {threads} threads, {'CLIP' if clip_first else 'models'} built in "
          f"{build_s:.1f} s ({weights_gib:.2f} GiB of weights, RSS {rss_gib():.2f} GiB)",
          file=sys.stderr)
    runs = []
    # A warm-up pass first keeps one-off costs (kernel loading, cuBLAS and cuDNN set-up and
    # autotuning on a GPU) out of the timed run, which then measures a clip after loading.
    passes = [(d, True) for d in args.duration[:1] if args.warmup]
    passes += [(d, False) for d in args.duration]
    for duration, warm_up in passes:
        video = mask = None
        if args.video_dir:
            video = Path(args.video_dir) / f"{duration:g}" / "video.mp4"
            mask = video.with_name("mask_0.mp4")
        print(f"  [{args.path}] {duration:g} s{' (warm-up, not timed)' if warm_up else ''}",
              file=sys.stderr, flush=True)
        if need_clip and models.clip is None:  # released by the previous duration's run
            if clip_first:
                models = Models(None, None, None, None)
                gc.collect()
            models.clip = build_clip(device, dtype, args.tiny)
        timer = StageTimer(device)
        run_dir = out_dir / "warm-up" if warm_up else out_dir
        run_dir.mkdir(exist_ok=True)
        if args.soundtrack:
            facts = run_soundtrack(args.path, args, duration, video, models, timer, run_dir)
        else:
            facts = run_path(args.path, args, duration, video, mask, models, timer, run_dir)
        if warm_up:
            gc.collect()
            continue
        runs.append({**facts, "stages": {k: dataclasses.asdict(v)
                                         for k, v in timer.results.items()}})
        if "rest_weights_gib" in facts:
            weights_gib = clip_weights_gib + facts["rest_weights_gib"]
        gc.collect()
    result = {"path": args.path, "threads": threads, "base_gib": base_gib,
              "weights_gib": weights_gib, "built_gib": built_gib, "build_s": build_s,
              "runs": runs}
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------- parent


def _run_child(path: str, args: argparse.Namespace, work: Path, video_dir: Path | None,
               repeat: int) -> dict:
    result = work / f"{path}-{repeat}.json"
    command = [sys.executable, __file__, "--child", path, "--result", str(result),
               "--work-dir", str(work), "--device", args.device, "--dtype", args.dtype,
               "--objects", str(args.objects), "--duration", *map(str, args.duration)]
    if args.soundtrack:  # its phases are not stages to pick
        command.append("--soundtrack")
    else:
        command += ["--stages", ",".join(args.stages)]
    if video_dir is not None:
        command += ["--video-dir", str(video_dir)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.compile:
        command.append("--compile")
    if args.warmup:
        command.append("--warmup")
    if args.tiny:
        command.append("--tiny")
    subprocess.run(command, check=True)
    return json.loads(result.read_text())


def _best(results: list[dict], duration_index: int, stage: str) -> dict[str, float] | None:
    values = [r["runs"][duration_index]["stages"].get(stage) for r in results]
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"wall_s": min(v["wall_s"] for v in values), "cpu_s": min(v["cpu_s"] for v in values),
            "peak_gib": max(v["peak_gib"] for v in values)}


def _audio_difference(work: Path, duration: float) -> str:
    files = [work / f"{path}-{duration:g}s.pt" for path in PATHS]
    if not all(f.exists() for f in files):
        return "n/a"
    base, default = (torch.load(f, weights_only=True) for f in files)
    parts = []
    for name in ("latents", "audio"):  # the audio is silence when the decoder was skipped
        if name not in base or name not in default:  # --soundtrack keeps the audio only
            continue
        reference, other = base[name], default[name]
        rms = reference.pow(2).mean().sqrt().item()
        if rms == 0:
            continue
        diff = (other - reference).pow(2).mean().sqrt().item()
        parts.append(f"{name} RMS {rms:.3g}, RMS of the difference {diff:.3g} "
                     f"({diff / rms:.2e} relative), max {(other - reference).abs().max():.3g}")
    return "; ".join(parts) or "n/a"


def _row(name: str, base: dict | None, fast: dict | None) -> str:
    def cell(value: dict | None, key: str, width: int, unit: str = "") -> str:
        return f"{value[key]:{width - len(unit)}.2f}{unit}" if value and key in value else (
            " " * (width - 1) + "-")

    ratio = (f"{base['wall_s'] / fast['wall_s']:6.2f}" if base and fast and fast["wall_s"] > 0
             else "     -")
    return (f"{name:{NAME_WIDTH}s} {cell(base, 'wall_s', 11)} {cell(fast, 'wall_s', 10)} {ratio} "
            f"{cell(base, 'cpu_s', 11)} {cell(fast, 'cpu_s', 10)} "
            f"{cell(base, 'peak_gib', 10, 'G')} {cell(fast, 'peak_gib', 9, 'G')}")


def report(results: dict[str, list[dict]], args: argparse.Namespace, work: Path) -> dict:
    """Print the table of stages and ratios; returns the summary (also written as JSON)."""
    first = next(iter(results.values()))[0]
    summary: dict = {"device": args.device, "dtype": args.dtype, "compile": args.compile,
                     "warmup": args.warmup,
                     "threads": first["threads"], "durations": []}
    for path in PATHS:
        if results.get(path):
            summary[path] = {k: results[path][0][k]
                             for k in ("weights_gib", "base_gib", "built_gib", "build_s")}
    for index in range(len(args.duration)):
        runs = {path: results[path][0]["runs"][index] for path in PATHS if results.get(path)}
        first_run = next(iter(runs.values()))
        used = first_run["duration"]
        dtypes = ", ".join(f"{p} {str(path_dtype(p, args))[6:]}" for p in runs)
        layout = (f" in {first_run['windows']} window(s) of {first_run['window_s']:g} s "
                  "(demo.py's path)" if "windows" in first_run else "")
        print(f"\n{used:g} s of video{layout}, {args.device} ({dtypes}), "
              f"{summary['threads']} threads, best of {args.repeats} (peak: highest)")
        print(f"{'stage':{NAME_WIDTH}s} {'baseline s':>11s} {'default s':>10s} {'ratio':>6s} "
              f"{'base CPU s':>11s} {'def CPU s':>10s} {'base peak':>10s} {'def peak':>9s}")
        rows, totals = {}, {path: {"wall_s": 0.0, "cpu_s": 0.0} for path in PATHS}
        for stage in [*args.stages, *COMPILE_STAGES]:
            # A stage of one path only still counts in that path's total.
            best = {path: value for path in runs
                    if (value := _best(results[path], index, stage)) is not None}
            if not best:
                continue
            rows[stage] = best
            print(_row(stage, best.get("baseline"), best.get("default")))
            if stage in COMPILE_STAGES:  # one-off cost, outside the totals
                continue
            for path, value in best.items():
                totals[path]["wall_s"] += value["wall_s"]
                totals[path]["cpu_s"] += value["cpu_s"]
        if rows:
            print(_row("total", *(totals[p] if p in runs else None for p in PATHS)))
        peaks = {path: max(v[path]["peak_gib"] for v in rows.values() if path in v)
                 for path in runs}
        line = {"duration": used, "stages": rows, "peak_gib": peaks,
                "audio": _audio_difference(work, used)}
        print("peak memory: " + ", ".join(f"{p} {v:.2f} GiB" for p, v in peaks.items()))
        print("output: " + line["audio"])
        if "default" in runs and args.device == "cpu" and args.max_extra_gb is not None:
            # Resident after building the models: the interpreter, the weights held at once and
            # what the build left in the heap (reused later, as a real load's file buffers
            # would be). CLIP first: the larger of CLIP alone and the rest after its release.
            default = results["default"][0]
            run = runs["default"]
            built = max(default["built_gib"], run.get("rest_built_gib", 0.0))
            held = ("CLIP, then the rest" if "rest_built_gib" in run
                    else f"weights {default['weights_gib']:.2f}")
            budget = built + run["inputs_gib"] + args.max_extra_gb
            line["rss_budget_gib"] = budget
            line["rss_ok"] = peaks["default"] <= budget
            print(f"peak RSS check: {peaks['default']:.2f} GiB <= {budget:.2f} GiB "
                  f"(resident after building {built:.2f} [interpreter and libraries "
                  f"{default['base_gib']:.2f} + {held} + build leftovers] + inputs "
                  f"{run['inputs_gib']:.2f} + {args.max_extra_gb:.2f} activations): "
                  f"{'ok' if line['rss_ok'] else 'EXCEEDED'}")
        if "default" in runs and torch.device(args.device).type == "cuda":
            line["gpu_targets"] = _gpu_targets(used, totals["default"]["wall_s"],
                                               peaks["default"], args)
        summary["durations"].append(line)
    return summary


def _gpu_targets(duration: float, wall_s: float, peak_gib: float,
                 args: argparse.Namespace) -> dict:
    """The default path's time and peak against issue #16's GPU targets (printed too)."""
    whole = args.soundtrack or set(args.stages) == set(STAGES)
    judged = whole and abs(duration - GPU_TARGET_DURATION_S) < 0.05
    result = {"wall_s": wall_s, "peak_gib": peak_gib, "whole_path": whole}
    if judged:
        result.update(wall_ok=wall_s < GPU_TARGET_WALL_S,
                      peak_ok=peak_gib * 2**30 < GPU_TARGET_PEAK_BYTES)
    verdict = (f"time {'ok' if result['wall_ok'] else 'MISSED'}, "
               f"peak {'ok' if result['peak_ok'] else 'MISSED'}" if judged
               else "not judged: " + ("not the whole path" if not whole
                                      else f"not a {GPU_TARGET_DURATION_S:g} s clip"))
    print(f"GPU targets (a {GPU_TARGET_DURATION_S:g} s clip end to end under "
          f"{GPU_TARGET_WALL_S:g} s after loading, under {GPU_TARGET_PEAK_BYTES / 1e9:g} GB): "
          f"{duration:g} s took {wall_s:.3f} s, peak {peak_gib:.2f} GiB; {verdict}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=positive_float, nargs="+", default=None,
                        help="seconds of video (default: 5 and 30; 1 with --tiny)")
    parser.add_argument("--stages", type=lambda s: s.split(","), default=list(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)}; skipped stages "
                             "feed random tensors of the right shape to the next ones")
    parser.add_argument("--paths", type=lambda s: s.split(","), default=list(PATHS),
                        help="baseline,default or one of them")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="runs per path, alternating; the best is kept")
    parser.add_argument("--quick", action="store_true",
                        help="one 1 s clip (8 CLIP frames, 2 Synchformer windows)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="of the default path (auto: bf16 on CUDA, else fp32); the "
                             "baseline is always fp32")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile predict_flow and the vocoder (both paths); their "
                             "first calls are reported as *_compile")
    parser.add_argument("--warmup", action="store_true",
                        help="run the first duration once, untimed, before the timed runs "
                             "(one-off GPU set-up is not a clip's cost)")
    add_run_flags(parser)
    parser.add_argument("--video", type=Path, default=None,
                        help="read this video instead of a synthetic one (needs --mask)")
    parser.add_argument("--mask", type=Path, default=None, help="the mask video of --video")
    parser.add_argument("--objects", type=positive_int, default=1,
                        help="objects sounding in the (synthetic) video, one clip each")
    parser.add_argument("--soundtrack", action="store_true",
                        help="run each duration as demo.py runs a video (windows of 5 s, joint "
                             "sampling, stems and mix written; stages become its phases: "
                             f"{','.join(SOUNDTRACK_STAGES)}); needs no --stages")
    parser.add_argument("--max-extra-gb", type=positive_float, default=1.5,
                        help="activation budget (GiB) of the default path's peak RSS check")
    parser.add_argument("--child", choices=PATHS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--video-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.duration is None:
        args.duration = [1.0] if args.tiny else [5.0, 30.0]
    unknown = sorted(set(args.stages) - set(STAGES)) + sorted(set(args.paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown stages or paths: {', '.join(unknown)}")
    # The name as the children and the report compare it ("cpu", "cuda:1"), checked here:
    # a missing CUDA was a child's traceback, after the parent had written the inputs.
    args.device = str(check_device(parser, args.device))
    if args.soundtrack:
        if args.compile:
            parser.error("--soundtrack does not combine with --compile")
        args.stages = list(SOUNDTRACK_STAGES)
    if args.child:
        args.path = args.child
        child(args)
        return 0
    if args.quick:
        args.duration = [1.0]
    if (args.video is None) != (args.mask is None):
        parser.error("--video and --mask go together")
    if args.objects < 1 or (args.objects > 1 and args.video is not None):
        parser.error("--objects must be at least 1, and 1 with --video (one --mask)")
    with tempfile.TemporaryDirectory(prefix="saganet-bench-") as tmp:
        work = Path(tmp)
        video_dir = None
        if args.soundtrack or "read" in args.stages or "write" in args.stages:
            video_dir = work / "inputs"
            for duration in args.duration:
                folder = video_dir / f"{duration:g}"
                folder.mkdir(parents=True)
                if args.video is not None:
                    os.symlink(args.video.resolve(), folder / "video.mp4")
                    os.symlink(args.mask.resolve(), folder / "mask_0.mp4")
                else:
                    write_clip(folder, duration, objects=args.objects)
        results: dict[str, list[dict]] = {path: [] for path in args.paths}
        for repeat in range(args.repeats):
            for path in args.paths:
                print(f"run {repeat + 1}/{args.repeats}: {path}", file=sys.stderr, flush=True)
                results[path].append(_run_child(path, args, work, video_dir, repeat))
        results = {path: value for path, value in results.items() if value}
        summary = report(results, args, work)
    if args.json is not None:
        write_json(args.json, summary)
    budget_ok = all(line.get("rss_ok", True) for line in summary["durations"])
    return 0 if budget_ok else 1


if __name__ == "__main__":
    sys.exit(main())
