"""experiments/workload."""
