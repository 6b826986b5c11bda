"""QEMU 2.11's option table (qemu-options.hx) for qemu-system-x86_64.

Layer: vmm, pure (no I/O, no trio). Used by `vmm.cmdline` to recognise
options (name, whether it takes an argument, whether x86_64 has it) and to
print `-help`.

Every option of qemu-options.hx is listed, in its order, under its
heading. `target` is False for options defined for other targets only
(QEMU then says `Option not supported for this target`). The help lines
are this project's own wording in QEMU's layout (syntax, then the
description from column 16); options QEMU lists without a help line
(aliases, deprecated ones) have none here either.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class QemuOption:
    name: str
    has_arg: bool
    help: str = ""
    #: False when qemu-system-x86_64 knows the name but not the option.
    target: bool = True


@attrs.frozen
class Heading:
    title: str


def _line(syntax: str, text: str) -> str:
    if not text:
        return f"{syntax}\n"
    if len(syntax) < 16:
        return f"{syntax:<16}{text}\n"
    return f"{syntax}\n{'':16}{text}\n"


def _o(name: str, has_arg: bool, *lines: tuple[str, str], target: bool = True) -> QemuOption:
    return QemuOption(name, has_arg, "".join(_line(s, t) for s, t in lines), target)


A = True
N = False

TABLE: tuple[QemuOption | Heading, ...] = (
    Heading("Standard options"),
    _o("h", N),
    _o("help", N, ("-h or -help", "print this help text and exit")),
    _o("version", N, ("-version", "print the version and exit")),
    _o(
        "machine",
        A,
        (
            "-machine [type=]name[,prop[=value][,...]]",
            "choose the board ('-machine help' lists them)",
        ),
        ("", "accel=kvm|xen|hax|tcg (several, ':'-separated, are tried in order)"),
        ("", "kernel_irqchip=on|off, kvm_shadow_mem=size, dump-guest-core=on|off,"),
        ("", "mem-merge=on|off, usb=on|off, iommu=on|off, suppress-vmdesc=on|off,"),
        ("", "nvdimm=on|off, enforce-config-section=on|off, ..."),
    ),
    _o("M", A),
    _o("cpu", A, ("-cpu cpu", "choose the CPU model ('-cpu help' lists them)")),
    _o(
        "accel",
        A,
        (
            "-accel [accel=]accelerator[,thread=single|multi]",
            "choose the accelerator (kvm, xen, hax or tcg)",
        ),
    ),
    _o(
        "smp",
        A,
        (
            "-smp [cpus=]n[,maxcpus=cpus][,cores=cores][,threads=threads][,sockets=sockets]",
            "number of CPUs at start, their topology and the maximum for hotplug",
        ),
    ),
    _o(
        "numa",
        A,
        ("-numa node[,mem=size][,cpus=firstcpu[-lastcpu]][,nodeid=node]", "define a NUMA node"),
        (
            "-numa node[,memdev=id][,cpus=firstcpu[-lastcpu]][,nodeid=node]",
            "... backed by a memory object",
        ),
        ("-numa dist,src=source,dst=destination,val=distance", "distance between two nodes"),
        ("-numa cpu,node-id=node[,socket-id=x][,core-id=y][,thread-id=z]", "place a CPU in a node"),
    ),
    _o(
        "add-fd",
        A,
        (
            "-add-fd fd=fd,set=set[,opaque=opaque]",
            "put a duplicate of an inherited fd into an fd set",
        ),
    ),
    _o("set", A, ("-set group.id.arg=value", "set one parameter of an option group instance")),
    _o(
        "global",
        A,
        ("-global driver.property=value", "default value of a device property"),
        ("-global driver=driver,property=property,value=value", "the same, spelled out"),
    ),
    _o(
        "boot",
        A,
        (
            "-boot [order=drives][,once=drives][,menu=on|off][,splash=file][,splash-time=ms]"
            "[,reboot-timeout=ms][,strict=on|off]",
            "boot order (a, b floppy; c disk; d CD-ROM; n-p network) and boot menu",
        ),
    ),
    _o(
        "m",
        A,
        (
            "-m [size=]megs[,slots=n,maxmem=size]",
            "RAM size (MiB unless suffixed); slots/maxmem for hotplug",
        ),
    ),
    _o("mem-path", A, ("-mem-path FILE", "back guest RAM with files in FILE")),
    _o("mem-prealloc", N, ("-mem-prealloc", "allocate guest RAM up front (with -mem-path)")),
    _o("k", A, ("-k language", "keyboard layout, e.g. 'de' or 'fr'")),
    _o("audio-help", N, ("-audio-help", "list the audio drivers and their settings")),
    _o(
        "soundhw",
        A,
        ("-soundhw c1,...", "enable sound cards ('-soundhw help' lists them, 'all' enables all)"),
    ),
    _o(
        "balloon",
        A,
        ("-balloon none", "no balloon device"),
        ("-balloon virtio[,addr=str]", "a virtio balloon device"),
    ),
    _o(
        "device",
        A,
        ("-device driver[,prop[=value][,...]]", "add a device ('-device help' lists drivers,"),
        ("", "'-device driver,help' lists one driver's properties)"),
    ),
    _o(
        "name",
        A,
        (
            "-name string1[,process=string2][,debug-threads=on|off]",
            "guest name, process name, thread names",
        ),
    ),
    _o("uuid", A, ("-uuid %08x-%04x-%04x-%04x-%012x", "machine UUID")),
    Heading(""),
    Heading("Block device options"),
    _o("fda", A, ("-fda/-fdb file", "floppy disk 0/1 image")),
    _o("fdb", A),
    _o("hda", A, ("-hda/-hdb file", "IDE hard disk 0/1 image")),
    _o("hdb", A),
    _o("hdc", A, ("-hdc/-hdd file", "IDE hard disk 2/3 image")),
    _o("hdd", A),
    _o("cdrom", A, ("-cdrom file", "IDE CD-ROM image (secondary master)")),
    _o(
        "blockdev",
        A,
        (
            "-blockdev [driver=]driver[,node-name=N][,discard=ignore|unmap]",
            "add a block node, in keyval syntax (file.driver=file,...) or as a JSON object",
        ),
    ),
    _o(
        "drive",
        A,
        ("-drive [file=file][,if=type][,bus=n][,unit=m][,media=d][,index=i]", "add a drive:"),
        ("", "if=ide|scsi|floppy|pflash|mtd|sd|virtio|none, media=disk|cdrom, format=, cache=,"),
        ("", "aio=, readonly=on|off, snapshot=on|off, werror=, rerror=, id=, node-name=, ..."),
    ),
    _o("mtdblock", A, ("-mtdblock file", "on-board flash image")),
    _o("sd", A, ("-sd file", "SD card image")),
    _o("pflash", A, ("-pflash file", "parallel flash image")),
    _o("snapshot", N, ("-snapshot", "write to temporary overlays, not to the images")),
    _o("hdachs", A, ("-hdachs c,h,s[,t]", "geometry of hard disk 0 (deprecated)")),
    _o(
        "fsdev",
        A,
        (
            "-fsdev fsdriver,id=id[,path=path,][security_model={mapped-xattr|mapped-file|passthrough|none}]",
            "a file system device for 9p",
        ),
    ),
    _o(
        "virtfs",
        A,
        (
            "-virtfs local,path=path,mount_tag=tag,security_model=[mapped-xattr|mapped-file|passthrough|none]",
            "a 9p export: -fsdev plus a virtio-9p-pci device",
        ),
    ),
    _o("virtfs_synth", N, ("-virtfs_synth", "a synthetic 9p file system")),
    Heading(""),
    Heading("USB options"),
    _o("usb", N, ("-usb", "enable the machine's USB controller")),
    _o("usbdevice", A, ("-usbdevice name", "add a USB device (deprecated, use -device)")),
    Heading(""),
    Heading("Display options"),
    _o(
        "display",
        A,
        (
            "-display sdl[,frame=on|off][,alt_grab=on|off][,ctrl_grab=on|off][,window_close=on|off]"
            "[,gl=on|off]",
            "an SDL window",
        ),
        ("-display gtk[,grab_on_hover=on|off][,gl=on|off]", "a GTK window"),
        ("-display vnc=<display>[,<optargs>]", "a VNC server (see -vnc)"),
        ("-display curses", "the text screen on the terminal"),
        ("-display egl-headless", "render with OpenGL, show nothing"),
        ("-display none", "no display"),
    ),
    _o("nographic", N, ("-nographic", "no graphics; serial port and monitor on stdio")),
    _o("curses", N, ("-curses", "same as -display curses")),
    _o("no-frame", N, ("-no-frame", "SDL window without decorations")),
    _o("alt-grab", N, ("-alt-grab", "grab the mouse with Ctrl-Alt-Shift")),
    _o("ctrl-grab", N, ("-ctrl-grab", "grab the mouse with Right-Ctrl")),
    _o("no-quit", N, ("-no-quit", "the window cannot be closed")),
    _o("sdl", N, ("-sdl", "same as -display sdl")),
    _o(
        "spice",
        A,
        (
            "-spice [port=port][,tls-port=secured-port][,x509-dir=<dir>][,addr=addr][,...]",
            "a SPICE server (see the manual for all properties)",
        ),
    ),
    _o("portrait", N, ("-portrait", "rotate the display 90 degrees (PXA LCD only)")),
    _o("rotate", A, ("-rotate <deg>", "rotate the display (PXA LCD only)")),
    _o("vga", A, ("-vga [std|cirrus|vmware|qxl|xenfb|tcx|cg3|virtio|none]", "graphics card")),
    _o("full-screen", N, ("-full-screen", "start full screen")),
    _o("g", True, ("-g WxH[xDEPTH]", "initial resolution and depth"), target=False),
    _o("vnc", A, ("-vnc <display>", "same as -display vnc=<display>")),
    Heading(""),
    Heading("i386 target only"),
    _o("win2k-hack", N, ("-win2k-hack", "work around a Windows 2000 installer bug")),
    _o("rtc-td-hack", N),
    _o("no-fd-bootchk", N, ("-no-fd-bootchk", "boot floppies without a boot signature")),
    _o("no-acpi", N, ("-no-acpi", "no ACPI")),
    _o("no-hpet", N, ("-no-hpet", "no HPET")),
    _o(
        "acpitable",
        A,
        (
            "-acpitable [sig=str][,rev=n][,oem_id=str][,oem_table_id=str][,oem_rev=n]"
            "[,asl_compiler_id=str][,asl_compiler_rev=n][,{data|file}=file1[:file2]...]",
            "add an ACPI table",
        ),
    ),
    _o(
        "smbios",
        A,
        ("-smbios file=binary", "load SMBIOS entries from a file"),
        ("-smbios type=N[,field=str][,...]", "set SMBIOS fields of table type 0, 1, 2, 3, 4 or 17"),
    ),
    Heading(""),
    Heading("Network options"),
    _o("tftp", A),
    _o("bootp", A),
    _o("redir", A),
    _o("smb", A),
    _o(
        "netdev",
        A,
        (
            "-netdev user,id=str[,ipv4[=on|off]][,net=addr[/mask]][,host=addr][,...]",
            "user-mode network",
        ),
        (
            "-netdev tap,id=str[,fd=h][,fds=x:y:...:z][,ifname=name][,script=file][,...]",
            "tap device",
        ),
        ("-netdev bridge,id=str[,br=bridge][,helper=helper]", "tap on a bridge"),
        ("-netdev l2tpv3|socket|vhost-user|hubport,id=str[,...]", "other backends"),
    ),
    _o(
        "net",
        A,
        (
            "-net nic[,vlan=n][,macaddr=mac][,model=type][,name=str][,addr=str][,vectors=v]",
            "a NIC on a hub",
        ),
        ("-net dump[,vlan=n][,file=f][,len=n]", "dump hub traffic to a pcap file"),
        ("-net none", "no network devices at all"),
        ("-net [user|tap|bridge|socket][,vlan=n][,option][,...]", "a backend on a hub"),
    ),
    Heading(""),
    Heading("Character device options"),
    _o(
        "chardev",
        A,
        ("-chardev help", "list the backends"),
        ("-chardev null,id=id[,mux=on|off][,logfile=PATH][,logappend=on|off]", "discard output"),
        (
            "-chardev socket,id=id[,host=host],port=port[,to=to][,ipv4][,ipv6][,nodelay]"
            "[,reconnect=seconds][,server][,nowait][,telnet][,tn3270][,tls-creds=ID]",
            "TCP socket",
        ),
        (
            "-chardev socket,id=id,path=path[,server][,nowait][,telnet][,reconnect=seconds]",
            "Unix socket",
        ),
        (
            "-chardev udp,id=id[,host=host],port=port[,localaddr=localaddr][,localport=localport]",
            "UDP",
        ),
        (
            "-chardev vc,id=id[[,width=width][,height=height]][[,cols=cols][,rows=rows]]",
            "text console",
        ),
        ("-chardev ringbuf,id=id[,size=size]", "memory ring buffer"),
        ("-chardev file,id=id,path=path[,append=on|off]", "output to a file"),
        ("-chardev pipe,id=id,path=path", "named pipe pair path.in/path.out"),
        ("-chardev pty,id=id", "pseudo terminal"),
        ("-chardev stdio,id=id[,signal=on|off]", "standard input/output"),
        ("-chardev serial|tty,id=id,path=path", "host serial port"),
        ("-chardev parallel|parport,id=id,path=path", "host parallel port"),
        ("-chardev braille|msmouse|wctablet|testdev|spicevmc|spiceport,id=id[,...]", "the others"),
        ("", "every backend also takes [,mux=on|off][,logfile=PATH][,logappend=on|off]"),
    ),
    Heading(""),
    Heading("Device URL Syntax"),
    _o(
        "iscsi",
        A,
        (
            "-iscsi [user=user][,password=password][,header-digest=...][,initiator-name=...]",
            "iSCSI settings",
        ),
    ),
    Heading("Bluetooth(R) options"),
    _o(
        "bt",
        A,
        ("-bt hci,null", "an HCI that answers nothing"),
        ("-bt hci,host[:id]", "the host's HCI"),
        ("-bt hci[,vlan=n]", "an emulated HCI on scatternet n"),
        ("-bt vhci[,vlan=n]", "a host VHCI"),
        ("-bt device:dev[,vlan=n]", "an emulated Bluetooth device"),
    ),
    Heading(""),
    Heading("TPM device options"),
    _o(
        "tpmdev",
        A,
        ("-tpmdev passthrough,id=id[,path=path][,cancel-path=path]", "the host's TPM"),
        ("-tpmdev emulator,id=id,chardev=dev", "an external TPM emulator"),
    ),
    Heading(""),
    Heading("Linux/Multiboot boot specific"),
    _o("kernel", A, ("-kernel bzImage", "boot this kernel image")),
    _o("append", A, ("-append cmdline", "kernel command line")),
    _o("initrd", A, ("-initrd file", "initial RAM disk")),
    _o("dtb", A, ("-dtb file", "device tree image")),
    Heading(""),
    Heading("Debug/Expert options"),
    _o(
        "fw_cfg",
        A,
        ("-fw_cfg [name=]<name>,file=<file>", "add a fw_cfg blob from a file"),
        ("-fw_cfg [name=]<name>,string=<str>", "add a fw_cfg blob from a string"),
    ),
    _o("serial", A, ("-serial dev", "connect the next serial port to character device 'dev'")),
    _o(
        "parallel", A, ("-parallel dev", "connect the next parallel port to character device 'dev'")
    ),
    _o("monitor", A, ("-monitor dev", "human monitor on character device 'dev'")),
    _o("qmp", A, ("-qmp dev", "QMP monitor on character device 'dev'")),
    _o("qmp-pretty", A, ("-qmp-pretty dev", "QMP monitor with pretty-printed JSON")),
    _o(
        "mon",
        A,
        (
            "-mon [chardev=]name[,mode=readline|control][,pretty[=on|off]]",
            "a monitor on chardev 'name'",
        ),
    ),
    _o("debugcon", A, ("-debugcon dev", "debug console on character device 'dev'")),
    _o("pidfile", A, ("-pidfile file", "write the process id to 'file'")),
    _o("singlestep", N, ("-singlestep", "run one guest instruction per translation block")),
    _o("S", N, ("-S", "do not start the CPUs (resume with 'cont')")),
    _o("realtime", A, ("-realtime [mlock=on|off]", "lock guest memory (default on)")),
    _o("gdb", A, ("-gdb dev", "gdb server on 'dev'")),
    _o("s", N, ("-s", "same as -gdb tcp::1234")),
    _o("d", A, ("-d item1,...", "log these items ('-d help' lists them)")),
    _o("D", A, ("-D logfile", "log to 'logfile' instead of stderr")),
    _o("dfilter", A, ("-dfilter range,..", "log only for these guest address ranges")),
    _o("L", A, ("-L path", "directory for BIOS, VGA BIOS and keymaps")),
    _o("bios", A, ("-bios file", "BIOS image")),
    _o("enable-kvm", N, ("-enable-kvm", "use KVM (same as -machine accel=kvm)")),
    _o("enable-hax", N, ("-enable-hax", "use HAX (same as -machine accel=hax)")),
    _o("xen-domid", A, ("-xen-domid id", "Xen guest domain id")),
    _o("xen-create", N, ("-xen-create", "create the domain with Xen hypercalls")),
    _o("xen-attach", N, ("-xen-attach", "attach to an existing Xen domain")),
    _o("xen-domid-restrict", N, ("-xen-domid-restrict", "restrict Xen operations to the domain")),
    _o("no-reboot", N, ("-no-reboot", "exit when the guest reboots")),
    _o("no-shutdown", N, ("-no-shutdown", "stop, rather than exit, when the guest shuts down")),
    _o("loadvm", A, ("-loadvm [tag|id]", "start from a saved snapshot")),
    _o("daemonize", N, ("-daemonize", "detach from the terminal once initialised")),
    _o("option-rom", A, ("-option-rom rom", "load an option ROM")),
    _o("clock", A),
    _o("localtime", N),
    _o("startdate", A),
    _o(
        "rtc",
        A,
        (
            "-rtc [base=utc|localtime|date][,clock=host|rt|vm][,driftfix=none|slew]",
            "RTC start time, clock source and lost tick policy",
        ),
    ),
    _o(
        "icount",
        A,
        (
            "-icount [shift=N|auto][,align=on|off][,sleep=on|off,rr=record|replay,rrfile=<filename>]"
            "[,rrsnapshot=<snapshot>]",
            "count instructions: virtual time advances 2^N ns per instruction; record/replay",
        ),
    ),
    _o("watchdog", A, ("-watchdog model", "add a watchdog ('-watchdog help' lists the models)")),
    _o(
        "watchdog-action",
        A,
        ("-watchdog-action reset|shutdown|poweroff|pause|debug|none", "what the watchdog does"),
    ),
    _o("echr", A, ("-echr chr", "terminal escape character instead of ctrl-a")),
    _o("virtioconsole", A, ("-virtioconsole c", "a virtio console on character device 'c'")),
    _o("show-cursor", N, ("-show-cursor", "show the mouse cursor")),
    _o("tb-size", A, ("-tb-size n", "translation buffer size in MiB")),
    _o(
        "incoming",
        A,
        ("-incoming tcp:[host]:port[,to=maxport][,ipv4][,ipv6]", "wait for a migration over TCP"),
        ("-incoming rdma:host:port[,ipv4][,ipv6]", "... over RDMA"),
        ("-incoming unix:socketpath", "... on a Unix socket"),
        ("-incoming fd:fd", "... on an inherited file descriptor"),
        ("-incoming exec:cmdline", "... from a command's output"),
        ("-incoming defer", "wait for migrate-incoming"),
    ),
    _o("only-migratable", N, ("-only-migratable", "refuse devices that block migration")),
    _o("nodefaults", N, ("-nodefaults", "create no default devices")),
    _o("chroot", A, ("-chroot dir", "chroot to 'dir' before starting the guest")),
    _o("runas", A, ("-runas user", "switch to 'user' before starting the guest")),
    _o("prom-env", A, ("-prom-env variable=value", "OpenBIOS nvram variable"), target=False),
    _o("semihosting", N, ("-semihosting", "semihosting mode"), target=False),
    _o(
        "semihosting-config",
        A,
        (
            "-semihosting-config [enable=on|off][,target=native|gdb|auto][,arg=str[,...]]",
            "semihosting",
        ),
        target=False,
    ),
    _o("old-param", N, ("-old-param", "old param mode"), target=False),
    _o(
        "sandbox",
        A,
        (
            "-sandbox on[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]"
            "[,spawn=allow|deny][,resourcecontrol=allow|deny]",
            "install a seccomp filter",
        ),
    ),
    _o("readconfig", A, ("-readconfig <file>", "read options from a configuration file")),
    _o("writeconfig", A, ("-writeconfig <file>", "write the options to a configuration file")),
    _o("nodefconfig", N),
    _o("no-user-config", N, ("-no-user-config", "do not read the default configuration files")),
    _o("trace", A, ("-trace [[enable=]<pattern>][,events=<file>][,file=<file>]", "trace events")),
    _o("qtest", A),
    _o("qtest-log", A),
    _o("enable-fips", N, ("-enable-fips", "FIPS 140-2 mode")),
    _o("no-kvm", N),
    _o("no-kvm-pit-reinjection", N),
    _o("no-kvm-pit", N),
    _o("no-kvm-irqchip", N),
    _o("tdf", N),
    _o("msg", A, ("-msg timestamp[=on|off]", "prefix messages with a timestamp")),
    _o("dump-vmstate", A, ("-dump-vmstate <file>", "write the migration format as JSON to 'file'")),
    Heading(""),
    Heading("Generic object creation"),
    _o(
        "object",
        A,
        (
            "-object TYPENAME[,PROP1=VALUE1,...]",
            "create an object, e.g. a secret or a memory backend",
        ),
    ),
)

OPTIONS: dict[str, QemuOption] = {
    entry.name: entry for entry in TABLE if isinstance(entry, QemuOption)
}

#: Options 3.1 and later have that management tools pass to 2.11 too.
OVERCOMMIT = QemuOption(
    "overcommit",
    True,
    _line(
        "-overcommit [mem-lock=on|off][cpu-pm=on|off]",
        "lock guest memory; leave idle CPUs to the guest",
    ),
)
