"""pytest at the repository root: skip the server's doctests when the ``serve`` extra is not installed."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("fastapi") else ["semsearch/serve/*.py"]
