"""Type checks of API requests with the errors Go's ``encoding/json`` gives nats-server.

nats-server decodes a request into a Go struct; a value of the wrong JSON
type is refused with ``invalid JSON: json: cannot unmarshal <kind> into Go
struct field <Struct>.<path> of type <type>``, and its enums refuse unknown
names with their own texts. :func:`check` walks a request in document order
and raises the first such error, so natsd's answers match byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import api_error

Schema = Mapping[str, Any]
"""field -> a Go type name (``"string"``, ``"int64"``, ``"[]string"`` ...), an enum
(``("enum", names)``, ``("compression", names)``) or a nested :data:`Schema`."""

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
INTS = {"int": (-(1 << 63), (1 << 63) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
        "int32": (-(1 << 31), (1 << 31) - 1), "uint64": (0, (1 << 64) - 1),
        "time.Duration": (-(1 << 63), (1 << 63) - 1)}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def _number_text(value: int | float) -> str:
    return json.dumps(value)


def loads(payload: bytes) -> list[Any]:
    """The JSON values of ``payload``, in order, as nats-server's ``json.Decoder`` reads a request
    (it decodes each into the same struct); a syntax error raises nats-server's ``invalid JSON``
    with Go's text."""
    text = payload.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    values = []
    pos = len(text) - len(text.lstrip())
    while pos < len(text):
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise api_error("JSInvalidJSONErr", err=go_syntax_error(text, exc)) from None
        values.append(value)
        pos += len(text[pos:]) - len(text[pos:].lstrip())
    return values


def go_syntax_error(text: str, exc: json.JSONDecodeError) -> str:
    """Go's ``encoding/json`` message for the syntax error Python found at ``exc.pos``."""
    pos = exc.pos
    if pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    char = text[pos]
    shown = repr(char) if char not in "'\\" else ("'\\''" if char == "'" else "'\\\\'")
    if exc.msg.startswith("Invalid control character"):
        return f"invalid character {shown} in string at offset {pos + 1}"
    context = {
        "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
        "Expecting ':' delimiter": "after object key",
        "Extra data": "after top-level value",
    }.get(exc.msg)
    if context is None and exc.msg.startswith("Expecting ',' delimiter"):
        context = "after object key:value pair" if _innermost(text, pos) == "{" else "after array element"
    if context is None:
        literal = _literal(text, pos)
        if literal is not None:
            return literal
        context = "looking for beginning of value"
    return f"invalid character {shown} {context} at offset {pos + 1}"


def _innermost(text: str, pos: int) -> str:
    """The container (``{`` or ``[``) open at ``pos``, strings skipped."""
    stack: list[str] = []
    in_string = escaped = False
    for c in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            stack.append(c)
        elif c in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _literal(text: str, pos: int) -> str | None:
    """Go's message for a broken ``true``, ``false`` or ``null`` starting at ``pos``."""
    for word in ("true", "false", "null"):
        if text.startswith(word[0], pos):
            for i, expected in enumerate(word[1:], 1):
                if pos + i >= len(text):
                    return "unexpected EOF"
                if text[pos + i] != expected:
                    return (f"invalid character {text[pos + i]!r} in literal {word} "
                            f"(expecting {expected!r}) at offset {pos + i + 1}")
    return None


def check(request: Any, schema: Schema, struct: str) -> None:
    """Raise nats-server's ``invalid JSON`` error for the first value Go would not decode
    (a wrong type, or a field the struct does not have: nats-server disallows unknown fields)."""
    if request is None:
        return
    if not isinstance(request, dict):
        raise api_error("JSInvalidJSONErr",
                        err=f"json: cannot unmarshal {_kind(request)} into Go value of type server.{struct}")
    _fields(request, schema, struct)


def _fail(kind: str, where: str, gotype: str, field: bool = True) -> None:
    target = f"Go struct field {where}" if field else where
    raise api_error("JSInvalidJSONErr", err=f"json: cannot unmarshal {kind} into {target} of type {gotype}")


def _fields(obj: Mapping[str, Any], schema: Schema, path: str) -> None:
    for key, value in obj.items():
        spec = schema.get(key)
        if spec is None:
            raise api_error("JSInvalidJSONErr", err=f"json: unknown field {json.dumps(key)}")
        if value is None or spec == "any":
            continue  # null leaves the zero value
        _value(value, spec, f"{path}.{key}")


def _value(value: Any, spec: Any, where: str, field: bool = True) -> None:
    if isinstance(spec, Mapping):
        if not isinstance(value, dict):
            _fail(_kind(value), where, "server." + where.rsplit(".", 1)[-1], field)
        _fields(value, spec, where)
        return
    if isinstance(spec, tuple):
        kind, names = spec
        if kind == "compression":
            if not isinstance(value, str) or value not in names:
                raise api_error("JSInvalidJSONErr", err="unknown compression algorithm")
        elif not isinstance(value, str) or value not in names:
            raise api_error("JSInvalidJSONErr", err=f"can not unmarshal {json.dumps(json.dumps(value))}")
        return
    if spec == "string":
        if not isinstance(value, str):
            _fail(_kind(value), where, "string", field)
    elif spec == "time.Time":
        if not isinstance(value, str):
            raise api_error("JSInvalidJSONErr", err="Time.UnmarshalJSON: input is not a JSON string")
        if not RFC3339.fullmatch(value):
            raise api_error("JSInvalidJSONErr", err=f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": '
                            f'cannot parse "{value}" as "2006"')
    elif spec == "bool":
        if not isinstance(value, bool):
            _fail(_kind(value), where, "bool", field)
    elif spec in INTS:
        low, high = INTS[spec]
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(_kind(value), where, spec, field)
        if isinstance(value, float) and not value.is_integer() or not low <= value <= high:
            _fail(f"number {_number_text(value)}", where, spec, field)
    elif spec == "[]string":
        if not isinstance(value, list):
            _fail(_kind(value), where, "[]string", field)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                _fail(_kind(item), f"{where}.{i}", "string", field=False)
    elif spec == "map[string]string":
        if not isinstance(value, dict):
            _fail(_kind(value), where, "map[string]string", field)
        for k, item in value.items():
            if not isinstance(item, str):
                _fail(_kind(item), f"{where}.{k}", "string", field)


STREAM_CONFIG: Schema = {
    "name": "string", "description": "string", "subjects": "[]string",
    "retention": ("enum", ("limits", "interest", "workqueue")), "max_consumers": "int", "max_msgs": "int64",
    "max_bytes": "int64", "max_age": "time.Duration", "max_msgs_per_subject": "int64", "max_msg_size": "int32",
    "discard": ("enum", ("old", "new")), "storage": ("enum", ("file", "memory")), "num_replicas": "int",
    "no_ack": "bool", "duplicate_window": "time.Duration", "compression": ("compression", ("none", "s2")),
    "first_seq": "uint64", "subject_transform": {"src": "string", "dest": "string"},
    "republish": {"src": "string", "dest": "string", "headers_only": "bool"},
    "allow_direct": "bool", "mirror_direct": "bool", "discard_new_per_subject": "bool", "sealed": "bool",
    "deny_delete": "bool", "deny_purge": "bool", "allow_rollup_hdrs": "bool",
    "consumer_limits": {"inactive_threshold": "time.Duration", "max_ack_pending": "int"},
    "allow_msg_ttl": "bool", "subject_delete_marker_ttl": "time.Duration", "allow_msg_counter": "bool",
    "allow_atomic": "bool", "allow_msg_schedules": "bool", "allow_batched": "bool",
    "metadata": "map[string]string", "pedantic": "bool", "template_owner": "string", "placement": "any",
    "mirror": "any", "sources": "any", "persist_mode": ("enum", ("default", "async", "")),
}
"""nats-server's ``StreamConfigRequest``: every field it knows (natsd refuses mirrors, sources and
the other features it does not implement yet by name, after decoding)."""
