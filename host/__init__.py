"""Host library: network API, device API and its backends, CLI."""
