"""Analysis of runs and models: ablation grids (ablation.py), run records grouped into configurations (runs.py),
the complexity comparison (compare.py), every table (tables.py) and figure (figures.py), and the report (report.py)."""
