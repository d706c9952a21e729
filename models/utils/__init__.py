"""Helpers every room shares: the one Hydra compose (`hydra.py`) and the one machine description (`system.py`)."""
