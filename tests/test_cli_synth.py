"""``tracebench synth`` through the real typer app: files, listings, errors and exit codes."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracebench.cli import app
from tracebench.scenarios import SCENARIOS, synthesize_to_file
from tracebench.trace import read_trace

runner = CliRunner()


def synth(*args: str):
    return runner.invoke(app, ["synth", *args])


def one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    err = result.stderr.strip()
    assert err.startswith("tracebench: error:") and "\n" not in err, err
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in err, err


def test_synth_writes_a_valid_trace_with_its_parameters(tmp_path):
    out = tmp_path / "tick.parquet"
    r = synth(
        "hz-tick",
        "-o",
        str(out),
        "--cpus",
        "2",
        "--duration",
        "1s",
        "--seed",
        "3",
        "-p",
        "hz=250",
        "--param",
        "mode=periodic",
    )
    assert r.exit_code == 0, r.output
    assert r.stdout == ""  # the summary is a log line: stderr
    assert "events" in r.stderr and str(out) in r.stderr
    cols, meta = read_trace(out)
    assert meta.n_cpus == 2 and meta.duration_ns == 10**9
    assert meta.source["seed"] == 3
    assert meta.source["params"]["hz"] == 250 and meta.source["params"]["mode"] == "periodic"
    assert len(cols["ts_ns"]) > 0


def test_cli_and_api_give_the_same_bytes(tmp_path):
    a = tmp_path / "a.parquet"
    assert (
        synth(
            "ipi-storm", "-o", str(a), "--cpus", "3", "--duration", "100ms", "--seed", "9"
        ).exit_code
        == 0
    )
    b = synthesize_to_file(tmp_path / "b.parquet", "ipi-storm", 3, 100_000_000, 9)[0]
    assert a.read_bytes() == b.read_bytes()


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "t.parquet"
    args = ("clock-heavy", "-o", str(out), "--duration", "50ms")
    assert synth(*args).exit_code == 0
    before = out.read_bytes()
    one_line_error(synth(*args, "--seed", "1"), 1, "already exists", "--force")
    assert out.read_bytes() == before
    assert synth(*args, "--seed", "1", "--force").exit_code == 0
    assert out.read_bytes() != before


def test_list_table_names_every_scenario_and_parameter():
    r = synth("--list")
    assert r.exit_code == 0, r.output
    for name, spec in SCENARIOS.items():
        assert name in r.stdout
        for p in spec.params:
            assert p.name in r.stdout


def test_list_json_is_the_spec():
    r = synth("--list", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [d["name"] for d in data] == list(SCENARIOS)
    hz = next(d for d in data if d["name"] == "hz-tick")
    by_name = {p["name"]: p for p in hz["params"]}
    assert by_name["hz"]["default"] == 1000 and by_name["hz"]["unit"] == "Hz"
    assert by_name["mode"]["choices"] == ["oneshot", "periodic"]
    assert "timer_irq" in hz["doc"]


def test_list_one_scenario_shows_its_doc():
    r = synth("ipi-storm", "--list")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("ipi-storm: ") and "all-but-self" in r.stdout
    assert "shootdown_targets" in r.stdout and "hz-tick" not in r.stdout
    one_line_error(synth("nope", "--list"), 2, "unknown scenario 'nope'")


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (("nope", "-o", "{out}"), 2, ("unknown scenario 'nope'", "hz-tick")),
        (("hz-tick", "-o", "{out}", "-p", "hzz=3"), 2, ("unknown parameter 'hzz'", "valid: hz")),
        (("hz-tick", "-o", "{out}", "-p", "hz=fast"), 2, ("hz='fast'",)),
        (("hz-tick", "-o", "{out}", "-p", "hz"), 2, ("expected name=value",)),
        (("hz-tick", "-o", "{out}", "--duration", "ten"), 2, ("cannot parse duration 'ten'",)),
        (("hz-tick", "-o", "{out}", "--duration", "0s"), 2, ("duration must be positive",)),
        (("ipi-storm", "-o", "{out}", "--cpus", "1"), 2, ("needs 2..65535 vCPUs",)),
        (("net-rr", "-o", "{out}", "-p", "requests_per_s=5M"), 2, ("busy",)),
        (("hz-tick",), 2, ("-o/--output",)),
        ((), 2, ("SCENARIO",)),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(tmp_path, args, code, fragments):
    out = tmp_path / "t.parquet"
    r = synth(*(a.format(out=out) for a in args))
    one_line_error(r, code, *fragments)
    assert not out.exists()


def test_typer_usage_errors_exit_2(tmp_path):
    r = synth("hz-tick", "-o", str(tmp_path / "t.parquet"), "--cpus", "0")
    assert r.exit_code == 2


def test_cli_module_imports_nothing_heavy_at_import_time():
    """``tracebench --help`` must stay fast: numpy & co. are imported inside the command."""
    src = Path(__file__).parents[1] / "tracebench" / "cli" / "synth.py"
    tree = ast.parse(src.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module)
    heavy = {"numpy", "polars", "pyarrow", "numba", "tracebench.scenarios", "tracebench.trace"}
    assert not top & heavy, top & heavy
