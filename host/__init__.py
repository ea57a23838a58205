"""Host library: network API, device API and its backends, CLI."""

from ..config import CoreConfig
from .device import Device
from .link_backend import LinkBackend
from .network import Network
from .transport import SerialTransport

__all__ = ["CoreConfig", "Device", "LinkBackend", "Network", "SerialTransport"]
