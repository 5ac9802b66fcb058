"""Digest authentication of SIP requests (RFC 3261 §22, RFC 8760): challenges, nonces, nonce
counts, and the account a request proves (the functions check the digest itself).
"""

from __future__ import annotations

from collections.abc import Callable

from chalicelib import digest
from chalicelib import edge_contract as contract
from sip_edge.dialog import Peer
from sip_edge.handling import EdgeServices, Reject, raise_function_error
from sip_edge.sip.message import Request
from sip_edge.sip.values import NameAddr


def address_of_record(address: NameAddr) -> str:
    """`user@host` of a From/To address: the account a request claims to act for."""
    uri = address.uri
    return f"{uri.user_unescaped or ''}@{uri.host.lower()}"


class DigestGuard:
    """Challenges requests and checks their answers; one per edge, so nonces stay its own."""

    def __init__(self, edge: EdgeServices, in_live_dialog: Callable[[Request], bool]) -> None:
        self.edge = edge
        cfg = edge.cfg
        self.in_live_dialog = in_live_dialog
        self.realm = cfg.sip_domain
        self.nonces = digest.Nonces(cfg.nonce_key, cfg.nonce_ttl_seconds)
        self.nonce_counts = digest.NonceCounts(cfg.nonce_ttl_seconds)
        self.algorithms = tuple(a.upper() for a in cfg.sip_digest_algorithms)
        unknown = set(self.algorithms) - set(digest.ALGORITHMS)
        if unknown or not self.algorithms:
            raise ValueError(f"SIP_DIGEST_ALGORITHMS: unsupported {sorted(unknown)}")

    async def authenticate(self, request: Request, peer: Peer) -> str:
        """The account the request proves, or Reject with a challenge or a 403."""
        edge = self.edge
        claimed = address_of_record(request.to if request.method == "REGISTER" else request.from_)
        if peer.host in edge.cfg.sip_trusted_proxies:
            return claimed
        stale = False
        for proxy in (False, True):
            for cred in request.authorization(proxy=proxy):
                if not cred.is_digest or cred.get("realm") != self.realm:
                    continue
                # An algorithm the operator turned off is refused even with a valid answer.
                if (cred.get("algorithm") or "MD5").upper() not in self.algorithms:
                    continue
                state = self.nonces.check(cred.get("nonce") or "", self.realm, edge.clock())
                if state == "stale" and request.method == "SUBSCRIBE" and request.to.tag:
                    # Linphone 5.1 answers a stale challenge on an in-dialog refresh by dropping
                    # the dialog and re-sending the old credentials, then backs off 60 s. Inside
                    # a live dialog an expired nonce of ours will do if the digest verifies; for
                    # a dialog we no longer hold, 481 makes it subscribe again at once.
                    if not self.in_live_dialog(request):
                        raise Reject(481, "Subscription does not exist")
                    state = "ok"
                if state != "ok":
                    stale = stale or state == "stale"
                    continue
                nonce_used, nc = cred.get("nonce") or "", cred.get("nc")
                if self.nonce_counts.is_replay(nonce_used, nc):
                    stale = True  # an Authorization sent again verbatim: make it renew
                    continue
                answer = await edge.functions.call(
                    contract.SIP_AUTH,
                    contract.SipAuthRequest(
                        {
                            "method": request.method,
                            "realm": self.realm,
                            "params": cred.params,
                            # Password-guessing limits count per account, source and device.
                            "source": peer.host,
                            "instance": next(
                                (c.param("+sip.instance") for c in request.contacts or []), None
                            ),
                        }
                    ),
                )
                raise_function_error(answer)  # auth_blocked: 403 with Retry-After
                if answer.get("result") != "ok":
                    continue
                self.nonce_counts.record(nonce_used, nc, edge.clock())
                if answer["aor"].lower() != claimed.lower():
                    raise Reject(403, "Identity does not match credentials")
                return answer["aor"]
        nonce = self.nonces.make(self.realm, edge.clock())
        offered = digest.offered_to(
            request.headers.get("User-Agent"), self.algorithms, edge.cfg.sip_digest_md5_agents
        )
        raise Reject(
            401,
            None,
            [
                ("WWW-Authenticate", digest.challenge(self.realm, nonce, alg, stale=stale))
                for alg in offered
            ],
        )
