"""The DFI core: features φ, neighbours, alignment, the attribute vector, the reverse map, the bank."""
