"""Host library: network API, device API and its backends, CLI."""

from ..config import CoreConfig
from .device import Device
from .network import Network

__all__ = ["CoreConfig", "Device", "Network"]
