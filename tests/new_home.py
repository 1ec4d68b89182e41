"""A pytest plugin, loaded before anything else (`-p new_home` in pyproject.toml): the whole
run, Ray clusters and CLI subprocesses included, sees a new, empty home and XDG folders, as on
a machine where nothing ever ran. No test reads the user's home, and no token, cache or
setting of theirs can stand in for a missing install step or setting.

It acts on import, before conftest.py imports anything: huggingface_hub and Ray read these
variables when they are imported."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Variables that point at the user's state outside the home folder: dropped.
USER_STATE = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH_HOME", "RAY_", "CHROMA_", "MPLCONFIG")
XDG_FOLDERS = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_DATA_HOME": ".local/share",
    "XDG_STATE_HOME": ".local/state",
}

NEW_HOME = Path(tempfile.mkdtemp(prefix="sensorium-test-home-"))
atexit.register(shutil.rmtree, NEW_HOME, True)
for name in [name for name in os.environ if name.startswith(USER_STATE)]:
    del os.environ[name]
os.environ["HOME"] = str(NEW_HOME)
for variable, folder in XDG_FOLDERS.items():
    os.environ[variable] = str(NEW_HOME / folder)
