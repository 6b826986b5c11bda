"""The guest's answer to a CD-ROM eject request: a guest behaviour of the block layer.

blockdev.c do_open_tray on a locked tray sends the guest an eject request
(blk_dev_eject_request -> ide_cd_eject_request_cb: a media event the guest polls
with GET EVENT STATUS NOTIFICATION). Linux's cdrom driver and udev answer it by
unlocking and opening the tray (hw/ide/atapi.c cmd_prevent_allow_medium_removal,
cmd_start_stop_unit: DEVICE_TRAY_MOVED); SeaBIOS polls no media events and never
locks a tray. `cdrom-eject-request` (open|ignore) and `cdrom-eject-delay` are the
behaviours, with the profiles' defaults (`--emu-guest=os|firmware`), changeable on
the command line and at run time (Machine.behaviours).
"""

from __future__ import annotations

import pytest

from blockdev import media
from blockdev.host import RecordingHost
from tests.test_hmp_help import hmp

LOCKED = ("Device 'cd0' is locked and force was not specified, wait for tray to open and "
          "try again\r\n")


def _locked_cd(vm_cmdline, *extra: str):
    vm = vm_cmdline("-machine", "pc", "-nodefaults", "-drive", "if=ide,media=cdrom,id=cd0",
                    *extra)
    media.guest_lock(vm.vm.block, vm.vm.block.devices[0], True)
    return vm


def test_an_os_opens_the_tray_it_locked(vm_cmdline) -> None:
    """--emu-guest=os: HMP eject fails with QEMU's text, and the guest opens the tray
    0.1 s later (a guest-initiated DEVICE_TRAY_MOVED)."""
    vm = _locked_cd(vm_cmdline)
    talk = vm.talk()
    assert hmp(vm, "eject cd0") == LOCKED
    vm.tick(0.05)
    assert talk.pending() == []
    vm.tick(0.1)
    assert talk.pending() == [
        '{"timestamp": T, "event": "DEVICE_TRAY_MOVED", "data": {"device": "cd0", '
        '"tray-open": true, "id": "/machine/unattached/device[18]"}}']
    assert "Removable device: not locked, tray open" in hmp(vm, "info block cd0")


def test_firmware_ignores_eject_requests(vm_cmdline) -> None:
    """--emu-guest=firmware: SeaBIOS reads no media events, so a locked tray stays
    shut; -f still opens it (the request drops the lock, then the tray opens)."""
    vm = _locked_cd(vm_cmdline, "--emu-guest=firmware")
    talk = vm.talk()
    assert hmp(vm, "eject cd0") == LOCKED
    vm.tick(60)
    assert talk.pending() == []
    assert "Removable device: locked, tray closed" in hmp(vm, "info block cd0")
    assert hmp(vm, "eject -f cd0") == ""
    assert talk.pending() == [
        '{"timestamp": T, "event": "DEVICE_TRAY_MOVED", "data": {"device": "cd0", '
        '"tray-open": true, "id": "/machine/unattached/device[18]"}}']


def test_behaviours_change_on_the_command_line_and_at_run_time(vm_cmdline) -> None:
    """--emu-behaviour=cdrom-eject-delay=2 and Machine.behaviours.set."""
    vm = _locked_cd(vm_cmdline, "--emu-behaviour=cdrom-eject-delay=2")
    talk = vm.talk()
    assert vm.machine.behaviours.get("cdrom-eject-request") == "open"
    assert hmp(vm, "eject cd0") == LOCKED
    vm.tick(1.9)
    assert talk.pending() == []
    vm.tick(0.2)
    assert len(talk.pending()) == 1
    media.guest_start_stop_unit(vm.vm.block, vm.vm.block.devices[0], start=True)
    talk.pending()
    media.guest_lock(vm.vm.block, vm.vm.block.devices[0], True)
    vm.machine.behaviours.set("cdrom-eject-request", "ignore")
    assert hmp(vm, "eject cd0") == LOCKED
    vm.tick(10)
    assert talk.pending() == []


@pytest.mark.parametrize(("profile", "answer"), [("os", "open"), ("firmware", "ignore")])
def test_recording_host_has_the_profiles_values(profile: str, answer: str) -> None:
    """The block layer alone (RecordingHost) reads the same declarations."""
    host = RecordingHost(profile=profile)
    assert host.behaviours.get("cdrom-eject-request") == answer
    assert host.behaviours.get("cdrom-eject-delay") == 0.1
