"""Benchmarks: scripts that print figures and save them as JSON under bench/results/."""
