"""Board top-levels, bitstream builds and flashing."""
