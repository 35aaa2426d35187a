"""Measurements: RTT, one-way delay, throughput, envelope verdicts."""
