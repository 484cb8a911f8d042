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
``stems`` lists one FLAC per object in the given order (for one object, the mix itself);
``info`` says how long the sound is, where each object was visible and where it is silent.
"""

from pathlib import Path
from typing import Any

import gradio as gr

from saganet.app.engine import Engine, Soundtrack, check_objects, tracking_range
from saganet.app.handlers import gradio_progress, user_message
from saganet.app.limits import Limits
from saganet.app.objects import objects_from_json
from saganet.app.options import GenerationOptions
from saganet.app.session import Sessions
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
    """The function behind ``/generate``.

    Args:
        engine: the shared models.
        sessions: where the call's files go.
        limits: what the app accepts.
    """

    def __init__(self, engine: Engine, sessions: Sessions, limits: Limits) -> None:
        self.engine = engine
        self.sessions = sessions
        self.limits = limits

    def __call__(self, video: str | None, objects: Any, options: Any,
                 progress=gr.Progress(),  # noqa: B008 (Gradio's way to ask for it)
                 ) -> tuple[str, list[str], str | None, dict[str, Any]]:
        """Generate the objects' sound: the mix, the stems, the MP4 and ``info``."""
        try:
            return self._run(video, objects, options, progress)
        except UserInputError as err:
            raise gr.Error(user_message(err), print_exception=False) from None

    def _run(self, video: str | None, objects: Any, options: Any,
             progress: gr.Progress) -> tuple[str, list[str], str | None, dict[str, Any]]:
        if not video:
            raise UserInputError("no video: pass one with handle_file(path)")
        path = Path(video)
        items = objects_from_json(objects)
        self.limits.check_objects(len(items))
        check_objects(items)
        chosen = GenerationOptions.from_mapping(options)
        chosen.check(self.limits)
        self.limits.check_video(path)
        seconds = VideoGrid(path).scan().duration
        self.limits.check_length(seconds, path.name)
        folder = self.sessions.api_run()
        made = self.engine.soundtrack(path, items, chosen, folder,
                                      tracking_range(items, chosen, seconds),
                                      progress=gradio_progress(progress))
        outputs = made.result.outputs
        return (str(outputs.mix), [str(p) for p in made.stems.values()],
                None if outputs.video is None else str(outputs.video), endpoint_info(made))
