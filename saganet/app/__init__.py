"""The web app: click the objects of a video, hear each of them (Gradio).

``python app.py`` (or ``saganet-app``) serves a page where a visitor uploads a video (or picks
the example), clicks on objects (or names them), tracks them and generates one sound per
object, their mix and an MP4, plus a ``/generate`` endpoint for ``gradio_client``. The models
load once and serve every request, one at a time.

One concern per module: ``limits`` (what is accepted), ``options`` (a request's options),
``objects`` (the objects a visitor points at), ``session`` (a visitor's video, objects and
folders), ``frames`` (the shown frame and click mapping), ``example`` (the example button),
``engine`` (models, tracking and generation through the library), ``spectrogram``,
``handlers`` (page events), ``api`` (the endpoint), ``layout`` (the page), ``server``
(launching and closing) and ``launch`` (the command line). Gradio is imported only by the
modules that build the page.
"""
