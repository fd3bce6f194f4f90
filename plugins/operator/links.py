"""Exports and imports declared in account JWTs, wired with the core's forwarders.

An import in an account JWT names the exporting account, the subject and the
type (``stream`` or ``service``). It is wired only when the exporter's JWT
exports a subject covering it, and, for an export with ``token_req``, when
the import carries an activation token: a JWT issued by the exporter (or one
of its signing keys) to the importing account for that subject, not expired
and not revoked by the export. Imports are rebuilt whenever an account JWT
is loaded, updated or removed, so a withdrawn export stops at once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from natsd.plugin.contracts import ServerAPI
from natsd.routing.imports import ServiceImport, StreamImport
from natsd.routing.mappings import MappingError, SubjectTransform, transform_tokenize
from natsd.routing.subjects import subject_is_subset, valid_subject
from natsd_jwt.claims import AccountClaims, GenericClaims, JWTError, decode, is_revoked

if TYPE_CHECKING:
    from .trust import OperatorMode

log = logging.getLogger("natsd.operator")


def _find_export(exporter: AccountClaims, kind: str, subject: str) -> dict | None:
    for export in exporter.exports:
        if (str(export.get("type", "")).lower() == kind
                and subject_is_subset(subject.encode(), str(export.get("subject", "")).encode())):
            return export
    return None


def activation_problem(token: Any, exporter: AccountClaims, importer: str, subject: str,
                       export: dict) -> str | None:
    """Why an activation token does not let ``importer`` import ``subject`` (None: it does)."""
    if not isinstance(token, str) or not token:
        return "the export requires an activation token"
    try:
        claims = decode(token)
    except JWTError as e:
        return f"bad activation token: {e}"
    if not isinstance(claims, GenericClaims) or claims.kind != "activation":
        return "the token is not an activation token"
    if claims.issuer != exporter.subject and claims.issuer not in exporter.signing_keys:
        return "the activation token is not issued by the exporting account"
    if claims.subject != importer:
        return "the activation token is for another account"
    if 0 < claims.expires <= time.time():
        return "the activation token has expired"
    granted = str(claims.raw.get("nats", {}).get("subject", ""))
    if not granted or not subject_is_subset(subject.encode(), granted.encode()):
        return "the activation token does not cover the subject"
    revocations = export.get("revocations") or {}
    if isinstance(revocations, dict) and is_revoked(revocations, importer, claims.issued_at):
        return "the activation token has been revoked"
    return None


class JWTLinks:
    """The forwarders built from the imports of every loaded account JWT."""

    def __init__(self, server: ServerAPI, mode: OperatorMode) -> None:
        self.server = server
        self.mode = mode
        self.forwarders: list[Any] = []
        self._busy = False

    def rewire(self) -> None:
        if self._busy:
            return  # an exporter loaded while wiring; the loop below covers it
        self._busy = True
        try:
            for fwd in self.forwarders:
                fwd.close()
            self.forwarders.clear()
            done: set[str] = set()
            while pending := [p for p in self.mode.loaded if p not in done]:
                for pub in pending:
                    done.add(pub)
                    entry = self.mode.loaded.get(pub)
                    if entry is not None:
                        self._wire(entry[1])
        finally:
            self._busy = False

    def _wire(self, importer: AccountClaims) -> None:
        for imp in importer.imports:
            kind = str(imp.get("type", "")).lower()
            subject = str(imp.get("subject", ""))
            owner = str(imp.get("account", ""))
            why = self._problem(importer, imp, kind, subject, owner)
            if why is not None:
                log.warning("account %s: %s import of %r from %s not wired: %s",
                            importer.subject, kind or "untyped", subject, owner, why)

    def _problem(self, importer: AccountClaims, imp: dict, kind: str, subject: str,
                 owner: str) -> str | None:
        if kind not in ("stream", "service") or not valid_subject(subject.encode()):
            return "malformed import"
        try:
            exporter = self.mode.account(owner)
        except JWTError as e:
            return str(e)
        export = _find_export(exporter, kind, subject)
        if export is None:
            return "the exporting account does not export it"
        if export.get("token_req"):
            why = activation_problem(imp.get("token"), exporter, importer.subject, subject, export)
            if why is not None:
                return why
        server = self.server
        src = server.lookup_account(owner, create=True)
        dst = server.lookup_account(importer.subject, create=True)
        subj = subject.encode()
        local = str(imp.get("local_subject") or "")
        try:
            if kind == "stream":
                prefix = str(imp.get("to") or "")
                if local:
                    transform = SubjectTransform(subj, transform_tokenize(local), strict=True)
                    self.forwarders.append(StreamImport(
                        server, src, dst, subj, lambda s: transform.apply(s) or s))
                elif prefix:
                    pre = prefix.encode()
                    self.forwarders.append(StreamImport(server, src, dst, subj, lambda s: pre + b"." + s))
                else:
                    self.forwarders.append(StreamImport(server, src, dst, subj, lambda s: s))
            else:
                to = (local or str(imp.get("to") or "") or subject).encode()
                rtype = str(export.get("response_type") or "singleton").lower()
                self.forwarders.append(ServiceImport(server, src, dst, subj, to, rtype))
        except MappingError as e:
            return str(e)
        return None
