"""Presets that come by name: the synthetic-motion model shipped inside the package (`builtin/`)."""
