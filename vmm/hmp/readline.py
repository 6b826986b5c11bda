"""The human monitor's line editor, as QEMU 2.11's util/readline.c behaves on the wire.

Pure model of the `vmm` layer. QEMU reads a readline monitor's input one byte at a
time and, after every byte, redraws the edited line with terminal escapes (move left
over what it drew before, draw the buffer, erase to end of line, move the cursor), so
a client sees its typing echoed that way. Enter (CR or LF, each on its own) submits
the line. Supported as in QEMU: printable insertion at the cursor, backspace and
delete, ^A/^E and Home/End, ^W, left/right arrows, history up/down. Tab completion
and ^L are accepted and do nothing visible here. `start` gives the next line to
another reader with its own prompt, as readline_start does; a password reader's line
is echoed as stars and stays out of the history (monitor_read_password).
"""

from __future__ import annotations

from collections.abc import Callable

CMD_BUF_SIZE = 4095
HISTORY_SIZE = 64

_NORM, _ESC, _CSI, _SS3 = range(4)


class Readline:
    def __init__(self, write: Callable[[str], None], submit: Callable[[str], None]) -> None:
        self.write = write
        self.submit = submit
        self.buf: list[int] = []  # the line's bytes, as QEMU keeps them
        self.index = 0
        self.last: list[int] = []
        self.last_index = 0
        self.state = _NORM
        self.param = 0
        self.history: list[str] = []
        self.hist_pos = -1
        self.prompt = ""
        self.read_password = False

    def start(self, prompt: str, read_password: bool, submit: Callable[[str], None]) -> None:
        """readline_start: the next line goes to `submit`, after `prompt`."""
        self.prompt = prompt
        self.read_password = read_password
        self.submit = submit
        self.buf, self.index, self.last, self.last_index = [], 0, [], 0

    def show_prompt(self, prompt: str | None = None) -> None:
        """readline_show_prompt (of the current reader, unless `prompt` replaces it)."""
        if prompt is not None:
            self.prompt = prompt
        self.write(self.prompt)
        self.last = []
        self.last_index = 0
        self.state = _NORM

    def handle_byte(self, ch: int) -> None:
        """readline_handle_byte, then readline_update."""
        if self.state == _NORM:
            if ch == 1:
                self.index = 0
            elif ch == 4:
                self._delete()
            elif ch == 5:
                self.index = len(self.buf)
            elif ch in (10, 13):
                line = _text(self.buf)
                if not self.read_password:
                    self._hist_add(line)
                self.write("\n")
                self.buf, self.index, self.last, self.last_index = [], 0, [], 0
                self.submit(line)
            elif ch == 23:
                self._backword()
            elif ch == 27:
                self.state = _ESC
            elif ch in (127, 8):
                if self.index > 0:
                    self.index -= 1
                    self._delete()
            elif ch == 155:
                self.state = _CSI
            elif ch >= 32 and ch not in (9, 12):
                if self.index < CMD_BUF_SIZE:
                    self.buf.insert(self.index, ch)
                    self.index += 1
        elif self.state == _ESC:
            if ch == ord("["):
                self.state, self.param = _CSI, 0
            elif ch == ord("O"):
                self.state, self.param = _SS3, 0
            else:
                self.state = _NORM
        elif self.state == _CSI:
            c = chr(ch)
            if c.isdigit():
                self.param = self.param * 10 + int(c)
                self._update()
                return
            if c in "AF":
                self._history(-1)
            elif c in "BE":
                self._history(1)
            elif c == "D" and self.index > 0:
                self.index -= 1
            elif c == "C" and self.index < len(self.buf):
                self.index += 1
            elif c == "~":
                if self.param == 1:
                    self.index = 0
                elif self.param == 3:
                    self._delete()
                elif self.param == 4:
                    self.index = len(self.buf)
            self.state = _NORM
        else:  # SS3
            if ch == ord("F"):
                self.index = len(self.buf)
            elif ch == ord("H"):
                self.index = 0
            self.state = _NORM
        self._update()

    def _delete(self) -> None:
        if self.index < len(self.buf):
            del self.buf[self.index]

    def _backword(self) -> None:
        if self.index == 0 or self.index > len(self.buf):
            return
        start = self.index - 1
        while start > 0 and self.buf[start] == 32:
            start -= 1
        while start > 0 and self.buf[start - 1] != 32:
            start -= 1
        del self.buf[start:self.index]
        self.index = start

    def _hist_add(self, line: str) -> None:
        if not line:
            return
        if line in self.history:
            self.history.remove(line)
        self.history.append(line)
        del self.history[:-HISTORY_SIZE]
        self.hist_pos = -1

    def _history(self, step: int) -> None:
        if not self.history:
            return
        if self.hist_pos == -1:
            if step > 0:
                return
            self.hist_pos = len(self.history) - 1
        else:
            self.hist_pos += step
            if self.hist_pos < 0:
                self.hist_pos = 0
            elif self.hist_pos >= len(self.history):
                self.hist_pos = -1
                self.buf, self.index = [], 0
                return
        self.buf = list(self.history[self.hist_pos].encode("utf-8", "surrogateescape"))
        self.index = len(self.buf)

    def _update(self) -> None:
        """readline_update: redraw what changed, then place the cursor."""
        if self.buf != self.last:
            self.write("\x1b[D" * self.last_index)
            shown = "*" * len(self.buf) if self.read_password else _text(self.buf)
            self.write(shown + "\x1b[K")
            self.last = list(self.buf)
            self.last_index = len(self.buf)
        if self.index != self.last_index:
            delta = self.index - self.last_index
            self.write(("\x1b[C" * delta) if delta > 0 else ("\x1b[D" * -delta))
            self.last_index = self.index


def _text(buf: list[int]) -> str:
    return bytes(buf).decode("utf-8", "surrogateescape")
