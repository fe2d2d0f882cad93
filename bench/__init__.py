"""`make bench`: facesearch measured against its baselines side by side, in one run.

`python -m bench --help`; sections live in their own modules (see bench/__main__.py).
"""
