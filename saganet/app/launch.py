"""``python app.py``: the command line of the web app (flags, model loading, serving).

Parses the flags, loads the models once (so a missing weights file is reported before the page
is up), then serves the page until Ctrl-C. Gradio is imported only after the flags are parsed,
so ``--help`` and flag errors are instant.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from saganet.app.limits import Limits
from saganet.app.logins import read_logins
from saganet.cli import (
    add_feature_cache_argument,
    add_model_arguments,
    begin,
    feature_cache_bytes,
    terminate_cleanly,
)
from saganet.errors import UserInputError, report_user_error

log = logging.getLogger("saganet.app")

PROG = "app.py"


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The app's argument parser."""
    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog=PROG, description="A web page to click objects in a video and hear them: one "
        "sound per object, their mix and an MP4 (Gradio).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1, this machine only; "
                             "0.0.0.0 for every network interface)")
    parser.add_argument("--port", type=_port, default=None,
                        help="port (default: 7860, or the next free one)")
    parser.add_argument("--share", action="store_true",
                        help="also open a public Gradio share link (off by default)")
    parser.add_argument("--auth_file", type=Path, default=None,
                        help="a file of user:password lines: the page and /generate ask for "
                             "one (default: no login)")
    add_model_arguments(parser)
    parser.add_argument("--segment_model", default=None,
                        help="SAM 2.1 model for clicks: tiny (default), small, base-plus, large, "
                             "debug (default with --variant debug) or a local folder")
    parser.add_argument("--text_model", type=Path, default=None,
                        help="a local SAM 3 folder for finding objects by text (default: the "
                             "cache's copy, if present)")
    add_feature_cache_argument(parser)
    parser.add_argument("--max_upload_mb", type=float, default=defaults.max_upload_mb,
                        help=f"largest upload in MB (default {defaults.max_upload_mb:g})")
    parser.add_argument("--max_seconds", type=float, default=defaults.max_seconds,
                        help=f"longest video in seconds (default {defaults.max_seconds:g})")
    parser.add_argument("--max_objects", type=int, default=defaults.max_objects,
                        help=f"most objects per video (default {defaults.max_objects})")
    parser.add_argument("--max_steps", type=int, default=defaults.max_steps,
                        help=f"most sampling steps per request (default {defaults.max_steps})")
    parser.add_argument("--max_clicks", type=int, default=defaults.max_clicks,
                        help=f"most clicks and boxes per object (default {defaults.max_clicks})")
    parser.add_argument("--max_megapixels", type=float, default=defaults.max_megapixels,
                        help=f"largest video frame in megapixels (default "
                             f"{defaults.max_megapixels:g}: 4096x2160 fits)")
    parser.add_argument("--idle_hours", type=float, default=defaults.idle_hours,
                        help=f"remove the session and files of a tab or script that has sent "
                             f"nothing for this long (default {defaults.idle_hours:g}; 0: "
                             f"never)")
    parser.add_argument("--max_queue", type=int, default=defaults.max_queue,
                        help="most requests waiting at once; more are refused (default: no "
                             "limit)")
    return parser


def start(args: argparse.Namespace, block: bool = True):
    """Load the models and serve the app; returns the :class:`~saganet.app.server.AppServer`
    (after it stopped, when ``block``).

    Raises:
        UserInputError: bad flags, an unknown variant or device, missing weights offline.
    """
    from saganet.app.engine import Engine, ModelSettings
    from saganet.app.server import AppServer

    limits = Limits(args.max_upload_mb, args.max_seconds, args.max_objects, args.max_steps,
                    args.max_clicks, args.max_megapixels, args.max_queue, args.idle_hours)
    # Read before the models load: a bad file is reported at once.
    logins = read_logins(args.auth_file) if args.auth_file is not None else []
    engine = Engine(ModelSettings(
        variant=args.variant, weights_dir=args.weights_dir, checkpoint=args.checkpoint,
        device=args.device, full_precision=args.full_precision, cpu_bf16=args.cpu_bf16,
        offline=args.offline,
        segment_model=args.segment_model, text_model=args.text_model),
        feature_cache_bytes=feature_cache_bytes(args.feature_cache_mb))
    engine.preload()
    server = AppServer(engine, limits)
    server.launch(args.host, args.port, args.share, block=block, logins=logins)
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app; returns the exit status (2 for a user error).

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
    """
    args = begin(build_parser(), argv)
    try:
        # SIGTERM (a service manager, a container stopping) closes the app as Ctrl-C does:
        # running jobs stopped and its temporary folder removed, then exit status 143.
        with terminate_cleanly():
            start(args)
    except UserInputError as err:
        return report_user_error(PROG, err)
    except KeyboardInterrupt:
        log.info("stopped")
    return 0
