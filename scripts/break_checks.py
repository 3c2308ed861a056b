"""Check that the reliability tests can fail: break the code once per guard, run the test
that pins it, expect a failure, restore the file.

    python scripts/break_checks.py [NAME ...]      # default: every break below

Each break is ``(name, file, original text, broken text, test selection)``; the original
text must occur exactly once. Prints one line per break: ``caught`` (the test failed, as
it must) or ``MISSED``; exits 1 if any was missed. Files are restored even on Ctrl-C.
"""

# ruff: noqa: E501  (test ids and code lines are quoted whole)
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BREAKS = [
    ("--force replaces any folder", "tracebench/atomic.py",
     "    if exists and not _is_ours(final, owned, kind):",
     "    if False:",
     "tests/test_outputs_confined.py::test_force_never_deletes_a_folder_tracebench_did_not_write"),
    ("symlink output followed", "tracebench/atomic.py",
     "    if final.is_symlink():\n        raise TracebenchError(",
     "    if False:\n        raise TracebenchError(",
     "tests/test_outputs_confined.py::test_output_symlink_is_never_written_through"),
    ("'.' and '..' accepted", "tracebench/atomic.py",
     'if last in ("", ".", ".."):', 'if last in ("",):',
     "tests/test_outputs_confined.py::test_output_that_names_no_new_entry_is_a_usage_error"),
    ("output over an input", "tracebench/atomic.py",
     "            if cand == out_abs or out_abs in cand.parents:",
     "            if False:",
     "tests/test_outputs_confined.py::test_output_over_or_around_an_input_is_refused"),
    ("stale temporaries kept", "tracebench/atomic.py",
     "    clean_stale(final)\n    tmp = _sibling(final, \"tmp\")\n    try:\n        yield tmp",
     "    tmp = _sibling(final, \"tmp\")\n    try:\n        yield tmp",
     "tests/test_outputs_confined.py::test_stale_temporaries_of_killed_runs_are_cleaned_only_if_ours"),
    ("stale cleanup ignores the pid", "tracebench/atomic.py",
     "        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):",
     "        if not m:",
     "tests/test_outputs_confined.py::test_stale_temporaries_of_killed_runs_are_cleaned_only_if_ours"),
    ("OS errors escape the writer", "tracebench/atomic.py",
     "    except OSError as exc:\n        _remove(tmp)\n        raise os_error(exc, final, tmp) from None",
     "    except ZeroDivisionError as exc:\n        _remove(tmp)\n        raise os_error(exc, final, tmp) from None",
     "tests/test_outputs_confined.py::test_failing_rename_is_one_line_and_previous_output_stays"),
    ("backend names unchecked", "tracebench/backends/tomlfile.py",
     "    if not NAME_RE.fullmatch(name):", "    if False:",
     "tests/test_backend_files.py::test_hostile_name_never_reaches_the_results_folder"),
    ("partition values unchecked", "tracebench/replayer/results.py",
     "    if not isinstance(value, str) or not SAFE_COMPONENT.fullmatch(value):",
     "    if False:",
     "tests/test_backend_files.py::test_partition_values_are_checked_where_they_become_paths"),
    ("base cycles followed", "tracebench/backends/__init__.py",
     "    if key in _chain:", "    if False:",
     "tests/test_backend_files.py::test_cycles_folders_and_bad_bytes"),
    ("TOML types unchecked", "tracebench/backends/tomlfile.py",
     "        if key in data and not isinstance(data[key], want):",
     "        if False:",
     "tests/test_backend_files.py::test_hostile_backend_file_is_one_line_usage_error"),
    ("usage errors exit 1", "tracebench/errors.py",
     "    exit_code = 2", "    exit_code = 1",
     "tests/test_exit_codes.py"),
    ("impossible synth sizes accepted", "tracebench/limits.py",
     "    if not events < MAX_EVENTS:", "    if False:",
     "tests/test_exit_codes.py"),
    ("trace metadata unchecked", "tracebench/trace.py",
     "            if isinstance(value, bool) or not isinstance(value, types):",
     "            if False:",
     "tests/test_trace_meta_schema.py::test_hostile_metadata_fields"),
    ("short duration accepted", "tracebench/trace.py",
     "        if last_ts is not None and last_ts > self.meta.duration_ns:",
     "        if False:",
     "tests/test_trace_meta_schema.py::test_hostile_metadata_fields"),
    ("bad [CPU] read as CPU 0", "tracebench/ingest/text/scan.py",
     "                        if lb >= p and buf[lb] == _LBR:\n                            cpu = L.BAD_CPU",
     "                        if False:\n                            cpu = L.BAD_CPU",
     "tests/test_fuzz_ingest.py::test_bad_line_is_an_error_under_strict_and_a_counted_skip_otherwise"),
    ("ns timestamps wrap", "tracebench/ingest/text/scan.py",
     "            elif dots == 1 and sec > L.MAX_TS_SEC:", "            elif False:",
     "tests/test_fuzz_ingest.py::test_bad_line_is_an_error_under_strict_and_a_counted_skip_otherwise"),
    ("huge decimal fields become -1", "tracebench/ingest/rules/base.py",
     "    return field(name).cast(pl.Int64, strict=True)",
     "    return field(name).cast(pl.Int64, strict=False)",
     "tests/test_fuzz_ingest.py::test_bad_line_is_an_error_under_strict_and_a_counted_skip_otherwise"),
    ("vCPUs past 65534 written", "tracebench/ingest/stream/window.py",
     "    if not bad.any():\n        return rows", "    if True:\n        return rows",
     "tests/test_fuzz_ingest.py::test_bad_line_is_an_error_under_strict_and_a_counted_skip_otherwise"),
    ("pipes not spooled", "tracebench/ingest/stream/pipeline.py",
     "    if not any(is_stream(p) for p in given):", "    if True:",
     "tests/test_ingest_streams.py::test_stdin_dash"),
    ("SIGTERM skips the cleanup", "tracebench/cli/common.py",
     "            with _terminate_cleanly():", "            with contextlib.nullcontext():",
     "tests/test_crash_safety.py"),
    ("results columns unchecked", "tracebench/report/load.py",
     "    _check_columns(df, table, path)\n", "",
     "tests/test_fuzz_loaders.py::test_fuzz_results_loader"),
    ("record ignores SIGTERM handling", "tracebench/ingest/record.py",
     "            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):",
     "            for sig in ():",
     "tests/test_record_signals.py"),
]


def run(selected: list[str]) -> int:
    missed = 0
    for name, rel, old, new, test in BREAKS:
        if selected and name not in selected:
            continue
        path = ROOT / rel
        text = path.read_text()
        if text.count(old) != 1:
            print(f"STALE    {name}: the original text is not in {rel} exactly once")
            missed += 1
            continue
        try:
            path.write_text(text.replace(old, new))
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                                "no:cacheprovider", test], cwd=ROOT, capture_output=True,
                               timeout=900)
        finally:
            path.write_text(text)
        caught = r.returncode != 0
        missed += not caught
        print(f"{'caught' if caught else 'MISSED':8} {name}  ({rel} -> {test})", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
