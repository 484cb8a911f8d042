"""The user commands, as functions: each ``main(argv) -> exit status``.

The scripts at the top of the repository (``demo.py``, ...) and the console scripts of the
installed package (``saganet-demo``, ...) both call these.
"""
