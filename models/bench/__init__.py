"""Speed: the benchmark of the project's training path against minimal hand-written loops (speed.py, minimal.py)."""
