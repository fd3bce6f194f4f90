"""Parser for the nats-server configuration file format.

It turns a ``nats-server.conf`` (``key = value`` pairs, ``{}`` maps, ``[]``
arrays, ``#``/``//`` comments, ``include`` files, ``$VAR`` references, size
suffixes such as ``64MB``) into plain Python values: :class:`ConfMap` (a dict
that also records where each key was defined), :class:`ConfList`, ``str``,
``int``, ``float``, ``bool`` and ``datetime``. The accepted syntax and the
values produced follow nats-server's own lexer and parser (checked against
the real binary, 2.9.10 first, 2.15.1 now); option handling, such as unknown-key checks and
durations or sizes given as strings, is left to the caller, helped by
:func:`parse_duration`, :func:`parse_size` and :attr:`ConfMap.variables_used`.
:func:`digest` is nats-server's ``config_digest`` of a parsed file.
"""

# Where nats-server is quirky (as observed with 2.9.10), this parser deliberately differs:
#   * A number directly followed by ']' inside an array ends the number, so
#     `[1, 2]` is [1, 2]; nats-server swallows the ']' into the string "2]".
#   * A key with no value at the end of the input, an unknown size suffix
#     (`1kbi`) and a quote left open at the end of the input are errors;
#     nats-server silently drops them. Size arithmetic that overflows int64 is
#     an error instead of wrapping around.
#   * A stray '}' before a key is skipped, like '{' (nats-server makes it a key).
#   * A block string closed by ')' at the very end of the input does not keep
#     the ')'; an include cycle, an environment variable that refers to itself
#     and nesting deeper than _MAX_DEPTH are errors instead of a crash.
#   * A leading UTF-8 byte order mark is ignored.

from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import decimal
import hashlib
import math
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

__all__ = [
    "ConfError",
    "ConfList",
    "ConfMap",
    "ErrorCollector",
    "Position",
    "SIZE_SUFFIXES",
    "digest",
    "parse",
    "parse_duration",
    "parse_file",
    "parse_size",
]


class Position(NamedTuple):
    """Where something was defined: file name, 1-based line and column."""

    file: str
    line: int
    col: int


class ConfError(Exception):
    """A configuration file could not be parsed, or a value is invalid.

    ``str()`` renders as ``server.conf:12: key 'max_payload': <reason>``;
    the parts that are ``None`` are left out. ``errors`` lists every error
    found in the same pass (this one alone, or those of :meth:`collected`).
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.key = key
        self.errors: list[ConfError] = [self]
        super().__init__(str(self))

    @classmethod
    def collected(cls, errors: list[ConfError]) -> ConfError:
        """One error for several, as nats-server reports them all: the first's file, line,
        key and reason, ``errors`` them all; ``str()`` gives one line each."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        err = cls(first.reason, file=first.file, line=first.line, key=first.key)
        err.errors = list(errors)
        err.args = (str(err),)
        return err

    def __str__(self) -> str:
        if len(self.errors) > 1:
            return "\n".join(e.location() for e in self.errors)
        return self.location()

    def location(self) -> str:
        """This error alone: ``file:line: key 'k': reason``."""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        else:
            where = "" if self.line is None else f"line {self.line}"
        prefix = f"{where}: " if where else ""
        key = f"key '{self.key}': " if self.key is not None else ""
        return f"{prefix}{key}{self.reason}"


class ErrorCollector:
    """Gathers the errors (:class:`ConfError`) of a validation pass to raise them together.

    ``with errors.collect(): ...`` records an error and goes on after the
    block; :meth:`check` raises them as one (:meth:`ConfError.collected`).
    """

    def __init__(self) -> None:
        self.errors: list[ConfError] = []

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        try:
            yield
        except ConfError as exc:
            self.errors.extend(exc.errors)

    def check(self) -> None:
        """Raise what was collected, if anything."""
        if self.errors:
            raise ConfError.collected(self.errors)


class ConfMap(dict):
    """A parsed map: key -> value in definition order, keys spelled as written.

    ``positions`` maps each key to where it was (last) defined, naming the
    included file for keys that came from an ``include``. ``variables_used``
    holds the keys of this map that were referenced as ``$KEY``; nats-server
    does not report those as unknown options.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.positions: dict[str, Position] = {}
        self.variables_used: set[str] = set()

    def where(self, key: str) -> Position:
        """Return where ``key`` was defined (``KeyError`` if it was not)."""
        return self.positions[key]


class ConfList(list):
    """A parsed array; ``positions[i]`` is where element ``i`` starts."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.positions: list[Position] = []


# Multipliers for integer suffixes, as in nats-server's parser: a bare letter
# is a power of 1000, with 'b', 'i' or 'ib' after it a power of 1024.
SIZE_SUFFIXES: dict[str, int] = {"": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    SIZE_SUFFIXES[_letter] = 1000**_power
    for _tail in ("b", "i", "ib"):
        SIZE_SUFFIXES[_letter + _tail] = 1024**_power

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 100  # nested maps, arrays, includes and environment references

# Go's unicode.IsSpace (Python's str.isspace also accepts \x1c-\x1f).
_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_BLANK = frozenset(" \t")
_NL = frozenset("\n\r")
_DIGITS = frozenset("0123456789")
_KEY_SEP = frozenset("=:")
_RAW_END = frozenset("\n\r;,]} \t")  # ends an unquoted string
_NUMBER_END = frozenset("\n\r;,} \t") | _DIGITS  # ends a number (digits: after a suffix)
_NUMBER_END_IN_ARRAY = _NUMBER_END | {"]"}
_MAP_NO_VALUE = frozenset(",}")
_NOT_A_PATH = frozenset("[{(-\\") | _DIGITS
_SUFFIX_START = frozenset("kKmMgGtTpPeE")
_SUFFIX_MORE = frozenset("bBiI")
_INCLUDE_END = frozenset("\n\r;} \t")
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
_HEX = frozenset("0123456789abcdefABCDEF")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_BCRYPT_PREFIX = "2a$"  # `$2a$...` is a bcrypt hash, not a variable
_ENV_KEY = "pk"  # environment values are parsed as the document `pk=<value>`


class _Parser:
    """Recursive-descent parser for one document (a file, string or env value)."""

    def __init__(
        self,
        text: str,
        filename: str,
        base_dir: str,
        env: Mapping[str, str],
        active: tuple[str, ...] = (),
    ) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.file = filename
        self.base_dir = base_dir
        self.env = env
        self.active = active  # include files and env variables being parsed
        self.scopes: list[ConfMap] = []  # maps being built, for $VAR lookup
        self.keys: list[str] = []  # keys whose values are being parsed
        self.depth = len(active)
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # -- helpers -------------------------------------------------------------

    def peek(self, ahead: int = 0) -> str:
        """The character ``ahead`` places on, or "" at the end of the input."""
        j = self.i + ahead
        return self.text[j] if j < self.n else ""

    def position(self, index: int) -> Position:
        line = bisect.bisect_right(self.line_starts, index)
        return Position(self.file, line, index - self.line_starts[line - 1] + 1)

    def error(self, reason: str, index: int | None = None) -> ConfError:
        line = self.position(self.i if index is None else index).line
        key = self.keys[-1] if self.keys else None
        return ConfError(reason, file=self.file, line=line, key=key)

    def describe(self, c: str) -> str:
        return "end of file" if c == "" else repr(c)

    def skip(self, chars: frozenset[str]) -> None:
        while self.i < self.n and self.text[self.i] in chars:
            self.i += 1

    def at_comment(self) -> bool:
        c = self.peek()
        return c == "#" or (c == "/" and self.peek(1) == "/")

    def skip_comment(self) -> None:
        while self.i < self.n and self.text[self.i] not in _NL:
            self.i += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"nesting deeper than {_MAX_DEPTH} levels")

    # -- document structure --------------------------------------------------

    def document(self) -> ConfMap:
        """Parse the whole input as the top-level map."""
        top = ConfMap()
        self.scopes.append(top)
        while True:
            # Before a key: spaces, comments, and the braces of JSON-style files.
            while self.peek() in _SPACE or self.peek() in ("{", "}") or self.at_comment():
                if self.at_comment():
                    self.skip_comment()
                else:
                    self.i += 1
            if self.i >= self.n:
                return top
            if self.peek() == "/":
                raise self.error("unexpected '/' (comments start with '//' or '#')")
            self.statement(top, in_map=False)
            self.top_value_end()

    def top_value_end(self) -> None:
        """After a top-level value: a new line, ';', ',', '}', comment or EOF."""
        while True:
            c = self.peek()
            if self.at_comment():
                self.skip_comment()
                return
            if c in _BLANK or c == "/":  # nats-server ignores a lone '/' here
                self.i += 1
            elif c == "":
                return
            elif c in _NL or c in (";", ",", "}"):
                self.i += 1
                return
            else:
                raise self.error(f"expected a new line or comment after the value, got {c!r}")

    def statement(self, target: ConfMap, *, in_map: bool) -> None:
        """Parse ``key [=|:] value`` or ``include path`` into ``target``."""
        start = self.i
        key, quoted = self.key(in_map)
        if not quoted and key.lower() == "include" and self.peek() in _SPACE:
            self.include(target)
            return
        self.keys.append(key)
        self.skip(_SPACE)
        separated = self.peek() in _KEY_SEP
        if separated:
            self.i += 1
            if in_map:  # inside maps, the value may start on a later line
                self.skip(_SPACE)
        # `key =` at the very end is "" (as in nats-server); a bare `key` there
        # is rejected (nats-server 2.9.10 silently dropped it).
        if (self.peek() == "" and not separated) or (in_map and self.peek() in _MAP_NO_VALUE):
            raise self.error("expected a value")
        value = self.value(in_array=False)
        self.keys.pop()
        target[key] = value
        target.positions[key] = self.position(start)

    def key(self, in_map: bool) -> tuple[str, bool]:
        """Read a key; return it and whether it was quoted."""
        c = self.peek()
        if c in _KEY_SEP:
            raise self.error(f"unexpected key separator {c!r}")
        if c in ("'", '"'):
            end = self.text.find(c, self.i + 1)
            if end < 0:
                raise self.error("unterminated quoted key")
            key = self.text[self.i + 1 : end]
            self.i = end + 1
            return key, True
        start = self.i
        while self.i < self.n and self.text[self.i] not in _SPACE and self.text[self.i] not in _KEY_SEP:
            self.i += 1
        if in_map and self.i >= self.n:
            raise self.error("unexpected end of file in a map key")
        return self.text[start : self.i], False

    def map(self) -> ConfMap:
        """Parse ``{ key value ... }``; ``self.i`` is on the '{'."""
        self.enter()
        self.i += 1
        result = ConfMap()
        self.scopes.append(result)
        while True:
            self.skip(_SPACE)
            c = self.peek()
            if c == "}":
                self.i += 1
                break
            if self.at_comment():
                self.skip_comment()
                continue
            if c == "":
                raise self.error("unexpected end of file in a map (missing '}')")
            if c == "]":
                raise self.error("unexpected ']' in a map")
            self.statement(result, in_map=True)
            if self.map_value_end():
                break
        self.scopes.pop()
        self.depth -= 1
        return result

    def map_value_end(self) -> bool:
        """After a map value; True if the map ended with '}'."""
        while True:
            c = self.peek()
            if self.at_comment():
                self.skip_comment()
            elif c in _BLANK:
                self.i += 1
            elif c in _NL or c in (";", ",", "/"):  # nats-server takes a lone '/' as ','
                self.i += 1
                return False
            elif c == "}":
                self.i += 1
                return True
            elif c == "":
                raise self.error("unexpected end of file in a map (missing '}')")
            else:
                raise self.error(f"expected ',', new line or '}}' after a map value, got {c!r}")

    def array(self) -> ConfList:
        """Parse ``[ value, ... ]``; ``self.i`` is on the '['."""
        self.enter()
        self.i += 1
        result = ConfList()
        while True:
            self.skip(_SPACE)
            c = self.peek()
            if self.at_comment():
                self.skip_comment()
                continue
            if c == "]":
                self.i += 1
                break
            if c in (",", "/"):
                raise self.error(f"unexpected {c!r} in an array")
            if c == "":
                raise self.error("unexpected end of file in an array (missing ']')")
            result.positions.append(self.position(self.i))
            result.append(self.value(in_array=True))
            if self.array_value_end():
                break
        self.depth -= 1
        return result

    def array_value_end(self) -> bool:
        """After an array element; True if the array ended with ']'."""
        while True:
            c = self.peek()
            if self.at_comment():
                self.skip_comment()
            elif c in _BLANK:
                self.i += 1
            elif c in _NL or c in (",", "/"):  # nats-server takes a lone '/' as ','
                self.i += 1
                return False
            elif c == "]":
                self.i += 1
                return True
            elif c == "":
                raise self.error("unexpected end of file in an array (missing ']')")
            else:
                raise self.error(f"expected ',', new line or ']' after an array element, got {c!r}")

    # -- values --------------------------------------------------------------

    def value(self, *, in_array: bool) -> Any:
        """Parse one value of any kind, starting after optional blanks."""
        self.skip(_BLANK)
        c = self.peek()
        if c == "[":
            return self.array()
        if c == "{":
            return self.map()
        if c == "'":
            return self.single_quoted()
        if c == '"':
            return self.double_quoted()
        if c == "(":
            return self.block()
        if c == "-" or c in _DIGITS:
            return self.number(in_array=in_array)
        if c == ".":
            raise self.error("floats must start with a digit")
        if c in _NL:
            raise self.error("expected a value but found a new line")
        return self.unquoted(self.i)

    def single_quoted(self) -> str:
        """A '...' string: taken literally, may span lines."""
        end = self.text.find("'", self.i + 1)
        if end < 0:
            raise self.error("unterminated single-quoted string")
        value = self.text[self.i + 1 : end]
        self.i = end + 1
        return value

    def double_quoted(self) -> str:
        """A "..." string with backslash escapes; may span lines."""
        start = self.i
        self.i += 1
        parts = _StringBuilder()
        while True:
            c = self.peek()
            if c == "":
                raise self.error("unterminated double-quoted string", start)
            self.i += 1
            if c == '"':
                return parts.result()
            if c == "\\":
                self.escape(parts)
            else:
                parts.add(c)

    def escape(self, parts: _StringBuilder) -> None:
        """Decode the escape after a backslash into ``parts``."""
        c = self.peek()
        self.i += 1
        if c in _ESCAPES:
            parts.add(_ESCAPES[c])
        elif c == "x":
            digits = self.text[self.i : self.i + 2]
            if len(digits) != 2 or not all(d in _HEX for d in digits):
                raise self.error(f"expected two hexadecimal digits after '\\x', got {digits!r}")
            parts.add_byte(int(digits, 16))
            self.i += 2
        else:
            escape = repr("\\" + c)
            raise self.error(f"invalid escape {escape}; only \\xXX, \\t, \\n, \\r, \\\" and \\\\ are allowed")

    def unquoted(self, start: int) -> Any:
        """An unquoted string, boolean or ``$VAR`` from ``start`` to ``self.i`` and on.

        The characters already passed over (``text[start:self.i]``) are kept
        as written; scanning goes on until a terminator. A single quote ends
        the string too and is dropped, as in nats-server.
        """
        parts = _StringBuilder()
        parts.add(self.text[start : self.i])
        escaped = False
        while True:
            c = self.peek()
            if c == "" or c in _RAW_END:
                break
            self.i += 1
            if c == "'":
                return parts.result()
            if c == "\\":
                self.escape(parts)
                escaped = True
            else:
                parts.add(c)
        text = parts.result()
        if escaped:
            return text
        if text.lower() in _BOOLS:
            return _BOOLS[text.lower()]
        if text.startswith("$"):
            return self.variable(text[1:], start)
        return text

    def block(self) -> str:
        """A ``( ... )`` block: raw text up to a ')' alone on its line."""
        start = self.i
        j = self.i + 1
        while True:
            j = self.text.find(")", j)
            if j < 0:
                raise self.error("unterminated block string: expected ')' alone on a line", start)
            if self.text[j - 1] == "\n" and (j + 1 == self.n or self.text[j + 1] == "\n"):
                break
            j += 1
        self.i = j + 1
        return self.text[start + 1 : j]

    def number(self, *, in_array: bool) -> Any:
        """An integer (maybe with a size suffix), float, datetime or IP-like string.

        Like nats-server, an unsigned number followed by other characters is an
        unquoted string (``3secret``, ``10s``, ``127.0.0.1:4222``).
        """
        start = self.i
        negative = self.peek() == "-"
        if negative:
            self.i += 1
            if self.peek() == ".":
                raise self.error("floats must start with a digit")
            if self.peek() not in _DIGITS:
                raise self.error("expected a digit after '-'")
        self.skip(_DIGITS)
        c = self.peek()
        ends = _NUMBER_END_IN_ARRAY if in_array else _NUMBER_END
        if c == "-" and not negative:
            return self.datetime(start)
        if c == ".":
            return self.float_or_address(start)
        if c in _SUFFIX_START:
            self.i += 1
            self.skip(_SUFFIX_MORE)
            if self.peek() == "" or self.peek() in ends:
                return self.sized_integer(self.text[start : self.i], start)
            return self.unquoted(start)
        if c == "" or c in ends or negative:
            return self.sized_integer(self.text[start : self.i], start)
        self.i += 1  # nats-server keeps this character even if it is a ']'
        return self.unquoted(start)

    def sized_integer(self, token: str, start: int) -> int:
        try:
            return _sized_integer(token)
        except ValueError as exc:
            raise self.error(str(exc), start) from None

    def float_or_address(self, start: int) -> float | str:
        """Digits '.' digits: a float, or with a second '.' an address string."""
        self.i += 1
        if self.peek() not in _DIGITS:
            raise self.error(f"expected a digit after '.', got {self.describe(self.peek())}")
        self.skip(_DIGITS)
        if self.peek() == ".":
            self.skip(_DIGITS | {".", ":", "-"})
            return self.text[start : self.i]
        value = float(self.text[start : self.i])
        if math.isinf(value):
            raise self.error(f"float {self.text[start:self.i]!r} is out of range", start)
        return value

    def datetime(self, start: int) -> _dt.datetime:
        """A Zulu ISO 8601 datetime such as ``2016-05-04T18:53:41Z``."""
        match = _DATETIME.match(self.text, start)
        if self.i - start != 4 or not match:
            raise self.error("datetimes must be in full ISO 8601 Zulu form (YYYY-MM-DDTHH:MM:SSZ)")
        self.i = match.end()
        try:
            value = _dt.datetime.strptime(match.group(), "%Y-%m-%dT%H:%M:%SZ")
        except ValueError as exc:
            raise self.error(f"invalid datetime {match.group()!r}: {exc}", start) from None
        return value.replace(tzinfo=_dt.UTC)

    # -- variables and includes ----------------------------------------------

    def variable(self, name: str, start: int) -> Any:
        """Resolve ``$name``: enclosing maps inside out, then the environment."""
        if name.startswith(_BCRYPT_PREFIX):
            return "$" + name
        for scope in reversed(self.scopes):
            if name in scope:
                scope.variables_used.add(name)
                return scope[name]
        if name in self.env:
            return self.environment_value(name, start)
        raise self.error(f"variable '${name}' is not defined", start)

    def environment_value(self, name: str, start: int) -> Any:
        """Parse an environment variable's text as a value, as nats-server does."""
        marker = "$" + name
        if marker in self.active:
            raise self.error(f"environment variable '{name}' refers to itself", start)
        sub = _Parser(
            f"{_ENV_KEY}={self.env[name]}",
            f"<environment variable {name}>",
            os.getcwd(),
            self.env,
            self.active + (marker,),
        )
        try:
            return sub.document().get(_ENV_KEY, "")
        except ConfError as exc:
            reason = f"environment variable '{name}' could not be parsed: {exc.reason}"
            raise self.error(reason, start) from None

    def include(self, target: ConfMap) -> None:
        """Parse ``include path`` and merge the file's keys into ``target``."""
        start = self.i
        self.skip(_BLANK)
        path = self.include_path()
        # Like Go's filepath.Join, even an absolute path is taken as relative.
        full = os.path.normpath(self.base_dir + "/" + path)
        included = _parse_path(full, self.env, self.active, (self, start, path))
        for key, value in included.items():
            target[key] = value
            target.positions[key] = included.positions[key]
        target.variables_used |= included.variables_used

    def include_path(self) -> str:
        """The path after ``include``: quoted, or unquoted up to a blank or terminator."""
        c = self.peek()
        if c in ("'", '"'):
            end = self.text.find(c, self.i + 1)
            if end < 0:
                raise self.error("unterminated include path")
            path = self.text[self.i + 1 : end]
            self.i = end + 1
        elif c == "" or c in _NL:
            raise self.error("expected an include path")
        elif c in _NOT_A_PATH:
            raise self.error(f"expected an include path, got {c!r}")
        else:
            start = self.i
            while self.peek() != "" and self.peek() not in _INCLUDE_END and self.peek() != "'":
                self.i += 1
            path = self.text[start : self.i]
            if self.peek() == "'":
                self.i += 1
        if not path:
            raise self.error("empty include path")
        return path


class _StringBuilder:
    """Collects string pieces; runs of ``\\xXX`` bytes are decoded as UTF-8."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = bytearray()

    def add(self, text: str) -> None:
        self.flush()
        self.parts.append(text)

    def add_byte(self, byte: int) -> None:
        self.pending.append(byte)

    def flush(self) -> None:
        if self.pending:
            self.parts.append(self.pending.decode("utf-8", errors="replace"))
            self.pending.clear()

    def result(self) -> str:
        self.flush()
        return "".join(self.parts)


def _sized_integer(token: str) -> int:
    """``"-12"``, ``"64KB"``, ``"2g"`` -> int, with nats-server's suffixes."""
    digits = token.rstrip("".join(_SUFFIX_START | _SUFFIX_MORE))
    suffix = token[len(digits) :].lower()
    if suffix not in SIZE_SUFFIXES:
        raise ValueError(f"unknown size suffix {token[len(digits):]!r} in {token!r}")
    if len(digits.lstrip("-")) > 19 or not _INT64_MIN <= int(digits) <= _INT64_MAX:
        raise ValueError(f"integer {token!r} is out of range")
    value = int(digits) * SIZE_SUFFIXES[suffix]
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"integer {token!r} is out of range")
    return value


def _parse_path(
    path: str,
    env: Mapping[str, str],
    active: tuple[str, ...],
    includer: tuple[_Parser, int, str] | None = None,
) -> ConfMap:
    """Read and parse a file.

    ``includer`` is (parser, index, path as written) for an ``include``;
    errors about reading the file then point at the include line.
    """

    def fail(reason: str) -> ConfError:
        if includer is None:
            return ConfError(reason, file=path)
        parser, index, _ = includer
        return parser.error(reason, index)

    if len(active) >= _MAX_DEPTH:
        raise fail(f"includes nested deeper than {_MAX_DEPTH} levels")
    try:
        real = os.path.realpath(path)
        if real in active:
            raise fail(f"include cycle: {path!r} includes itself")
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        why = getattr(exc, "strerror", None) or exc
        if includer is None:
            raise fail(f"cannot read config file: {why}") from None
        raise fail(f"cannot read include file {includer[2]!r} ({path}): {why}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfError("file is not valid UTF-8", file=path, line=line) from None
    base_dir = os.path.dirname(path) or "."
    return _Parser(text, path, base_dir, env, active + (real,)).document()


def parse(text: str, filename: str = "<string>", env: Mapping[str, str] | None = None) -> ConfMap:
    """Parse configuration ``text``; ``filename`` names it in errors and positions.

    Includes are resolved relative to the directory of ``filename`` (the
    current directory for ``"<string>"``); ``$VAR`` falls back to ``env``,
    which defaults to ``os.environ``.
    """
    active: tuple[str, ...]
    if filename == "<string>":
        base_dir, active = os.getcwd(), ()
    else:  # `active` lets an include of the file itself be caught as a cycle
        base_dir, active = os.path.dirname(filename) or ".", (os.path.realpath(filename),)
    if text.startswith("\ufeff"):
        text = text[1:]
    return _Parser(text, filename, base_dir, os.environ if env is None else env, active).document()


def parse_file(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ConfMap:
    """Read and parse the configuration file at ``path``."""
    return _parse_path(os.fspath(path), os.environ if env is None else env, ())


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek small letter mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def _go_duration(text: str) -> float | None:
    """Seconds for a Go duration string (``"1h30m"``, ``"-1.5s"``), else None."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return 0.0
    if not body:
        return None
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def parse_duration(
    value: Any, *, file: str | None = None, line: int | None = None, key: str | None = None
) -> float:
    """Seconds for a duration option.

    Numbers are seconds (as nats-server reads a bare ``ping_interval: 30``);
    strings use Go's duration syntax: ``"2m"``, ``"500ms"``, ``"1h30m"``.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if math.isfinite(seconds):
            return seconds
    elif isinstance(value, str):
        parsed = _go_duration(value)
        if parsed is not None:
            return parsed
    raise ConfError(f"invalid duration {value!r}", file=file, line=line, key=key)


def parse_size(
    value: Any, *, file: str | None = None, line: int | None = None, key: str | None = None
) -> int:
    """Bytes for a size option: ints as they are, strings like ``"64MB"``.

    String suffixes follow the parser: ``k``/``m``/``g``/... are powers of
    1000, ``kb``/``ki``/``kib`` and the like powers of 1024, case-insensitive.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        token = value.strip()
        number = token.rstrip("".join(_SUFFIX_START | _SUFFIX_MORE))
        if re.fullmatch(r"-?[0-9]+", number):
            try:
                return _sized_integer(token)
            except ValueError as exc:
                raise ConfError(str(exc), file=file, line=line, key=key) from None
    raise ConfError(f"invalid size {value!r}", file=file, line=line, key=key)


def digest(tree: Mapping[str, Any]) -> str:
    """nats-server's config digest of a parsed file: ``sha256:<hex>`` of its JSON.

    The JSON is what Go's ``json.Encoder`` writes for the parsed tree: keys
    sorted, compact, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, and a
    final newline. ``/varz`` shows it as ``config_digest``.
    """
    return "sha256:" + hashlib.sha256((_go_json(tree) + "\n").encode("utf-8", "replace")).hexdigest()


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPED = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029]')


def _go_string(text: str) -> str:
    return '"' + _GO_ESCAPED.sub(lambda m: _GO_ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text) + '"'


def _go_float(f: float) -> str:
    """A float64 as Go's encoding/json writes it (shortest digits; exponent only when far out)."""
    if not math.isfinite(f):
        return "null"  # Go refuses them; a config cannot hold them anyway
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        mantissa, exp = repr(f).split("e")
        sign, digits = exp[0], exp[1:].lstrip("0").rjust(2, "0")
        if sign == "-" and digits[0] == "0":
            digits = digits[1:]  # Go's json cleans e-07 up to e-7
        return f"{mantissa}e{sign}{digits}"
    text = format(decimal.Decimal(repr(f)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _go_json(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, _dt.datetime):
        text = value.isoformat()
        return _go_string(text[:-6] + "Z" if text.endswith("+00:00") else text)
    if isinstance(value, Mapping):
        return "{" + ",".join(_go_string(str(k)) + ":" + _go_json(v) for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    return _go_string(str(value))
