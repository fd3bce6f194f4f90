"""Leaf nodes of one server: the listener for leaves, the links to hubs, and what they announce.

:class:`LeafNodes` listens on ``leafnodes { listen }`` for leaf servers (this
server is their hub), dials every ``remotes`` entry (this server is a leaf
there) and keeps each link's view of the bound account's interest.

**Interest.** Each link announces (``LS+``) the subjects and queue groups
the other side could reach through this server, as nats-server's
``updateSmap`` does: toward a leaf of ours, everything in the account
(clients and in-process clients, routes and gateways, and the other leaf
links, except those of the leaf's own cluster); toward a hub, only what is
served here (clients and in-process clients, and the leaves of this server).
Plain subjects are announced on the first reason and withdrawn with the
last; a queue group's weight is the number of members behind this side.
Two interest listeners keep the counts of local and route interest; the
leaf links' own interest is counted here, so that a link never hears its
own subscriptions back.

**Loops.** Every account has a ``$LDS.<random>`` subject that each link
announces; a link that hears this server's own one back is in a loop and is
closed with nats-server's error, and a hub whose cluster is already a leaf
of the same account is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import secrets
import ssl
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from natsd import NATS_SERVER_VERSION
from natsd.config.tls import dialing_context
from natsd.conn.link import LINK_PROTO, SERVER_SHUTDOWN
from natsd.plugin.contracts import AuthRequest, AuthResult, ServerAPI
from natsd.routing.account import Account
from natsd.routing.connection import LOCAL_KINDS, Kind, notify
from natsd.routing.stats import rfc3339
from natsd.routing.subjects import has_wildcard
from natsd.routing.sublist import Sublist, Subscription
from natsd.wire.errors import go_quote

from .link import Key, LeafLink
from .protocol import encode_sub, encode_unsub
from .settings import DEFAULT_PORT, LeafSettings, Remote

log = logging.getLogger("natsd.leafnode")

JS_DENIED = ("$JS.API.>", "$KV.>", "$OBJ.>")
"""What nats-server denies both ways on a leaf link whose sides do not share one JetStream
(always so with natsd, which never extends a JetStream domain across a leaf link): each side's
JetStream answers only its own clients, and other domains are reached as ``$JS.<domain>.API``."""
SYSTEM_JS_DENIED = ("$JSC.>", "$NRG.>", *JS_DENIED)
"""The same for a link in the system account: JetStream's cluster traffic stays home too."""
REMOTE_KINDS = frozenset({Kind.ROUTER, Kind.GATEWAY})


def _nuid(n: int = 22) -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=n))


class _Tap:
    """An interest listener for a set of kinds; hands changes to :class:`LeafNodes`."""

    def __init__(self, leafnodes: LeafNodes, kinds: frozenset[int], weights: dict[str, dict[Key, int]]):
        self.leafnodes = leafnodes
        self.kinds = kinds
        self.weights = weights

    def interest_changed(self, account: Account, subject: bytes, queue: bytes | None,
                         weight: int) -> None:
        table = self.weights.setdefault(account.name, {})
        key = (subject, queue)
        if weight:
            table[key] = weight
        else:
            table.pop(key, None)
        self.leafnodes.changed(account.name, key)


class LeafNodes:
    """The leaf-node links of one server (see the module docstring)."""

    def __init__(self, server: ServerAPI, settings: LeafSettings) -> None:
        self.server = server
        self.settings = settings
        self.connections: set[LeafLink] = set()  # every open leaf-node connection
        self.links: dict[str, set[LeafLink]] = {}  # registered links by bound account
        self.local_weights: dict[str, dict[Key, int]] = {}
        self.remote_weights: dict[str, dict[Key, int]] = {}
        self.taps = [_Tap(self, LOCAL_KINDS, self.local_weights),
                     _Tap(self, REMOTE_KINDS, self.remote_weights)]
        self.counts = {"slow": 0, "stale": 0}
        self.closed_traffic = [0, 0, 0, 0]
        self.host = settings.host
        self.port = settings.port
        self._lds: dict[str, bytes] = {}
        self._leaf_clusters: dict[str, Counter[str]] = {}
        self._listener: asyncio.AbstractServer | None = None
        self._dialers: list[asyncio.Task[None]] = []
        self._discovered: dict[int, list[str]] = {}
        self._contexts: dict[int, ssl.SSLContext] = {}
        self._deny_cache: dict[tuple[int, str], Sublist] = {}
        self._stopping = False
        self._js_deny = self.subject_set(JS_DENIED)
        self._js_deny_system = self.subject_set(SYSTEM_JS_DENIED)
        self._js_deny_out: tuple[str, Sublist] | None = None

    # -- lifecycle (a Listener) ------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        self.seed()
        if settings.listening:
            port = settings.port if settings.port > 0 else 0
            loop = self.server.loop
            try:
                self._listener = await loop.create_server(
                    lambda: LeafLink(self, solicited=False), host=settings.host or None, port=port,
                    reuse_address=True, backlog=1024)  # as the client port: many edge servers at once
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen for leafnode connections on "
                              f"{settings.host}:{port}: {exc.strerror}") from exc
            self.host, self.port = self._listener.sockets[0].getsockname()[:2]
            self.server.ports["leafnode"] = [f"nats-leaf://{self._url_host(self.host)}:{self.port}"]
            log.info("Listening for leafnode connections on %s:%d", self.host, self.port)
            # leaf nodes that reach us through another listener (the WebSocket port's /leafnode)
            self.server.acceptors["leafnode"] = lambda carrier: LeafLink(self, solicited=False, carrier=carrier)
        if settings.remotes and "cluster" not in self.server.config.blocks and not self.cluster_name():
            # nats-server names the cluster of a leaf without one after the server: its events
            # (and INFO) carry it, and a hub tells its leaf nodes apart by it
            self.server.update_info(cluster=self.server.name)
        for index, remote in enumerate(settings.remotes):
            if remote.disabled:
                continue
            task = self.server.loop.create_task(self._dialer(index, remote))
            self._dialers.append(task)

    async def stop(self) -> None:
        self._stopping = True
        self.server.acceptors.pop("leafnode", None)
        for task in self._dialers:
            task.cancel()
        if self._listener is not None:
            self._listener.close()
        for link in list(self.connections):
            link.close(SERVER_SHUTDOWN)
        if self._listener is not None:
            await self._listener.wait_closed()

    # -- helpers for links ------------------------------------------------------------------

    @staticmethod
    def subject_set(subjects: Iterable[str]) -> Sublist:
        """A sublist of ``subjects`` whose ``match`` says whether a subject is among them."""
        sl = Sublist()
        for subject in subjects:
            sl.insert(Subscription(None, subject.encode(), None, b"deny", 1))
        return sl

    def js_denied(self, link: LeafLink, subject: bytes) -> bool:
        """Whether ``subject`` may not cross ``link`` either way (interest or messages)."""
        system = self.server.system_account
        deny = self._js_deny_system if system is not None and link.account is system else self._js_deny
        return bool(deny.match(subject).psubs)

    def js_denied_out(self, link: LeafLink, subject: bytes) -> bool:
        """Whether a message on ``subject`` may not leave over ``link``: what :meth:`js_denied`
        says, and requests for this server's own domain (``$JS.<domain>.API.>``), which nats-server
        keeps home so that a hub and a leaf misconfigured with one domain do not answer each other."""
        if self.js_denied(link, subject):
            return True
        domain = self.domain()
        if not domain:
            return False
        cached = self._js_deny_out
        if cached is None or cached[0] != domain:
            cached = self._js_deny_out = (domain, self.subject_set([f"$JS.{domain}.API.>"]))
        return bool(cached[1].match(subject).psubs)

    def domain(self) -> str:
        """This server's JetStream domain (the jetstream plugin's INFO field), or ``""``."""
        return str(self.server.info_field("domain") or "")

    def lds(self, account: Account) -> bytes:
        """This server's loop-detection subject for ``account``."""
        subject = self._lds.get(account.name)
        if subject is None:
            subject = self._lds[account.name] = b"$LDS." + _nuid().encode()
        return subject

    def new_nonce(self) -> str:
        return secrets.token_urlsafe(11)[:15]

    def cluster_name(self) -> str:
        """The cluster this server is in (the clustering plugin's INFO field), or ``""``."""
        return str(self.server.info_field("cluster") or "")

    @staticmethod
    def _url_host(host: str) -> str:
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    @staticmethod
    def url_host(url: str | None) -> str | None:
        return urlsplit(url).hostname if url else None

    def dialing_context(self, remote: Remote) -> ssl.SSLContext:
        """The client TLS context for a remote (its ``tls {}``, else the system's CAs)."""
        key = id(remote)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = dialing_context(remote.tls) if remote.tls is not None else ssl.create_default_context()
            self._contexts[key] = ctx
        return ctx

    def advertised(self) -> str:
        if self.settings.advertise:
            return self.settings.advertise
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"{self._url_host(host)}:{self.port}"

    def hub_info(self, link: LeafLink, *, first: bool) -> dict[str, Any]:
        """The INFO this server sends a leaf: at once (``first``) and after its CONNECT."""
        server, settings = self.server, self.settings
        host, _, port = self.advertised().rpartition(":")
        info: dict[str, Any] = {
            "server_id": server.server_id, "server_name": server.name,
            "version": NATS_SERVER_VERSION, "proto": LINK_PROTO, "go": "python", "host": host.strip("[]"),
            "port": int(port), "headers": True, "auth_required": True,
        }
        if settings.tls is not None:
            info["tls_required"] = True
            if settings.tls.verify:
                info["tls_verify"] = True
        info["max_payload"] = server.config.max_payload
        if server.info_field("jetstream"):
            info["jetstream"] = True
        domain = self.domain()
        if domain:
            info["domain"] = domain
        info["client_id"] = link.cid
        if first:
            info["nonce"] = link.nonce
        cluster = self.cluster_name()
        if cluster:
            info["cluster"] = cluster
        if not first:
            info["connect_info"] = True
            info["remote_account"] = link.account.name
            if server.system_account is not None and link.account is server.system_account:
                info["acc_is_sys"] = True
            perms = link.checker.permissions if link.checker is not None else None
            if perms is not None:  # the leaf applies them on its side, as nats-server's leaf does
                info["import"] = _subject_permission(perms.subscribe_allow, perms.subscribe_deny)
                info["export"] = _subject_permission(perms.publish_allow, perms.publish_deny)
        info["info_on_connect"] = True
        info["leafnode_urls"] = [] if settings.no_advertise else [self.advertised()]
        return info

    def connect_options(self, link: LeafLink) -> dict[str, Any]:
        """The CONNECT this server sends its hub on ``link``."""
        remote = link.remote_cfg
        assert remote is not None
        server = self.server
        options: dict[str, Any] = {"version": NATS_SERVER_VERSION}
        if remote.credentials is not None:
            from natsd.security.nkeys import KeyPair, sign_nonce
            from natsd_jwt.claims import parse_creds

            with open(remote.credentials) as fh:
                token, seed = parse_creds(fh.read())
            options["jwt"] = token
            options["sig"] = sign_nonce(KeyPair.from_seed(seed), link.nonce)
        elif remote.nkey_seed is not None:
            from natsd.security.nkeys import KeyPair, sign_nonce

            key = KeyPair.from_seed(remote.nkey_seed)
            options["nkey"] = key.public_key
            options["sig"] = sign_nonce(key, link.nonce)
        parts = urlsplit(link.url or "")
        if parts.username:
            if parts.password is not None:
                options["user"], options["pass"] = parts.username, parts.password
            else:
                options["auth_token"] = parts.username
        options["server_id"] = server.server_id
        domain = self.domain()
        if domain:
            options["domain"] = domain
        options["name"] = server.name
        if remote.hub:
            options["is_hub"] = True
        options["cluster"] = self.cluster_name() or server.name
        options["headers"] = link.headers
        if server.info_field("jetstream"):
            options["jetstream"] = True
        if remote.deny_imports:
            options["deny_pub"] = list(remote.deny_imports)
        options["compress_mode"] = "off"
        options["remote_account"] = link.account.name
        options["protocol"] = LINK_PROTO  # the accepting side learns our level from CONNECT only
        return options

    # -- authentication (hub side) -------------------------------------------------------------

    async def authenticate(self, link: LeafLink, options: Mapping[str, Any]) -> AuthResult:
        """nats-server's ``isLeafNodeAuthorized``: the block's users, else the server's own."""
        s = self.settings
        user, given = options.get("user"), options.get("pass")
        if s.users:
            for entry in s.users:
                if entry.user == user:
                    ok = await _password_ok(entry.password, given)
                    return AuthResult(ok=ok, account=entry.account or "$G", user=entry.user)
            return AuthResult(ok=False, reason="unknown leafnode user")
        if s.user is not None:
            ok = user == s.user and await _password_ok(s.password or "", given)
            return AuthResult(ok=ok, account=s.account or "$G", user=s.user)
        if s.nkey is not None:
            from natsd.security.nkeys import verify_nonce_signature

            sig = options.get("sig")
            ok = (options.get("nkey") == s.nkey and isinstance(sig, str)
                  and verify_nonce_signature(s.nkey, link.nonce, sig))
            return AuthResult(ok=ok, account=s.account or "$G", user=s.nkey)
        if self.server.auth_required:
            request = AuthRequest(options=options, client_id=link.cid, remote=link.remote,
                                  transport="leafnode", nonce=link.nonce or None)
            return await self.server.authenticate(request)
        return AuthResult(ok=True, account=s.account or "$G")

    # -- registration ------------------------------------------------------------------------------

    def register(self, link: LeafLink) -> None:
        """A link finished its handshake: count it in its account (duplicates replace the old)."""
        name = link.account.name
        links = self.links.setdefault(name, set())
        if link.is_hub_side and link.remote_account:
            for other in list(links):
                if (other.is_hub_side and other.remote_name == link.remote_name
                        and other.remote_cluster == link.remote_cluster
                        and other.remote_account == link.remote_account):
                    log.warning("%s - Replacing connection from same server", link.describe())
                    other.close("Duplicate Remote LeafNode Connection",
                                "Duplicate Remote LeafNode Connection")
        links.add(link)
        if link.is_hub_side and link.remote_cluster:
            self._leaf_clusters.setdefault(name, Counter())[link.remote_cluster] += 1
        log.info("%s - Leafnode connection registered: account %s, remote %s", link.describe(),
                 name, link.remote_name or link.remote_id)
        if self.domain() or link.remote_domain:
            log.info("%s - JetStream using domains: local %s, remote %s", link.describe(),
                     go_quote(self.domain()), go_quote(link.remote_domain))
        # nats-server announces a leaf as a connection of its account on the leaf's side, and
        # on the hub's when the leaf logged in as one of the server's users
        if link.solicited or not self.settings.auth_required:
            notify(self.server.observers.link_connected, link)

    def is_loop(self, link: LeafLink) -> bool:
        """Our hub's cluster is already one of our leaves in this account (nats-server's check)."""
        clusters = self._leaf_clusters.get(link.account.name)
        return bool(link.remote_cluster and clusters and clusters.get(link.remote_cluster))

    def link_closed(self, link: LeafLink, keys: list[Key]) -> None:
        self.connections.discard(link)
        totals = self.closed_traffic
        totals[0] += link.in_msgs
        totals[1] += link.in_bytes
        totals[2] += link.out_msgs
        totals[3] += link.out_bytes_total
        name = link.account.name
        links = self.links.get(name)
        if links is None or link not in links:
            return
        links.discard(link)
        notify(self.server.observers.link_closed, link, link.close_reason or "Client Closed")
        if link.is_hub_side and link.remote_cluster:
            clusters = self._leaf_clusters.get(name)
            if clusters is not None:
                clusters[link.remote_cluster] -= 1
                if clusters[link.remote_cluster] <= 0:
                    del clusters[link.remote_cluster]
        for key in keys:
            for other in links:
                self.sync(other, key)
        self.server.flush()

    # -- interest ---------------------------------------------------------------------------------

    def weight(self, link: LeafLink, key: Key) -> int:
        """How many receivers of ``key`` the other side of ``link`` reaches through this server."""
        name = link.account.name
        queue = key[1]
        total = self.local_weights.get(name, {}).get(key, 0)
        if link.is_hub_side:
            total += self.remote_weights.get(name, {}).get(key, 0)
        for other in self.links.get(name, ()):
            if other is link or (not link.is_hub_side and not other.is_hub_side):
                continue  # its own interest; toward a hub, only our own leaves count
            if link.remote_cluster and other.remote_cluster == link.remote_cluster:
                continue  # never back into the cluster the interest came from
            sub = other.interest.get(key)
            if sub is not None:
                total += sub.weight if queue is not None else 1
        return total

    def sync(self, link: LeafLink, key: Key) -> None:
        """Bring what ``link`` announced for ``key`` in line with what it should announce."""
        if not link.registered or link.closed:
            return
        subject, queue = key
        if self.js_denied(link, subject) or not self._may_offer(link, subject):
            return
        weight = self.weight(link, key)
        if queue is None and weight:
            weight = 1
        sent = link.sent.get(key, 0)
        if weight == sent:
            return
        if weight:
            link.sent[key] = weight
            link.send(encode_sub(subject, queue, weight))
        else:
            del link.sent[key]
            link.send(encode_unsub(subject, queue))

    def _may_offer(self, link: LeafLink, subject: bytes) -> bool:
        """A leaf's ``deny_imports`` (the remote's) keeps its own interest for them home; a
        hub offers its leaf only literal subjects the leaf user may publish to."""
        if link.solicited:  # toward our hub: not what we may not import
            if self.denied(link, "imports", subject):
                return False
            if link.checker is not None and not has_wildcard(subject) and not subject.startswith(b"$LDS."):
                return bool(link.checker.can_subscribe(subject))
            return True
        if link.checker is not None and not has_wildcard(subject) and not subject.startswith(b"$LDS."):
            return bool(link.checker.can_publish(subject))  # toward a leaf: what its user may publish
        return True

    def denied(self, link: LeafLink, which: str, subject: bytes) -> bool:
        """Whether ``subject`` is in the remote's ``deny_imports`` or ``deny_exports`` (``which``)."""
        remote = link.remote_cfg
        if remote is None or not (remote.deny_imports if which == "imports" else remote.deny_exports):
            return False
        return bool(self._deny(remote, which).match(subject).psubs)

    def _deny(self, remote: Remote, which: str) -> Sublist:
        key = (id(remote), which)
        sl = self._deny_cache.get(key)
        if sl is None:
            sl = self._deny_cache[key] = self.subject_set(
                remote.deny_imports if which == "imports" else remote.deny_exports)
        return sl

    def changed(self, account: str, key: Key) -> None:
        """Local or route interest in ``key`` changed (an interest listener's event)."""
        for link in self.links.get(account, ()):
            self.sync(link, key)

    def leaf_changed(self, source: LeafLink, key: Key) -> None:
        """A link's own interest in ``key`` changed: the other links may announce differently."""
        for link in self.links.get(source.account.name, ()):
            if link is not source:
                self.sync(link, key)

    def send_burst(self, link: LeafLink) -> None:
        """Everything ``link`` should announce, right after its handshake, and its ``$LDS``."""
        name = link.account.name
        keys: set[Key] = set(self.local_weights.get(name, {}))
        if link.is_hub_side:
            keys.update(self.remote_weights.get(name, {}))
        for other in self.links.get(name, ()):
            if other is not link:
                keys.update(other.interest)
        for key in keys:
            self.sync(link, key)
        lds = self.lds(link.account)
        link.sent[(lds, None)] = 1
        link.send(encode_sub(lds, None, 1))

    def seed(self) -> None:
        """The weights of interest that existed before the listeners (accounts made early)."""
        for account in list(self.server.accounts.values()):
            for tap in self.taps:
                self.weights_from(account, tap)

    def weights_from(self, account: Account, tap: _Tap) -> None:
        try:
            weights = self.server.interest.weights(account, tap.kinds)
        except KeyError:
            return
        tap.weights[account.name] = dict(weights)

    # -- the leaf side: dialing hubs -------------------------------------------------------------------

    def hub_urls_update(self, link: LeafLink, info: Mapping[str, Any]) -> None:
        """A hub's INFO lists the leaf-node URLs of its cluster (the WebSocket ones for a WebSocket
        remote): dial them too when it goes."""
        remote = link.remote_cfg
        urls = info.get("ws_connect_urls" if remote is not None and remote.websocket else "leafnode_urls")
        if remote is None or remote.ignore_discovered_servers or not isinstance(urls, list):
            return
        index = self.settings.remotes.index(remote)
        configured = {urlsplit(u).netloc.rpartition("@")[2] for u in remote.urls}
        self._discovered[index] = [str(u) for u in urls if str(u) not in configured]

    def _candidates(self, index: int, remote: Remote) -> list[str]:
        urls = list(remote.urls)
        if not remote.no_randomize:
            random.shuffle(urls)
        scheme_user = urlsplit(remote.urls[0])
        prefix = scheme_user.scheme + "://" + (scheme_user.netloc.rpartition("@")[0] + "@"
                                              if "@" in scheme_user.netloc else "")
        return urls + [prefix + u for u in self._discovered.get(index, [])]

    async def _dialer(self, index: int, remote: Remote) -> None:
        """Keep a link to the hub of ``remote``: dial its URLs in turn, pause between tries."""
        loop = self.server.loop
        account = self.server.lookup_account(remote.account or "$G", create=True)
        interval = self.settings.reconnect
        attempts = 0
        while not self._stopping:
            for url in self._candidates(index, remote):
                if self._stopping:
                    return
                parts = urlsplit(url)
                default = {"ws": 80, "wss": 443}.get(parts.scheme, DEFAULT_PORT)
                host, port = parts.hostname or "127.0.0.1", parts.port or default
                attempts += 1
                link = LeafLink(self, solicited=True, remote=remote, url=url, account=account,
                                carrier="websocket" if remote.websocket else "tcp")
                try:
                    if remote.websocket:
                        await self._dial_websocket(link, remote, url, host, port)
                    else:
                        await asyncio.wait_for(loop.create_connection(_factory(link), host, port),
                                               remote.dial_timeout or self.settings.dial_timeout)
                except (OSError, TimeoutError) as exc:
                    if attempts == 1 or attempts % 3600 == 0:
                        log.error("Error trying to connect as leafnode to remote server %r "
                                  "(attempt %d): %s", f"{host}:{port}", attempts, exc)
                    await asyncio.sleep(interval + random.random() * interval)
                    continue
                attempts = 0
                await self._wait_closed(link)
                if self._stopping:
                    return
                await asyncio.sleep(interval + link.retry_delay)
                break

    async def _dial_websocket(self, link: LeafLink, remote: Remote, url: str, host: str, port: int) -> None:
        """Connect ``link`` through the hub's WebSocket port (TLS first for ``wss://``)."""
        from .wsdial import WebSocketDial  # the websockets library, for WebSocket remotes only

        loop = self.server.loop
        ssl_context = self.dialing_context(remote) if urlsplit(url).scheme == "wss" else None
        dial = WebSocketDial(link, url, remote.ws_compression)
        timeout = remote.dial_timeout or self.settings.dial_timeout
        await asyncio.wait_for(loop.create_connection(
            lambda: dial, host, port, ssl=ssl_context,
            server_hostname=self.url_host(url) if ssl_context is not None else None), timeout)
        try:
            if await asyncio.wait_for(asyncio.shield(dial.ready), remote.first_info_timeout + timeout):
                return
        except TimeoutError:
            dial._abort()
            raise TimeoutError("no answer to the websocket upgrade") from None
        raise OSError("the hub refused the websocket upgrade")

    async def _wait_closed(self, link: LeafLink) -> None:
        while not link.closed:
            await asyncio.sleep(0.05)

    # -- monitoring -------------------------------------------------------------------------------------

    def leafz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """nats-server's ``/leafz`` (``subs=1`` lists subjects, ``acc=`` filters)."""
        subs = str(params.get("subs", "")).lower() in ("1", "true")
        acc = str(params.get("acc", "") or "")
        links = sorted((link for group in self.links.values() for link in group), key=lambda k: k.cid)
        if acc:
            links = [link for link in links if link.account.name == acc]
        return {"server_id": self.server.server_id, "now": rfc3339(time.time()),
                "leafnodes": len(links), "leafs": [link.leafz(subs) for link in links]}

    def varz(self, varz: dict[str, Any]) -> None:
        """The leaf nodes' part of ``/varz``: the ``leaf`` section, the count and their traffic."""
        s = self.settings
        section: dict[str, Any] = {}
        if s.listening:
            section.update({"host": self.host, "port": self.port})
        section["auth_timeout"] = s.auth_timeout or 2
        if s.tls is not None:
            section.update({"tls_timeout": s.tls.timeout, "tls_required": True})
            if s.tls.verify:
                section["tls_verify"] = True
        varz["leaf"] = section
        varz["leafnodes"] = sum(len(ls) for ls in self.links.values())
        totals = list(self.closed_traffic)
        for link in self.connections:
            totals[0] += link.in_msgs
            totals[1] += link.in_bytes
            totals[2] += link.out_msgs
            totals[3] += link.out_bytes_total
        for key, extra in zip(("in_msgs", "in_bytes", "out_msgs", "out_bytes"), totals, strict=True):
            varz[key] += extra
        varz["slow_consumer_stats"]["leafs"] = self.counts["slow"]
        varz["stale_connection_stats"]["leafs"] = self.counts["stale"]


def _subject_permission(allow: tuple[str, ...] | None, deny: tuple[str, ...]) -> dict[str, list[str]]:
    """nats-server's ``SubjectPermission`` JSON (``allow``/``deny``, each left out when empty)."""
    out: dict[str, list[str]] = {}
    if allow is not None:
        out["allow"] = list(allow)
    if deny:
        out["deny"] = list(deny)
    return out


def _factory(link: LeafLink) -> Callable[[], LeafLink]:
    return lambda: link


async def _password_ok(configured: str, given: Any) -> bool:
    if not isinstance(given, str):
        return False
    if configured.startswith("$2"):
        import bcrypt

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, bcrypt.checkpw, given.encode(), configured.encode())
        except ValueError:
            return False
    return hmac.compare_digest(configured.encode(), given.encode())

