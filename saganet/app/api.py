"""The ``/generate`` endpoint: a video and its objects in, stems and a mix out, for scripts.

Page events such as a click on the frame cannot be called from ``gradio_client``, so scripted
use has its own named endpoint, running the same path as the page's Generate button::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    mix, stems, video, info = client.predict(
        handle_file("duet.mp4"),
        [{"name": "violin", "prompt": "violin", "clicks": ["812,430@1.5"]},
         {"name": "trumpet", "prompt": "trumpet", "boxes": ["100,200,380,520@0"]}],
        {"num_steps": 25, "duration": 5},
        api_name="/generate")

Objects take the string forms of :mod:`saganet.segment.prompts` (clicks ``"X,Y@T"`` in
pixels of the upright frame and seconds, ``negative_clicks``, boxes ``"X0,Y0,X1,Y1@T"``) or a
``text`` phrase (SAM 3); options are those of :class:`~saganet.app.options.GenerationOptions`.
``stems`` lists one FLAC (WAV with ``audio_format``) per object in the given order (for one
object, the mix itself); ``info`` says how long the sound is, where each object was visible
and where it is silent.

A call runs with a :class:`~saganet.cancel.CancelToken` listed under the client's session hash
(:meth:`~saganet.app.session.Sessions.api_call`). When the client goes away (``client.close()``,
its process ends or is killed), Gradio notices that its heartbeat connection closed and runs
the page's ``unload`` handler for that session hash, which cancels every call of the client:
a running one stops at its next safe point, a queued one starts nothing, and neither leaves
files behind. ``job.cancel()`` of ``gradio_client`` stops the one call: Gradio cancels the
event's asyncio task, which only an ``async`` function notices (a synchronous one would run on
in its worker thread), so the endpoint is a coroutine that runs the work in a thread and, when
cancelled, cancels the call's token and waits for the work to stop before the queue slot frees.
"""

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import gradio as gr

from saganet.app.engine import Engine, Soundtrack, check_objects, tracking_range
from saganet.app.handlers import gradio_progress, user_message
from saganet.app.limits import Limits
from saganet.app.objects import objects_from_json
from saganet.app.options import GenerationOptions
from saganet.app.session import CALL_CANCELLED, Sessions
from saganet.cancel import CancelledError, CancelToken
from saganet.errors import UserInputError
from saganet.segment.grid import VideoGrid

API_NAME = "generate"


def endpoint_info(made: Soundtrack) -> dict[str, Any]:
    """The ``info`` output: duration, variant, mix gain and, per object, its file, visible
    spans and silent spans (seconds of the video)."""
    result = made.result
    return {
        "duration": made.duration,
        "start": result.segment.start,
        "variant": made.variant,
        "mix_gain": None if result.mix_level is None else result.mix_level.gain,
        "objects": {
            name: {"file": path.name,
                   "visible": [[s.start, s.end] for s in made.tracking.spans(name)],
                   "silent": [list(span) for span in result.silenced.get(name, [])]}
            for name, path in made.stems.items()},
    }


class GenerateEndpoint:
    """The function behind ``/generate`` (:meth:`generate`: a coroutine, so that it learns of
    Gradio's cancellation; an instance with an ``async __call__`` would be called as a plain
    function).

    Args:
        engine: the shared models.
        sessions: where the call's files go, and the tokens that stop it.
        limits: what the app accepts.
    """

    def __init__(self, engine: Engine, sessions: Sessions, limits: Limits) -> None:
        self.engine = engine
        self.sessions = sessions
        self.limits = limits

    async def generate(self, video: str | None, objects: Any, options: Any,
                       request: gr.Request,
                       progress=gr.Progress(),  # noqa: B008 (Gradio's way to ask for it)
                       ) -> tuple[str, list[str], str | None, dict[str, Any]]:
        """Generate the objects' sound: the mix, the stems, the MP4 and ``info``.

        A call stopped because its client went away ends with an error saying so (a client
        still listening, e.g. another thread of a script that closed its ``Client``, reads it
        as ``AppError``), as a page's stopped job ends with a status line. A call cancelled
        by its client (``job.cancel()``) stops at its next safe point; the queue's next call
        starts once it has, when the models are free again.
        """
        cancel = CancelToken()
        work = asyncio.ensure_future(asyncio.to_thread(
            self._call, video, objects, options, request.session_hash, cancel, progress))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            cancel.cancel(CALL_CANCELLED)
            # Its error (the stop itself) has no reader: the client has cancelled.
            with contextlib.suppress(Exception):
                await work
            raise

    def _call(self, video: str | None, objects: Any, options: Any, key: str | None,
              cancel: CancelToken, progress: gr.Progress,
              ) -> tuple[str, list[str], str | None, dict[str, Any]]:
        try:
            with self.sessions.api_call(key, cancel) as call:
                return self._run(video, objects, options, call.folder, call.cancel, progress)
        except UserInputError as err:
            raise gr.Error(user_message(err), print_exception=False) from None
        except CancelledError as err:
            raise gr.Error(f"stopped: {err.reason}", print_exception=False) from None

    def _run(self, video: str | None, objects: Any, options: Any, folder: Path,
             cancel: CancelToken, progress: gr.Progress,
             ) -> tuple[str, list[str], str | None, dict[str, Any]]:
        if not video:
            raise UserInputError("no video: pass one with handle_file(path)")
        path = Path(video)
        items = objects_from_json(objects)
        self.limits.check_objects(len(items))
        for item in items:
            self.limits.check_clicks(item)
        check_objects(items)
        chosen = GenerationOptions.from_mapping(options)
        chosen.check(self.limits)
        self.limits.check_video(path)
        seconds = VideoGrid(path).scan().duration
        self.limits.check_length(seconds, path.name)
        made = self.engine.soundtrack(path, items, chosen, folder,
                                      tracking_range(items, chosen, seconds),
                                      progress=gradio_progress(progress), cancel=cancel)
        outputs = made.result.outputs
        return (str(outputs.mix), [str(p) for p in made.stems.values()],
                None if outputs.video is None else str(outputs.video), endpoint_info(made))
