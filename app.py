"""Serve the web app: click the objects of a video, hear each of them (``python app.py
--help``).

    python app.py                       # http://127.0.0.1:7860/
    python app.py --variant debug       # tiny random weights, nothing to download

Everything lives in :mod:`saganet.app`; ``saganet-app`` is the same command.
"""

import sys

from saganet.app.launch import main

if __name__ == "__main__":
    sys.exit(main())
