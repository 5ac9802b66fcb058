"""Digest authentication of SIP requests (RFC 3261 §22, RFC 8760): challenges, nonces, nonce
counts, and the account a request proves (the functions check the digest itself).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from chalicelib import digest
from chalicelib import edge_contract as contract
from sip_edge.dialog import Peer
from sip_edge.handling import EdgeServices, Reject, raise_function_error, within_amplification_limit
from sip_edge.sip.message import Request, make_response
from sip_edge.sip.status import ParseError
from sip_edge.sip.uri import parse_uri
from sip_edge.sip.values import NameAddr


def address_of_record(address: NameAddr) -> str:
    """`user@host` of a From/To address: the account a request claims to act for."""
    uri = address.uri
    return f"{uri.user_unescaped or ''}@{uri.host.lower()}"


def uri_matches(
    digest_uri: str, request_uri: str, own: frozenset[str] | set[str] = frozenset()
) -> bool:
    """RFC 7616 §3.4.6 / RFC 3261 §22.4: the digest `uri` names this request's Request-URI, so
    an answer computed for one request cannot authenticate another. Linphone and baresip copy
    the Request-URI verbatim; a different spelling of the same sip URI also passes. SIPp 3.6
    puts the address it sent to instead (`sip:<edge host>:<port>`): this edge's own addresses,
    `own`, are taken too, since they also say the answer was made for this server."""
    if digest_uri == request_uri or digest_uri in own:
        return True
    try:
        a, b = parse_uri(digest_uri), parse_uri(request_uri)
    except ParseError:
        return False
    return (a.scheme.lower(), a.user, a.host.lower(), a.port, a.params) == (
        b.scheme.lower(), b.user, b.host.lower(), b.port, b.params
    )  # fmt: skip


class DigestGuard:
    """Challenges requests and checks their answers; one per edge, so nonces stay its own.

    A nonce is bound (HMAC) to the source address it was sent to and to this edge process
    (`incarnation`), so its nonce counts, kept here for its whole life, are the only ones that
    matter: an answer replayed from another address, to another edge task or after a restart
    is not ours. The one nonce that lives longer than NONCE_TTL_SECONDS is the one that
    authenticated a subscription, for refreshes of that dialog from the dialog's own source
    (Linphone 5.1 re-uses it at each refresh and mishandles `stale=true`, see
    docs/digest.md); its counts are kept as long (`dialog_counts`).
    """

    def __init__(self, edge: EdgeServices, dialog_of: Callable[[Request], Any]) -> None:
        self.edge = edge
        cfg = edge.cfg
        self.dialog_of = dialog_of
        self.realm = cfg.sip_domain
        self.incarnation = secrets.token_hex(8)
        self.nonces = digest.Nonces(cfg.nonce_key, cfg.nonce_ttl_seconds)
        self.nonce_counts = digest.NonceCounts(cfg.nonce_ttl_seconds)
        self.dialog_ttl = cfg.nonce_ttl_seconds + cfg.subscribe_max_expires
        self.dialog_counts = digest.NonceCounts(self.dialog_ttl)
        self.algorithms = tuple(a.upper() for a in cfg.sip_digest_algorithms)
        unknown = set(self.algorithms) - set(digest.ALGORITHMS)
        if unknown or not self.algorithms:
            raise ValueError(f"SIP_DIGEST_ALGORITHMS: unsupported {sorted(unknown)}")

    def _own(self) -> set[str]:
        """The edge's own addresses as a digest `uri` may name them (see `uri_matches`)."""
        hosts = {self.edge.cfg.sip_host, self.edge.host}
        return {f"sip:{h}:{p}" for h in hosts for p in self.edge.ports.values()}

    def _bind(self, host: str) -> str:
        return f"{host}/{self.incarnation}"

    def make_nonce(self, host: str) -> str:
        """A nonce for a challenge sent to `host`."""
        return self.nonces.make(self.realm, self.edge.clock(), bind=self._bind(host))

    def _in_dialog_nonce(self, request: Request, peer: Peer, nonce: str, nc: str | None) -> bool:
        """An expired nonce on an in-dialog refresh: taken only from the dialog's own source,
        while the nonce is within a subscription's life and authenticated a SUBSCRIBE here,
        with a count above the last one."""
        dialog = self.dialog_of(request)
        if dialog is None or dialog.peer.host != peer.host or not self.dialog_counts.knows(nonce):
            return False
        state = self.nonces.check(
            nonce, self.realm, self.edge.clock(), bind=self._bind(peer.host), ttl=self.dialog_ttl
        )
        return state == "ok" and not self.dialog_counts.is_replay(nonce, nc)

    async def authenticate(self, request: Request, peer: Peer) -> str:
        """The account the request proves, or Reject with a challenge, a 403 or a 481."""
        edge = self.edge
        claimed = address_of_record(request.to if request.method == "REGISTER" else request.from_)
        if peer.host in edge.cfg.sip_trusted_proxies:
            request.source_verified = True
            return claimed
        refresh = request.method == "SUBSCRIBE" and request.to.tag is not None
        stale = False
        for proxy in (False, True):
            for cred in request.authorization(proxy=proxy):
                if not cred.is_digest or cred.get("realm") != self.realm:
                    continue
                # An algorithm the operator turned off is refused even with a valid answer.
                if (cred.get("algorithm") or "MD5").upper() not in self.algorithms:
                    continue
                # Counts make replays visible: an answer without them (RFC 2069) is refused.
                uri = cred.get("uri") or ""
                if cred.get("qop") != "auth" or not uri_matches(uri, request.uri, self._own()):
                    continue
                nonce, nc = cred.get("nonce") or "", cred.get("nc")
                state = self.nonces.check(
                    nonce, self.realm, edge.clock(), bind=self._bind(peer.host)
                )
                if state == "ok":
                    replay = self.nonce_counts.is_replay(nonce, nc, self.nonces.issued(nonce))
                elif (
                    refresh and state == "stale" and self._in_dialog_nonce(request, peer, nonce, nc)
                ):
                    replay = False
                elif refresh:
                    # Linphone 5.1 answers a stale challenge on an in-dialog refresh by dropping
                    # the dialog and re-sending the old credentials, then backs off 60 s; 481
                    # makes it subscribe again at once, with a fresh challenge.
                    raise Reject(481, "Subscription does not exist")
                else:
                    stale = True  # expired, or made for another address or edge task: renew
                    continue
                if replay:
                    stale = True  # an Authorization sent again verbatim: make it renew
                    continue
                check: contract.SipAuthRequest = {
                    "method": request.method,
                    "realm": self.realm,
                    "params": cred.params,
                    # Password-guessing limits count per account, source and device.
                    "source": peer.host,
                    "instance": next(
                        (c.param("+sip.instance") for c in request.contacts or []), None
                    ),
                }
                answer = await contract.SIP_AUTH.ask(edge.functions, check)
                if "error" in answer:
                    raise_function_error(answer)  # auth_blocked: 403 with Retry-After
                    continue
                if answer["result"] != "ok" or "aor" not in answer:
                    continue
                now = edge.clock()
                self.nonce_counts.record(nonce, nc, now)
                if request.method == "SUBSCRIBE":
                    self.dialog_counts.record(nonce, nc, now)
                if answer["aor"].lower() != claimed.lower():
                    raise Reject(403, "Identity does not match credentials")
                request.source_verified = True  # its nonce was bound to this source
                return answer["aor"]
        raise Reject(401, None, self.challenges(request, peer, stale))

    def challenges(self, request: Request, peer: Peer, stale: bool) -> list[tuple[str, str]]:
        """One WWW-Authenticate per offered algorithm, strongest first; over UDP the weaker
        ones are left out when the 401 would exceed the amplification limit of the request
        (the first, which the client asked for by User-Agent or which is strongest, stays)."""
        nonce = self.make_nonce(peer.host)
        offered = digest.offered_to(
            request.headers.get("User-Agent"), self.algorithms, self.edge.cfg.sip_digest_md5_agents
        )
        headers = [
            ("WWW-Authenticate", digest.challenge(self.realm, nonce, alg, stale=stale))
            for alg in offered
        ]
        server = len(self.edge.cfg.sip_server_header)
        while len(headers) > 1:
            size = len(make_response(request, 401, None, headers).to_bytes())
            if within_amplification_limit(request, peer, size + (server + 10 if server else 0)):
                break
            headers.pop()
        return headers
