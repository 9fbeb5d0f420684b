"""Training code for the shipped RLFN weights (run with `python -m train`)."""
