"""Record the live machine through tracefs, in a tracefs instance of its own, then ingest.

The instance (``instances/tracebench-PID``) has its own ring buffer, so recording
never disturbs other users of the global buffer. Whatever happens (the command
fails, Ctrl-C, SIGTERM, SIGHUP, an error), tracing is switched off, a command started
here is stopped and the instance (with its buffers) removed; instances left by a
recorder that was SIGKILLed are removed by the next one.

Signals, as perf and trace-cmd users expect them: the first Ctrl-C (SIGINT) stops the
recording and keeps it (it is ingested as usual); a second one aborts. SIGTERM and SIGHUP
(``timeout``, systemd, a closed terminal) abort at once: no output, exit 128 + signal.
The clock is ``mono`` (CLOCK_MONOTONIC ns), so ``hrtimer_start expires=`` values
are on the trace clock and the TSC-deadline calibration is exact.
"""

from __future__ import annotations

import contextlib
import os
import platform as _platform
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tracebench.errors import TracebenchError, UsageError

#: how long a command is given to exit after SIGTERM before it is killed
CHILD_GRACE_S = 3.0
TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
TRACE_CLOCK = "mono"

_GUEST = [
    "msr:write_msr",
    "msr:read_msr",
    "irq_vectors:local_timer_entry",
    "irq_vectors:local_timer_exit",
    "irq_vectors:reschedule_entry",
    "irq_vectors:reschedule_exit",
    "irq_vectors:call_function_entry",
    "irq_vectors:call_function_exit",
    "irq_vectors:call_function_single_entry",
    "irq_vectors:call_function_single_exit",
    "irq_vectors:irq_work_entry",
    "irq_vectors:irq_work_exit",
    "irq:irq_handler_entry",
    "irq:irq_handler_exit",
    "power:cpu_idle",
    "timer:hrtimer_start",
    "timer:hrtimer_expire_entry",
    "timer:hrtimer_expire_exit",  # with the entry: splits a timer handler's time (dur_ns)
    "ipi:ipi_send_cpu",
    "ipi:ipi_send_cpumask",
]
#: preset name -> events (``subsystem:event``)
PRESETS = {
    "guest": _GUEST,
    "guest-no-msr": [e for e in _GUEST if not e.startswith("msr:")],
    "kvm-host": [
        "kvm:kvm_exit",
        "kvm:kvm_entry",
        "kvm:kvm_msr",
        "kvm:kvm_apic",
        "kvm:kvm_apic_ipi",
        "kvm:kvm_apic_accept_irq",
        "kvm:kvm_inj_virq",
        "kvm:kvm_eoi",
        "kvm:kvm_pv_eoi",
        "kvm:kvm_mmio",
        "kvm:kvm_pio",
        "kvm:kvm_hypercall",
    ],
}


def resolve_events(spec: str) -> list[str]:
    """A preset name or a comma-separated ``subsystem:event`` list."""
    if spec in PRESETS:
        return list(PRESETS[spec])
    events = [e.strip() for e in spec.split(",") if e.strip()]
    for e in events:
        if e.count(":") != 1 or not all(e.split(":")):
            raise UsageError(
                f"event {e!r} is not a preset ({', '.join(PRESETS)}) nor subsystem:event"
            )
    if not events:
        raise UsageError("no events to record")
    return events


def find_tracefs() -> Path:
    """The tracefs mount point, mounting it at /sys/kernel/tracing if needed."""
    if os.geteuid() != 0:
        raise TracebenchError(
            "recording needs root (tracefs instances are root-only); run "
            "as root, or record elsewhere and use `tracebench ingest`"
        )
    for p in TRACEFS_CANDIDATES:
        if (p / "instances").is_dir():
            return p
    target = TRACEFS_CANDIDATES[0]
    try:
        subprocess.run(
            ["mount", "-t", "tracefs", "nodev", str(target)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TracebenchError(
            f"tracefs is not available and cannot be mounted at {target} "
            f"({' '.join(str(exc).split())[:120]})"
        ) from None
    if not (target / "instances").is_dir():
        raise TracebenchError(
            f"tracefs mounted at {target} has no instances/ folder "
            "(kernel without tracing instances)"
        )
    return target


def check_events(tracefs: Path, events: list[str]) -> None:
    for e in events:
        sub, name = e.split(":")
        if not (tracefs / "events" / sub / name / "enable").exists():
            raise UsageError(
                f"event {e} does not exist on this kernel "
                f"({_platform.release()}); see {tracefs}/available_events"
            )


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise TracebenchError(
            f"cannot write {value.strip()!r} to {path} ({exc.strerror})"
        ) from None


@contextlib.contextmanager
def instance(tracefs: Path, events: list[str], buffer_kb: int):
    """A configured tracefs instance; always switched off and removed on the way out."""
    inst = tracefs / "instances" / f"tracebench-{os.getpid()}"
    try:
        inst.mkdir()
    except OSError as exc:
        raise TracebenchError(f"cannot create tracefs instance {inst} ({exc.strerror})") from None
    try:
        _write(inst / "buffer_size_kb", str(buffer_kb))
        clocks = (inst / "trace_clock").read_text()
        if TRACE_CLOCK in clocks.replace("[", " ").replace("]", " ").split():
            _write(inst / "trace_clock", TRACE_CLOCK)
        for e in events:
            sub, name = e.split(":")
            _write(inst / "events" / sub / name / "enable", "1")
        yield inst
    finally:
        _remove_instance(inst)


def _remove_instance(inst: Path) -> bool:
    """Tracing off, events off, instance (and its buffers) removed; True when it is gone."""
    with contextlib.suppress(OSError):
        (inst / "tracing_on").write_text("0")
    with contextlib.suppress(OSError):
        (inst / "events" / "enable").write_text("0")
    # rmdir fails while a reader holds the buffer open; retry briefly
    for _ in range(50):
        try:
            inst.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.05)
    with contextlib.suppress(OSError):  # cannot remove it: at least give the memory back
        (inst / "buffer_size_kb").write_text("1")
    return False


def remove_stale_instances(tracefs: Path) -> list[str]:
    """Remove ``tracebench-PID`` instances whose recorder is gone (it was SIGKILLed)."""
    removed = []
    with contextlib.suppress(OSError):
        for inst in (tracefs / "instances").iterdir():
            m = re.fullmatch(r"tracebench-(\d+)", inst.name)
            if not m or int(m.group(1)) == os.getpid():
                continue
            try:
                os.kill(int(m.group(1)), 0)
                continue  # still recording
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            if _remove_instance(inst):
                removed.append(inst.name)
    return removed


class RecordingAborted(TracebenchError):
    """SIGTERM, SIGHUP or a second Ctrl-C: everything is cleaned up, nothing is written."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"recording aborted by {name}: tracing stopped, tracefs instance "
                         "removed, nothing written")


class _Stop(BaseException):
    """Raised in the main thread by the first Ctrl-C: stop recording, keep it."""


class _Signals:
    """SIGINT / SIGTERM / SIGHUP handlers for the length of a recording (main thread only).

    First SIGINT: raise :class:`_Stop` (once) so the wait ends and the recording is kept;
    any later SIGINT, and any SIGTERM or SIGHUP: raise :class:`RecordingAborted`.
    """

    def __init__(self):
        self.armed = False  # only while recording does a first Ctrl-C mean "stop, keep"
        self.stopped = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.armed and not self.stopped:
            self.stopped = True
            self.armed = False
            raise _Stop
        raise RecordingAborted(signum)

    def __exit__(self, *exc) -> bool:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _stop_child(proc: subprocess.Popen) -> None:
    """SIGTERM the command, SIGKILL it if it has not gone after :data:`CHILD_GRACE_S`."""
    if proc.poll() is not None:
        return
    try:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        proc.wait(timeout=CHILD_GRACE_S)
    except BaseException:  # too slow, or another signal while waiting: no grace left
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        if proc.returncode is None:
            raise


def _is_ftrace_text(path: Path) -> bool:
    """A file ``--keep-text`` wrote (tracefs ``trace`` output starts with ``# tracer:``)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(9) == b"# tracer:"
    except OSError:
        return False


def environment() -> dict:
    """What this machine says about itself: guest or not, APIC / timer features, clocksource."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    cs = ""
    with contextlib.suppress(OSError):
        cs = (
            Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .read_text()
            .strip()
        )
    known = ("x2apic", "tsc_deadline_timer", "kvm_pv_eoi", "constant_tsc", "hypervisor")
    return {
        "platform": "guest" if "hypervisor" in flags else "bare-metal",
        "kernel": _platform.release(),
        "clocksource": cs,
        "features": sorted(f for f in flags if f in known),
    }


def record(
    output,
    duration_ns: int = 5_000_000_000,
    events: str = "guest",
    command: list[str] | None = None,
    force: bool = False,
    keep_text=None,
    buffer_kb: int = 8192,
    log=print,
):
    """Record through tracefs, then ingest the text into a canonical trace.

    Parameters
    ----------
    output : the ``.parquet`` trace to write.
    duration_ns : how long to record when no ``command`` is given, ns.
    events : preset name or comma-separated ``subsystem:event`` list.
    command : run this while recording; recording stops when it exits.
    keep_text : also keep the raw ftrace text at this path.
    buffer_kb : per-CPU ring buffer size, KiB.
    """
    from tracebench.atomic import atomic_path
    from tracebench.ingest import ingest

    out = Path(output)
    if out.exists() and not force:
        raise TracebenchError(f"{out}: already exists (use --force to overwrite)")
    evs = resolve_events(events)
    tracefs = find_tracefs()
    check_events(tracefs, evs)
    remove_stale_instances(tracefs)
    with _Signals() as sigs, tempfile.TemporaryDirectory(prefix="tracebench-rec-") as tmp:
        text = Path(tmp) / "trace.txt"
        with instance(tracefs, evs, buffer_kb) as inst:
            rc = None
            proc = None
            try:
                sigs.armed = True
                _write(inst / "tracing_on", "1")
                t0 = time.monotonic()
                if command:
                    log(f"recording {len(evs)} events while running: {' '.join(command)} "
                        "(Ctrl-C stops and keeps the recording)")
                    try:
                        proc = subprocess.Popen(command)
                    except OSError as exc:
                        raise TracebenchError(
                            f"cannot run {command[0]!r} ({exc.strerror})"
                        ) from None
                    rc = proc.wait()
                else:
                    log(f"recording {len(evs)} events for {duration_ns / 1e9:g} s "
                        "(Ctrl-C stops and keeps the recording)")
                    time.sleep(duration_ns / 1e9)
            except _Stop:
                log("stopped by Ctrl-C: keeping what was recorded (Ctrl-C again aborts)")
            finally:
                sigs.armed = False  # from here on, Ctrl-C aborts
                # whatever ended the wait, a command started here does not outlive it
                if proc is not None:
                    _stop_child(proc)
                    rc = proc.returncode if rc is None else rc
            _write(inst / "tracing_on", "0")
            took = time.monotonic() - t0
            with open(inst / "trace", "rb") as src, open(text, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        if keep_text is not None:
            with atomic_path(keep_text, force=force, owned=_is_ftrace_text) as tmp_text:
                shutil.copyfile(text, tmp_text)
        env = environment()
        return ingest(
            [text],
            out,
            force=force,
            environment=env,
            clock=TRACE_CLOCK,
            method="record",
            attribution=f"recorded with tracebench record on {_platform.node()} "
            f"(Linux {_platform.release()})",
            extra_source={
                "recorded": {
                    "events": evs,
                    "command": command,
                    "command_rc": rc,
                    "seconds": round(took, 3),
                    "trace_clock": TRACE_CLOCK,
                }
            },
        )
