"""experiments/report."""
