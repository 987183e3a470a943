"""Delayed labels: predictions and challenger scores joined to the labels that judge them, days later."""
