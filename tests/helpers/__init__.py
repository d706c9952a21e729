"""What the tests share: real runs of the project's commands (runs.py), kills at named points (kills.py), tiny fits
(fits.py) and readers of what wandb wrote (wandb.py). Imported as `helpers.<module>` (tests/ is on sys.path)."""
