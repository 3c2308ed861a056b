"""Measured against predicted: calibrate this machine, read real exit tables, validate.

``calibrate`` measures the costs the model's parameters stand for (C loops compiled at
first use); ``reports`` reads ``perf kvm stat report`` and ``kvm_stat`` text into the
measured-exits table; ``validate`` replays a host trace's guest-side events through the
matching preset and sets each exit reason's prediction beside the measured one.
"""
