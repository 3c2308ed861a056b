"""Termination signals wait for a writer's critical call, and never land in worker threads."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tracebench import signals
from tracebench.cli.common import Terminated, _terminate_cleanly


def test_a_signal_inside_a_critical_call_is_raised_when_it_returns():
    steps = []
    with pytest.raises(Terminated), _terminate_cleanly():
        with signals.uninterrupted():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("after the signal, still inside")  # not cut short
        steps.append("after the block")  # the held signal is raised before this
    assert steps == ["after the signal, still inside"]


def test_outside_a_critical_call_the_signal_is_raised_at_once():
    steps = []
    with pytest.raises(Terminated), _terminate_cleanly():
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("not reached")
    assert steps == []


def test_worker_threads_block_termination_signals():
    seen = {}

    def work():
        signals.quiet_thread()
        seen["mask"] = signal.pthread_sigmask(signal.SIG_BLOCK, [])

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert set(signals.TERMINATING) <= set(seen["mask"])
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
