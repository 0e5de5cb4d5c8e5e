"""Engine adapters, one module per database."""
