"""HMP's argument parsing: monitor.c monitor_parse_arguments, get_str, get_expr.

Each message is QEMU 2.11's, printed to the monitor followed by handle_hmp_command's
`Try "help CMD" for more information` (cmd->name: the entry's full name).
"""

from __future__ import annotations

import pytest

from tests.test_hmp_help import hmp
from vmm.hmp.args import ArgumentError, ParseContext, get_expr, parse_arguments
from vmm.hmp.state import DumpFormat


def ctx() -> ParseContext:
    return ParseContext(formats=DumpFormat())


def fails(vm, line: str, message: str, name: str) -> None:
    assert hmp(vm, line) == f'{message}Try "help {name}" for more information\r\n'


@pytest.mark.parametrize(("line", "message", "name"), [
    # get_str failing, by type code (monitor_parse_arguments 'F', 'B', 's')
    ("eject", "eject: block device name expected\r\n", "eject"),
    ("screendump", "screendump: filename expected\r\n", "screendump"),
    ("log", "log: string expected\r\n", "log"),
    ('log "unterminated', "log: string expected\r\n", "log"),
    ('log "bad\\qescape"', "log: string expected\r\n", "log"),
    # what is left after the last argument
    ("stop now", "stop: extraneous characters at the end of line\r\n", "stop"),
    ("info status x", "status: extraneous characters at the end of line\r\n", "status"),
    ("c x", "c|cont: extraneous characters at the end of line\r\n", "c|cont"),
    # get_expr (expr_error)
    ("o", "unexpected end of expression\r\n", "o"),
    ("p", "unexpected end of expression\r\n", "p|print"),
    ("p (1", "')' expected\r\n", "p|print"),
    ("p 'a", "missing terminating ' character\r\n", "p|print"),
    ("p '", "character constant expected\r\n", "p|print"),
    ("p 1/0", "division by zero\r\n", "p|print"),
    ("p 5%(2-2)", "division by zero\r\n", "p|print"),
    ("p 99999999999999999999", "number too large\r\n", "p|print"),
    ("p x", "invalid char 'x' in expression\r\n", "p|print"),
    ("p $eax", "unknown register\r\n", "p|print"),  # no CPU on -machine none
    # 'i' is 32 bits, 'M' positive
    ("cpu 0x100000000", "'cpu' has failed: integer is for 32-bit values\r\n", "cpu"),
    ("cpu -1", "'cpu' has failed: integer is for 32-bit values\r\n", "cpu"),
    ("balloon -1", "enter a positive value\r\n", "balloon"),
    # '/' formats
    ("p/z 1", "invalid char in format: 'z'\r\n", "p|print"),
    ("x/3q 0", "invalid char in format: 'q'\r\n", "x"),
    # 'o' sizes (qemu_strtosz_MiB)
    ("block_resize d", "invalid size\r\n", "block_resize"),
    ("block_resize d big", "invalid size\r\n", "block_resize"),
    ("block_resize d -1", "invalid size\r\n", "block_resize"),
    ("block_resize d 1.5B", "invalid size\r\n", "block_resize"),
    ("block_resize d 1x", "block_resize: extraneous characters at the end of line\r\n",
     "block_resize"),
    # 'T' durations (get_double)
    ("migrate_set_downtime", "Number expected\r\n", "migrate_set_downtime"),
    ("migrate_set_downtime inf", "Bad number\r\n", "migrate_set_downtime"),
    ("migrate_set_downtime 1xs", "Unknown unit suffix\r\n", "migrate_set_downtime"),
    # 'b'
    ("trace-event foo maybe", "Expected 'on' or 'off'\r\n", "trace-event"),
    ("trace-event foo onn", "Expected 'on' or 'off'\r\n", "trace-event"),
    # '-' flags
    ("eject -x d", "eject: unsupported option -x\r\n", "eject"),
    # 'O' (qemu_opts_parse_noisily's error and hint)
    ("device_add e1000,id=1x", "Parameter 'id' expects an identifier\r\nIdentifiers "
     "consist of letters, digits, '-', '.', '_', starting with a letter.\r\n", "device_add"),
])
def test_argument_errors(vm_cmdline, line: str, message: str, name: str) -> None:
    """monitor_parse_arguments' messages, then the hint."""
    fails(vm_cmdline("-machine", "none", "-S"), line, message, name)


def test_flag_without_its_letter(vm_factory) -> None:
    """A lone `-`: the `%c` of the string's end stops QEMU's message there, so the hint
    follows on the same line."""
    assert hmp(vm_factory(), "eject -") == (
        'eject: unsupported option -Try "help eject" for more information\r\n')


def test_unknown_commands(vm_factory) -> None:
    """monitor_parse_command: the text up to the end of the unknown name, leading
    spaces and the `info` prefix included."""
    vm = vm_factory()
    assert hmp(vm, "foo") == "unknown command: 'foo'\r\n"
    assert hmp(vm, "info foo") == "unknown command: 'info foo'\r\n"
    assert hmp(vm, "  info   foo bar") == "unknown command: '  info   foo'\r\n"
    assert hmp(vm, "foo/x") == "unknown command: 'foo'\r\n"
    assert hmp(vm, "") == ""
    assert hmp(vm, "   ") == ""


def test_strings_words_and_quotes() -> None:
    """get_str: a word ends at white space; a quoted string takes \\n \\r \\\\ \\' \\"
    escapes; both are cut to 1023 bytes."""
    assert parse_arguments("log", "items:s", "  abc  ", ctx()) == {"items": "abc"}
    assert parse_arguments("log", "items:s", '"a b\\n\\"c\\""', ctx()) == {"items": 'a b\n"c"'}
    assert parse_arguments("log", "items:s", "x" * 2000, ctx()) == {"items": "x" * 1023}
    assert parse_arguments("x", "a:s?,b:s?", "", ctx()) == {}
    assert parse_arguments("x", "rest:S", "  a  b  ", ctx()) == {"rest": "a  b  "}
    with pytest.raises(ArgumentError, match="x: string expected"):
        parse_arguments("x", "rest:S", "   ", ctx())


def test_flags_of_later_arguments_are_skipped() -> None:
    """is_valid_option: a flag that belongs to a later `-` argument leaves this one
    unset (so flags come in the table's order); strstr also finds the letter in a
    later key (snapshot-file's `-f`)."""
    spec = "paging:-p,detach:-d,zlib:-z,lzo:-l,snappy:-s,filename:F,begin:i?,length:i?"
    assert parse_arguments("dump-guest-memory", spec, "-p -z f 1 2", ctx()) == {
        "paging": True, "zlib": True, "filename": "f", "begin": 1, "length": 2}
    with pytest.raises(ArgumentError, match=r"^dump-guest-memory: unsupported option -p\n$"):
        parse_arguments("dump-guest-memory", spec, "-z -p f", ctx())
    spec = "reuse:-n,device:B,snapshot-file:s?,format:s?"
    assert parse_arguments("snapshot_blkdev", spec, "-f dev", ctx()) == {
        "device": "-f", "snapshot-file": "dev"}


def test_formats_and_optional_index() -> None:
    """The `/` argument ({count}{format}{size}) and `i.`: a value only after a dot.
    Without a format the last one given is used (monitor.c default_fmt_*)."""
    formats = DumpFormat()
    c = ParseContext(formats=formats)
    spec = "fmt:/,addr:i,index:i."
    assert parse_arguments("i", spec, "/b 0x70 .0x10", c) == {
        "count": 1, "format": "x", "size": 1, "addr": 0x70, "index": 0x10}
    assert parse_arguments("i", spec, "0x71", c) == {
        "count": 1, "format": "x", "size": 1, "addr": 0x71}
    assert parse_arguments("x", "fmt:/,addr:l", "/10ug 0", c) == {
        "count": 10, "format": "u", "size": 8, "addr": 0}
    assert parse_arguments("x", "fmt:/,addr:l", "/i 0", c) == {
        "count": 1, "format": "i", "size": -1, "addr": 0}
    assert parse_arguments("x", "fmt:/,addr:l", "0", c) == {
        "count": 1, "format": "i", "size": -1, "addr": 0}
    assert parse_arguments("x", "fmt:/,addr:l", "/w 0", c)["size"] == 4


def test_expressions() -> None:
    """expr_sum / expr_logic / expr_prod / expr_unary: C's precedence of this little
    language (| & ^ bind tighter than + -), int64 arithmetic, C's division."""
    assert get_expr("1+2*3", 0)[0] == 7
    assert get_expr("1+2&3", 0)[0] == 3
    assert get_expr("-7/2", 0)[0] == -3
    assert get_expr("-7%2", 0)[0] == -1
    assert get_expr("~0", 0)[0] == -1
    assert get_expr("0xffffffffffffffff", 0)[0] == -1
    assert get_expr("'a'", 0)[0] == 97
    assert get_expr("010", 0)[0] == 8
    assert get_expr("  ( 1 + 2 ) * 3 rest", 0) == (9, 16)
    assert get_expr("0x", 0) == (0, 1)  # strtoull stops at the x


@pytest.mark.parametrize(("line", "out"), [
    ("p 10", "0xa"), ("p/x 0", "0"), ("p/d -1", "-1"), ("p/u -1", "18446744073709551615"),
    ("p/o 8", "010"), ("p/o 0", "0"), ("p/c 65", "'A'"), ("p/c 10", "'\\n'"),
    ("p/c 200", "'\\xc8'"), ("p/c -1", "'\\xffffffff'"), ("p/d 2*3+4", "10"),
])
def test_print(vm_factory, line: str, out: str) -> None:
    """monitor.c do_print and monitor_printc."""
    assert hmp(vm_factory(), line) == out + "\r\n"


def test_print_format_is_shared_by_the_machines_monitors(vm_factory) -> None:
    """default_fmt_format is a static of monitor.c: a format given on one monitor is
    the default of the next command, on any monitor of that QEMU."""
    vm = vm_factory()
    assert hmp(vm, "p/d 16") == "16\r\n"
    assert hmp(vm, "p 16") == "16\r\n"
    other = vm_factory()
    assert hmp(other, "p 16") == "0x10\r\n"
