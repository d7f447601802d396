"""Platform adapters, loaded lazily by name so a deployment imports only the SDKs it uses."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.adapter import Adapter

# name -> "module:class"; the runner starts every adapter whose ``enabled()`` says so.
REGISTRY: dict[str, str] = {
    "web": "adapters.web:WebAdapter",
    "slack": "adapters.slack:SlackAdapter",
    "discord": "adapters.discord_bot:DiscordAdapter",
}


def load_adapter(name: str) -> type[Adapter]:
    """Import and return the adapter class registered as ``name``."""
    module_name, _, class_name = REGISTRY[name].partition(":")
    adapter: type[Adapter] = getattr(importlib.import_module(module_name), class_name)
    return adapter
