"""Railcar: own an immutable, Container Linux-compatible OS and the means to build, sign and
deliver its updates.

Components live in sub-packages (``payload``, ``release``, later ``omaha``, ``server``,
``agent``, ``image``, ``reboot``, ``vm``); the ``railcar`` command gathers their CLIs.
"""

__version__ = "0.1.0"
