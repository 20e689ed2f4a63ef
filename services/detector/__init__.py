"""Violation detectors: light state, motion, tracking and the red-light and parking rules.

Every stage is a pure function or a small stateful class over numpy frames; the worker,
replay and evidence writer are the only parts that touch files, the bus or the clock.
"""
