"""The help listings of `-machine`, `-cpu` and `-device` (issue 14 item 4).

Expected texts are QEMU 2.11.0's output, recorded from the v2.11.0 binary
(x86_64-softmmu, TCG): the streams and exit statuses come from vl.c main.
"""

from __future__ import annotations

import pytest

from vmm import program


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(program, "progname", lambda: "qemu-system-x86_64")
    status = program.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("arg", ["help", "?"])
def test_machine_help_lists_the_machine_types_on_stdout(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, arg: str) -> None:
    """vl.c machine_parse: printf("Supported machines are:\\n"), then per machine class
    (sorted by machine_class_cmp) its alias line "%-20s %s (alias of %s)\\n" and
    "%-20s %s%s\\n" with " (default)"; exit(0). Harnesses read the default from it."""
    status, out, err = run(capsys, monkeypatch, "-machine", arg)
    assert (status, err) == (0, "")
    lines = out.splitlines(keepends=True)
    assert lines[0] == "Supported machines are:\n"
    assert "pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-2.11)\n" \
        in lines
    assert "pc-i440fx-2.11       Standard PC (i440FX + PIIX, 1996) (default)\n" in lines
    assert lines[-2:] == ["isapc                ISA-only PC\n", "none                 empty machine\n"]
    assert len(lines) == 39
    default = [line.split()[0] for line in lines if line.endswith(" (default)\n")]
    assert default == ["pc-i440fx-2.11"]


def test_machine_type_help_lists_its_properties_on_stderr(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """vl.c machine_help_func: error_printf("%s.%s=%s", MACHINE_GET_CLASS(machine)->name,
    prop->name, prop->type) and " (%s)\\n" of the description; the class name is the
    resolved one (`pc` prints `pc-i440fx-2.11.`); exit(0)."""
    status, out, err = run(capsys, monkeypatch, "-machine", "pc,help")
    assert (status, out) == (0, "")
    lines = err.splitlines(keepends=True)
    assert lines[0] == "pc-i440fx-2.11.smbus=bool\n"
    assert "pc-i440fx-2.11.smm=OnOffAuto (Enable SMM (pc & q35))\n" in lines
    assert len(lines) == 25
    status, out, err = run(capsys, monkeypatch, "-M", "pc-q35-2.9,help")
    assert (status, out) == (0, "")
    assert err.startswith("pc-q35-2.9.smbus=bool\n")
    status, out, err = run(capsys, monkeypatch, "-machine", "none,help")
    assert err.startswith("none.suppress-vmdesc=bool (Set on to disable self-describing "
                          "migration)\n")


def test_an_unknown_machine_is_still_refused(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """vl.c machine_parse: error_report("unsupported machine type") and exit(1)."""
    status, out, err = run(capsys, monkeypatch, "-machine", "bogus,help")
    assert (status, out) == (1, "")
    assert err == ("qemu-system-x86_64: -machine bogus,help: unsupported machine type\n"
                   "Use -machine help to list supported machines\n")


def test_cpu_help_lists_the_models_and_flags_on_stdout(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """vl.c main: list_cpus(stdout, &fprintf, cpu_model) and exit(0); target/i386/cpu.c
    x86_cpu_list prints "x86 %16s  %-48s\\n" per model, then the CPUID flags."""
    status, out, err = run(capsys, monkeypatch, "-cpu", "help")
    assert (status, err) == (0, "")
    lines = out.splitlines(keepends=True)
    assert lines[0] == "Available CPUs:\n"
    assert "x86           qemu64  QEMU Virtual CPU version 2.5+                   \n" in lines
    assert "Recognized CPUID flags:\n" in lines


def test_device_help_lists_the_types_on_stderr(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """qdev-monitor.c qdev_device_help -> qdev_print_devinfos(false): per category,
    `name "TYPE", bus BUS[, alias "A"][, desc "D"]` with error_printf; vl.c exit(0)."""
    status, out, err = run(capsys, monkeypatch, "-device", "help")
    assert (status, out) == (0, "")
    lines = err.splitlines(keepends=True)
    assert lines[0] == "Controller/Bridge/Hub devices:\n"
    assert 'name "ich9-ahci", bus PCI, alias "ahci"\n' in lines


def test_device_driver_help_lists_its_properties(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """qdev-monitor.c qdev_device_help: qmp_device_list_properties of the driver (an
    alias resolved by find_typename_by_alias), each as error_printf("%s.%s=%s") plus
    " (%s)\\n" of the description; exit(0)."""
    status, out, err = run(capsys, monkeypatch, "-device", "e1000,help")
    assert (status, out) == (0, "")
    lines = err.splitlines(keepends=True)
    assert lines[:3] == ["e1000.bootindex=int32\n", "e1000.mitigation=bool (on/off)\n",
                         "e1000.addr=int32 (Slot and optional function number, example: "
                         "06.0 or 06)\n"]
    status, out, err = run(capsys, monkeypatch, "-device", "ahci,help")
    assert err.startswith("ich9-ahci.")


@pytest.mark.parametrize(("arg", "message"), [
    ("nosuch,help", "Device 'nosuch' not found"),
    ("cpu,help", "Parameter 'typename' expects non-abstract device type"),
    # QemuOpts splits "SUNW,fdtwo": the driver is "SUNW".
    ("SUNW,fdtwo,help", "Device 'SUNW' not found"),
])
def test_device_driver_help_errors(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        arg: str, message: str) -> None:
    """qdev-monitor.c qdev_device_help: error_report_err of qmp_device_list_properties's
    error at the -device option, and still return 1: vl.c exits 0."""
    status, out, err = run(capsys, monkeypatch, "-device", arg)
    assert (status, out) == (0, "")
    assert err == f"qemu-system-x86_64: -device {arg}: {message}\n"
