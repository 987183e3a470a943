"""Benchmarks: commands that print numbers, with the naive or peer baseline measured in the same run."""
