"""Options of monitoring requests: typed, validated, and refused in nats-server's words.

The same views answer HTTP query strings (every value a string) and system
account requests (a JSON object with typed values), so :class:`Options`
reads a value under any of its names (``subs`` in a query string,
``subscriptions`` in JSON) and accepts both forms. A bad value raises
:class:`BadRequest` with the text nats-server answers (an HTTP 400 body),
for example ``Error decoding int for 'limit': strconv.Atoi: parsing "abc":
invalid syntax``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT = re.compile(r"[+-]?[0-9]+\Z")
_UINT = re.compile(r"[0-9]+\Z")
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

#: Connection states a ``/connz`` request may ask for.
STATES = {"open": "open", "closed": "closed", "all": "all", "any": "all"}
_JSON_STATES = {0: "open", 1: "closed", 2: "all"}  # nats-server's ConnState values


class BadRequest(ValueError):
    """A request option that cannot be used; ``str()`` is the answer's text."""


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # as Go's %q, for the texts that matter


class Options:
    """A request's options: ``params`` from a query string or a JSON request."""

    __slots__ = ("params",)

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: Mapping[str, Any] = params or {}

    def raw(self, *names: str) -> tuple[str, Any]:
        """``(name, value)`` of the first of ``names`` present and not empty (``("", None)``)."""
        for name in names:
            value = self.params.get(name)
            if value is not None and value != "":
                return name, value
        return (names[0] if names else ""), None

    def text(self, *names: str) -> str:
        _, value = self.raw(*names)
        return "" if value is None else str(value)

    def flag(self, *names: str) -> bool:
        name, value = self.raw(*names)
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, str):
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
        raise BadRequest(f"Error decoding boolean for '{name}': strconv.ParseBool: "
                         f"parsing {_quote(str(value))}: invalid syntax")

    def integer(self, *names: str) -> int:
        return self._number(names, _INT, INT64_MAX, "int", "strconv.Atoi")

    def unsigned(self, *names: str) -> int:
        return self._number(names, _UINT, UINT64_MAX, "uint64", "strconv.ParseUint")

    def _number(self, names: tuple[str, ...], pattern: re.Pattern[str], limit: int, kind: str,
                parser: str) -> int:
        name, value = self.raw(*names)
        if value is None:
            return 0
        text = str(value)
        if isinstance(value, (int, str)) and not isinstance(value, bool) and pattern.match(text):
            if abs(int(text)) <= limit:
                return int(text)
            why = "value out of range"
        else:
            why = "invalid syntax"
        raise BadRequest(f"Error decoding {kind} for '{name}': {parser}: parsing {_quote(text)}: {why}")

    def page(self, default: int) -> tuple[int, int]:
        """``(offset, limit)``: a negative offset is 0, a limit of 0 or less ``default``."""
        offset = max(self.integer("offset"), 0)
        limit = self.integer("limit")
        return offset, limit if limit > 0 else default

    def subs(self) -> tuple[bool, bool]:
        """``(subscription subjects, subscription details)``: ``subs=1`` or ``subs=detail``.

        JSON requests say ``subscriptions`` and ``subscriptions_detail``.
        """
        _, value = self.raw("subs")
        if isinstance(value, str) and value.lower() == "detail":
            return False, True
        detail = self.flag("subscriptions_detail")
        return (self.flag("subs", "subscriptions") and not detail), detail

    def state(self) -> str:
        """``open``, ``closed`` or ``all`` (``state`` in a query string or nats-server's 0, 1, 2)."""
        _, value = self.raw("state")
        if value is None:
            return "open"
        if isinstance(value, int) and not isinstance(value, bool) and value in _JSON_STATES:
            return _JSON_STATES[value]
        state = STATES.get(str(value).lower())
        if state is None:
            raise BadRequest(f"Error decoding state for {value}")
        return state

    def names(self, name: str) -> list[str]:
        """A list of names (JSON) or one name (query string); empty when absent."""
        _, value = self.raw(name)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise BadRequest(f"Error decoding list of names for '{name}'")
