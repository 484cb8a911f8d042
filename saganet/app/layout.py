"""The page: its components (:class:`Page`), their arrangement, and which handler each event
calls (:func:`build_app`).

Model work (Track, Generate, the example and the ``/generate`` endpoint) shares one slot of
Gradio's queue (``concurrency_id="model"``, limit 1): one generation at a time, the others wait
in line with their place shown. Light events (scrubbing, clicks, edits, Stop) do not wait for
it. Closing the tab (Gradio's ``unload``) and Stop both cancel the tab's running job; Stop
also cancels its Track, Generate or example waiting in line, through the token Gradio's queue
gave the event (its validator) and by dropping the event from the queue (a state whose change
cancels it). The same ``unload`` runs for a ``gradio_client`` client that goes away, and cancels its
``/generate`` calls.
"""

from dataclasses import dataclass, field

import gradio as gr

from saganet.app.api import API_NAME, GenerateEndpoint
from saganet.app.engine import Engine
from saganet.app.frames import placeholder
from saganet.app.handlers import EXAMPLE, GENERATION, TRACKING, Handlers
from saganet.app.limits import Limits
from saganet.app.options import GenerationOptions
from saganet.app.session import Sessions
from saganet.pipeline import PIPELINES
from saganet.segment.grid import GRID_FPS
from saganet.soundtrack.request import OUTPUT_RATES

TITLE = "saganet: click the object, hear it"
INTRO = """# Click the object, hear it
Upload a video (or pick the example), scrub to a frame where the object is visible and
**click on it**. Add more objects with *Add object*; give each a prompt. **Track** shows what
was found; add a click to correct it. **Generate** makes one sound per object and their mix."""
# Gradio's cache of served files: files older than an hour are removed every hour (and all of
# them when the app closes).
CACHE_CLEANUP = (3600, 3600)
# Events that use the models share this queue slot.
MODEL_QUEUE = "model"


@dataclass
class Page:
    """The components of the page (handlers return updates keyed by them)."""

    upload: gr.File
    example: gr.Button
    frame: gr.Image
    time: gr.Slider
    video_info: gr.Markdown
    object_choice: gr.Radio
    add_object: gr.Button
    remove_object: gr.Button
    clear_clicks: gr.Button
    negative_click: gr.Checkbox
    name: gr.Textbox
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    phrase: gr.Textbox
    objects_table: gr.Markdown
    options: dict[str, gr.components.Component]
    track: gr.Button
    generate: gr.Button
    stop: gr.Button
    # Per kind of job (and the example): set by Stop when it stopped that kind's event waiting
    # in the queue.
    stop_waiting: dict[str, gr.State]
    status: gr.Markdown
    preview: gr.Video
    tracking_summary: gr.Markdown
    mix: gr.Audio
    mix_spectrogram: gr.Image
    downloads: gr.File
    command: gr.Code
    stem_rows: list[gr.Row] = field(default_factory=list)
    stems: list[gr.Audio] = field(default_factory=list)
    stem_spectrograms: list[gr.Image] = field(default_factory=list)

    def everything(self) -> list:
        """Every component a handler may update."""
        return [self.upload, self.frame, self.time, self.video_info, self.object_choice,
                self.name, self.prompt, self.negative_prompt, self.phrase, self.objects_table,
                self.status, self.preview, self.tracking_summary, self.mix,
                self.mix_spectrogram, self.downloads, self.command, *self.stem_rows,
                *self.stems, *self.stem_spectrograms]


def _options(default_variant: str) -> dict[str, gr.components.Component]:
    """The advanced options, by the :class:`GenerationOptions` field each one sets (the
    handlers take them as keyword arguments of those names)."""
    defaults = GenerationOptions()
    with gr.Row():
        start = gr.Number(label="Start (s)", value=defaults.start, minimum=0,
                          elem_id="opt-start")
        # 0 stands for "not given" (a number field cannot be blank).
        duration = gr.Number(label="Duration (s), 0: to the end", value=0, minimum=0,
                             elem_id="opt-duration")
        end = gr.Number(label="End (s), replaces duration if not 0", value=0, minimum=0,
                        elem_id="opt-end")
    with gr.Row():
        cfg = gr.Number(label="Guidance strength", value=defaults.cfg_strength,
                        elem_id="opt-cfg")
        steps = gr.Number(label="Steps", value=defaults.num_steps, precision=0, minimum=1,
                          elem_id="opt-steps")
        seed = gr.Number(label="Seed", value=defaults.seed, precision=0, elem_id="opt-seed")
        variant = gr.Dropdown(label="Variant", choices=list(PIPELINES), value=default_variant,
                              elem_id="opt-variant")
    with gr.Row():
        pan = gr.Checkbox(label="Stereo mix: each object placed where it is in the frame",
                          value=defaults.pan, elem_id="opt-pan")
        original = gr.Checkbox(label="Also put the video's own sound into the MP4 (its last "
                                     "track, to compare)", value=defaults.original_sound,
                               elem_id="opt-original-sound")
        audio_format = gr.Radio(label="Sound files", choices=[("FLAC", "flac"), ("WAV", "wav")],
                                value=defaults.audio_format, elem_id="opt-audio-format")
        sample_rate = gr.Dropdown(label="Sample rate (Hz; the model makes 44100)",
                                  choices=list(OUTPUT_RATES), value=defaults.sample_rate,
                                  elem_id="opt-sample-rate")
    with gr.Row():
        negatives = gr.Checkbox(label="An object without a negative prompt takes the other "
                                      "objects' prompts as its negative prompt",
                                value=defaults.negatives_from_others,
                                elem_id="opt-negatives-from-others")
        keep_hidden = gr.Checkbox(label="Generate an object also where it is hidden for a "
                                        "whole window (otherwise silent there)",
                                  value=defaults.keep_hidden, elem_id="opt-keep-hidden")
    return {"start": start, "duration": duration, "end": end, "cfg_strength": cfg,
            "num_steps": steps, "seed": seed, "variant": variant, "original_sound": original,
            "pan": pan, "audio_format": audio_format, "sample_rate": sample_rate,
            "negatives_from_others": negatives, "keep_hidden": keep_hidden}


def _page(limits: Limits, default_variant: str) -> Page:
    with gr.Row():
        with gr.Column(scale=3):
            frame = gr.Image(placeholder(), label="Frame: click on the object", type="numpy",
                             interactive=False, format="jpeg", buttons=[], elem_id="frame")
            time = gr.Slider(label="Time (s)", minimum=0, maximum=1, step=1 / GRID_FPS,
                             value=0, elem_id="time")
            video_info = gr.Markdown(elem_id="video-info")
            objects_table = gr.Markdown(elem_id="objects")
        with gr.Column(scale=2):
            upload = gr.File(label="Video", file_types=["video"], type="filepath",
                             elem_id="upload")
            example = gr.Button("Pick the example (two shapes: debug variant)"
                                if PIPELINES[default_variant].debug
                                else "Pick the duet example", elem_id="example")
            object_choice = gr.Radio(label="Object", choices=[], elem_id="object-choice")
            with gr.Row():
                add_object = gr.Button("Add object", size="sm", elem_id="add-object")
                remove_object = gr.Button("Remove object", size="sm", elem_id="remove-object")
                clear_clicks = gr.Button("Clear clicks", size="sm", elem_id="clear-clicks")
            negative_click = gr.Checkbox(label="Negative clicks (mark what is NOT the object)",
                                         elem_id="negative-click")
            name = gr.Textbox(label="Name", elem_id="object-name")
            prompt = gr.Textbox(label="Prompt", placeholder="what it sounds like, e.g. violin",
                                elem_id="object-prompt")
            negative_prompt = gr.Textbox(label="Negative prompt",
                                         placeholder="what it should not sound like",
                                         elem_id="object-negative-prompt")
            phrase = gr.Textbox(label="Or find it by text (needs SAM 3 weights)",
                                placeholder="e.g. violin; instead of clicks and boxes",
                                elem_id="object-phrase")
    with gr.Accordion("Advanced options", open=False, elem_id="advanced"):
        options = _options(default_variant)
    with gr.Row():
        track = gr.Button("Track", elem_id="track")
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Stop", variant="stop", scale=0, min_width=120, elem_id="stop")
    stop_waiting = {kind: gr.State() for kind in (TRACKING, GENERATION, EXAMPLE)}
    status = gr.Markdown(elem_id="status")
    with gr.Row():
        preview = gr.Video(label="Tracked objects", interactive=False, elem_id="preview")
        tracking_summary = gr.Markdown(elem_id="tracking-summary")
    with gr.Row():
        mix = gr.Audio(label="Mix", type="filepath", interactive=False, elem_id="mix")
        mix_spectrogram = gr.Image(label="Mix: spectrogram", type="filepath", interactive=False,
                                   buttons=[], elem_id="mix-spectrogram")
    rows, stems, pictures = [], [], []
    for k in range(limits.max_objects):
        with gr.Row(visible=False) as row:
            stems.append(gr.Audio(type="filepath", interactive=False, elem_id=f"stem-{k}"))
            pictures.append(gr.Image(type="filepath", interactive=False, buttons=[],
                                     elem_id=f"stem-spectrogram-{k}"))
        rows.append(row)
    downloads = gr.File(label="Downloads: stems, mix, MP4", file_count="multiple",
                        interactive=False, elem_id="downloads")
    command = gr.Code(label="The same from the command line (saganet-settings)",
                      language="shell", interactive=False, wrap_lines=True, elem_id="command")
    return Page(upload, example, frame, time, video_info, object_choice, add_object,
                remove_object, clear_clicks, negative_click, name, prompt, negative_prompt,
                phrase, objects_table, options, track, generate, stop, stop_waiting, status,
                preview, tracking_summary, mix, mix_spectrogram, downloads, command, rows,
                stems, pictures)


def _endpoint(endpoint: GenerateEndpoint) -> None:
    """The ``/generate`` endpoint's hidden components and event."""
    with gr.Row(visible=False):
        video = gr.File(label="video")
        objects = gr.JSON(label="objects")
        options = gr.JSON(label="options")
        mix = gr.File(label="mix")
        stems = gr.File(label="stems", file_count="multiple")
        mp4 = gr.File(label="video with the sound")
        info = gr.JSON(label="info")
        trigger = gr.Button("generate")
    trigger.click(endpoint.generate, [video, objects, options], [mix, stems, mp4, info],
                  api_name=API_NAME, concurrency_id=MODEL_QUEUE, concurrency_limit=1,
                  api_description="Generate the sound of the objects of a video: "
                                  "mix, stems (one sound file per object), MP4 and info")


def _wire(page: Page, handlers: Handlers) -> None:
    """Connect the page's events to their handlers."""
    quiet = {"api_visibility": "private", "show_progress": "hidden"}
    everything = page.everything()
    editing = [page.frame, page.object_choice, page.name, page.prompt, page.negative_prompt,
               page.phrase, page.objects_table, page.status]
    page.upload.upload(handlers.upload, [page.upload], everything, api_visibility="private")
    page.time.change(handlers.scrub, [page.time], [page.frame, page.status],
                     trigger_mode="always_last", **quiet)
    page.frame.select(handlers.click, [page.negative_click, page.time],
                      [page.frame, page.objects_table, page.status], trigger_mode="multiple",
                      **quiet)
    page.object_choice.input(handlers.choose_object, [page.object_choice, page.time], editing,
                             **quiet)
    for button, handler in ((page.add_object, handlers.add_object),
                            (page.remove_object, handlers.remove_object),
                            (page.clear_clicks, handlers.clear_clicks)):
        button.click(handler, [page.time], editing, **quiet)
    for box, handler in ((page.name, handlers.edit_name), (page.prompt, handlers.edit_prompt),
                         (page.negative_prompt, handlers.edit_negative_prompt),
                         (page.phrase, handlers.edit_phrase)):
        # .change, not .input: pasted and autofilled text count too. It also fires when a
        # handler shows another object's fields, which writes back the same values.
        box.change(handler, [box, page.object_choice],
                   [page.object_choice, page.objects_table, page.status],
                   trigger_mode="always_last", **quiet)
    results = [page.frame, page.objects_table, page.status, page.preview,
               page.tracking_summary]
    jobs = {
        EXAMPLE: page.example.click(
            handlers.example, None, everything, api_visibility="private",
            concurrency_id=MODEL_QUEUE, concurrency_limit=1, validator=handlers.queued(EXAMPLE)),
        TRACKING: page.track.click(
            handlers.track, [page.time], results, inputs_kwargs=page.options,
            api_visibility="private", concurrency_id=MODEL_QUEUE, concurrency_limit=1,
            validator=handlers.queued(TRACKING)),
        GENERATION: page.generate.click(
            handlers.generate, [page.time],
            [*results, page.mix, page.mix_spectrogram, page.downloads, page.command,
             *page.stem_rows, *page.stems, *page.stem_spectrograms],
            inputs_kwargs=page.options, api_visibility="private", concurrency_id=MODEL_QUEUE,
            concurrency_limit=1, validator=handlers.queued(GENERATION)),
    }
    # Not in the model queue: it must reach the job it stops.
    page.stop.click(handlers.stop, None, [page.status, *page.stop_waiting.values()], **quiet)
    # Stop changes a kind's state only when that kind's event waits in line (Handlers.stop):
    # the page then cancels the event, and Gradio takes it out of its queue.
    for kind, event in jobs.items():
        page.stop_waiting[kind].change(None, None, None, cancels=[event])


@dataclass
class App:
    """The built app: its Gradio blocks, the page's components and their handlers."""

    blocks: gr.Blocks
    page: Page
    handlers: Handlers


def build_app(engine: Engine, sessions: Sessions, limits: Limits) -> App:
    """The app's page and endpoint, wired to the engine (not launched).

    Args:
        engine: the shared models.
        sessions: the visitors' sessions and folders.
        limits: what the app accepts.
    """
    # No telemetry or version check: the app talks to nobody but its visitors.
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANUP, analytics_enabled=False) as blocks:
        gr.Markdown(INTRO)
        page = _page(limits, engine.settings.variant)
        handlers = Handlers(page, engine, sessions, limits)
        # The endpoint first: it claims its api_name before the page's events get theirs.
        _endpoint(GenerateEndpoint(engine, sessions, limits))
        _wire(page, handlers)

        def end_session(request: gr.Request) -> None:
            sessions.end(request.session_hash)

        blocks.unload(end_session)
    return App(blocks, page, handlers)
