"""Slipstream: the CLI, the settings and the composition root."""
