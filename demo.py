"""Generate the sound of the objects of a video (see ``python demo.py --help``).

    python demo.py --video clip.mp4 --mask_video mask.mp4 --prompt violin

Everything lives in :mod:`saganet.commands.demo`; ``saganet-demo`` is the same command.
"""

import sys

from saganet.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
