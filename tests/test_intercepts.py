"""Intercepted MSRs, port I/O and the 8259 PIC's EOI (VALIDATION.md section 3 item 4):
one exit of the matching reason per event on every virtualized backend, none on bare
metal; the ingest mappings on tiny hand-made texts (host and guest); kernel = reference
on random traces weighted to the new kinds."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import make_cols, run_kernel, run_reference
from tests.test_kernel_reference import _compare, traces
from tracebench.backends import builtin_backends, get_backend
from tracebench.ingest import ingest
from tracebench.schema import PORT_WRITE
from tracebench.schema import EventKind as K
from tracebench.schema import ExitReason as R
from tracebench.validate.preset import Evidence, choose

NEW = (K.MSR_READ, K.MSR_WRITE, K.PORT_IO)
EXPECT = {K.MSR_READ: R.MSR_READ, K.MSR_WRITE: R.MSR_WRITE, K.PORT_IO: R.IO_INSTRUCTION}


def test_kinds_appended_not_renumbered():
    assert [int(k) for k in NEW] == [15, 16, 17] and int(K.IDLE_EXIT) == 14


@pytest.mark.parametrize("backend", sorted(builtin_backends()))
@pytest.mark.usefixtures("constant_costs")
def test_one_exit_each_on_virtualized_backends(backend):
    cols = make_cols([(1000 * (i + 1), 0, k, -1, 0x3B if k != K.PORT_IO else 0x60)
                      for i, k in enumerate(NEW)])
    out, _ = run_kernel(backend, cols, 1)
    ps = get_backend(backend).params().model_values()  # the means: constant_costs
    ghz = ps["tsc_ghz"]
    if backend == "native":
        assert out["exits"].tolist() == [0, 0, 0]
        return
    assert out["exits"].tolist() == [1, 1, 1]
    assert out["exit_reason"].tolist() == [int(EXPECT[k]) for k in NEW]
    msr = round((ps["exit_roundtrip_cyc"] + ps["msr_handler_cyc"]) / ghz)
    pio = round((ps["exit_roundtrip_cyc"] + ps["pio_in_emulation_cyc"]
                 + ps["userspace_exit_cyc"]) / ghz)
    assert out["stall_ns"].tolist() == [msr, msr, pio]


@pytest.mark.usefixtures("constant_costs")
def test_pic_eoi_is_one_port_write_exit():
    cols = make_cols([(1000, 0, K.EOI)])
    pic, _ = run_kernel("full-virt-pic", cols, 1)
    apic, _ = run_kernel("full-virt", cols, 1)
    ps = get_backend("full-virt-pic").params().model_values()
    assert pic["exit_reason"].tolist() == [int(R.IO_INSTRUCTION)] and pic["exits"][0] == 1
    assert pic["stall_ns"][0] == round((ps["exit_roundtrip_cyc"] + ps["inkernel_pio_cyc"])
                                       / ps["tsc_ghz"])
    assert apic["exit_reason"].tolist() == [int(R.APIC_ACCESS)]


@pytest.mark.parametrize("backend", ["native", "full-virt-pic", "kvm-pv", "apicv-ipiv"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=traces(kinds=[*NEW, *NEW, K.EOI, K.IPI_SEND, K.DEVICE_IRQ, K.IDLE_ENTER,
                          K.IDLE_EXIT, K.TIMER_ARM]), chunk=st.sampled_from([None, 1, 5]))
def test_kernel_equals_reference_on_new_kinds(backend, data, chunk):
    cols, n_cpus = data
    if len(cols["ts_ns"]) == 0:
        return
    out, _ = run_kernel(backend, cols, n_cpus, chunk=chunk)
    ref, _ = run_reference(backend, cols, n_cpus)
    _compare(out, ref)


def _ingest(tmp_path, text: str) -> pl.DataFrame:
    src = tmp_path / "t.txt"
    src.write_text(text)
    ingest([src], tmp_path / "t.parquet", force=True)
    return pl.read_parquet(tmp_path / "t.parquet").with_columns(pl.col("kind").cast(pl.String))


def test_host_kvm_msr_other_msrs_become_msr_kinds(tmp_path):
    df = _ingest(tmp_path, (
        "       CPU 0/KVM 1821753 [021] 4841560.169621: kvm:kvm_msr: msr_read 1b = 0xfee00d00\n"
        "       CPU 0/KVM 1821753 [021] 4841560.169700: kvm:kvm_msr: msr_write 3b = 0x5\n"
        "       CPU 0/KVM 1821753 [021] 4841560.169800: kvm:kvm_msr: msr_write 48 = 0x1\n"
        "       CPU 0/KVM 1821753 [021] 4841560.169900: kvm:kvm_msr: msr_write 6e0 = 0x10\n"))
    assert df["kind"].to_list() == ["msr_read", "msr_write", "msr_write", "timer_arm"]
    # kvm_msr fires inside the exit: even SPEC_CTRL (0x48) exited there
    assert df["arg"].to_list()[:3] == [0x1B, 0x3B, 0x48]


_FTRACE = "qemu-system-x86-5665  [000] ....   280.{:06d}: {}\n"


def _ftrace(lines) -> str:
    return "# tracer: nop\n" + "".join(_FTRACE.format(971100 + i, ev) for i, ev in
                                        enumerate(lines))


def test_host_io_exits_map_ports_and_leave_pic_eoi_to_the_ack(tmp_path):
    df = _ingest(tmp_path, _ftrace([
        "kvm_exit: reason IO_INSTRUCTION rip 0x110c8c info 640008 0",  # in al, 0x64
        "kvm_entry: vcpu 0, rip 0x110c8d",
        "kvm_exit: reason IO_INSTRUCTION rip 0xe828 info a00040 0",  # out 0xa0, al
        "kvm_ack_irq: irqchip PIC slave pin 12",
        "kvm_entry: vcpu 0, rip 0xe82a",
        "kvm_exit: reason IO_INSTRUCTION rip 0xe82a info 3f80040 0",  # out 0x3f8, al
        "kvm_entry: vcpu 0, rip 0xe82c",
        "kvm_exit: reason IO_INSTRUCTION rip 0xe82c info 400048 0",  # in al, 0x40 (PIT)
        "kvm_entry: vcpu 0, rip 0xe82e",
    ]))
    assert df["kind"].to_list() == ["port_io", "eoi", "port_io", "clock_read"]
    assert df["arg"].to_list()[0] == 0x64 and df["arg"].to_list()[2] == 0x3F8 + PORT_WRITE


def test_host_io_exit_pic_write_is_the_eoi_without_ack(tmp_path):
    df = _ingest(tmp_path, _ftrace([
        "kvm_exit: reason IO_INSTRUCTION rip 0xe82a info 200040 0",
        "kvm_entry: vcpu 0, rip 0xe82c"]))
    assert df["kind"].to_list() == ["eoi"]


def test_host_kvm_pio_ports(tmp_path):
    df = _ingest(tmp_path, _ftrace([
        "kvm_pio: pio_write at 0x20 size 1 count 1 val 0x20",  # OCW2 EOI
        "kvm_ack_irq: irqchip PIC master pin 0",  # the same EOI: not counted again
        "kvm_pio: pio_write at 0x20 size 1 count 1 val 0x0b",  # OCW3: not an EOI
        "kvm_pio: pio_read at 0x60 size 1 count 1 val 0x1c",
        "kvm_pio: pio_read at 0xb008 size 4 count 1 val 0x1234",
    ]))
    assert df["kind"].to_list() == ["eoi", "port_io", "port_io", "clock_read"]
    assert df["arg"].to_list()[1:3] == [0x20 + PORT_WRITE, 0x60]


def test_guest_msrs_only_those_kvm_intercepts(tmp_path):
    df = _ingest(tmp_path, "# tracer: nop\n" + "".join(
        f"          <idle>-0     [000] d...   100.{100 + i:06d}: {ev}\n" for i, ev in enumerate([
            "write_msr: 3b, value 0",
            "read_msr: 1b, value fee00900",
            "write_msr: 4b564d04, value 1",
            "read_msr: 1a0, value 850089",
            "write_msr: 48, value 1",  # SPEC_CTRL: passed through, no exit
            "write_msr: 49, value 1",  # PRED_CMD: the same
        ])))
    assert df["kind"].to_list() == ["msr_write", "msr_read", "msr_write", "msr_read"]
    assert df["arg"].to_list() == [0x3B, 0x1B, 0x4B564D04, 0x1A0]


def _ev(kinds=None, events=None, msrs=()):
    return Evidence(reasons={"IO_INSTRUCTION", "EXTERNAL_INTERRUPT"}, events=events or {},
                    msrs=set(msrs), kinds=kinds or {}, isa="vmx")


def test_validate_picks_the_pic_eoi_on_pic_acks():
    name, why = choose(_ev(events={"kvm_ack_irq_pic": 2}))
    assert name == "full-virt-pic" and any("port write" in w for w in why)
    assert choose(_ev(events={"kvm_pic_set_irq": 2}))[0] == "full-virt"
    assert choose(_ev(events={"kvm_ack_irq_pic": 2, "kvm_mmio_xapic": 1}))[0] == "full-virt"
