"""Benchmarks: BTNet per resolution against the upsample-to-112 baseline, and whole frames.

``timing`` runs cases interleaved, ``per_resolution`` builds the BTNet and baseline
cases, ``frames`` times the Recognizer stage by stage, ``env`` describes the machine
and ``report`` prints, saves and plots. ``btnet-edge bench`` wires them together.
"""
