"""Amaranth gateware of the plasticore core."""
