"""experiments/framework."""
