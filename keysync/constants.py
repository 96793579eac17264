"""Conventions every stage shares, in one place (importing this module costs nothing)."""

# Network calls per clip per stage on the official schedule: its num_steps 10 is the 11-level AYS table.
OFFICIAL_STEPS = 11
STEPS_HELP = f"network calls per clip per stage (>= 1; default {OFFICIAL_STEPS}, the official schedule)"
