"""NOTIFY bodies: every profile rule of the Linphone interop README (tests/data/interop), checked
with independent parsers (stdlib `email` for the multipart, lxml for each part); chunking,
versions, golden files."""

from __future__ import annotations

import gzip
import os
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.presence import multipart, notify, pidf
from chalicelib.presence.notify import BodyOptions, ResourceState, User
from testkit.notify_body import DM, PIDF, RLMI, RPID, ParsedBody, cid_of, parse_body
from tests.presence_helpers import (
    FIXTURE_ENTRIES,
    FIXTURE_USERS,
    UNQUOTED_LAST_BOUNDARY,
    SequentialIds,
    sip_message,
)

GOLDEN = Path(__file__).parent / "golden"
LIST_URI = "sip:rls@example.org"
NOW = datetime(2026, 11, 26, 8, 32, 52, tzinfo=UTC)
#: A user with no live binding: still a user (the contact stays), shown offline.
OFFLINE = pidf.PresenceStatus(basic="closed", activities=())


def fixture_states() -> list[ResourceState]:
    return [
        ResourceState(uri, User(FIXTURE_USERS[uri]) if uri in FIXTURE_USERS else None)
        for uri in FIXTURE_ENTRIES
    ]


def options(profile: str = "linphone", **kw: object) -> BodyOptions:
    return BodyOptions(
        profile=multipart.profile(profile), ids=SequentialIds(), now=lambda: NOW, **kw
    )


def build_one(states, profile="linphone", deflate=False, version=0) -> notify.NotifyBody:
    bodies = notify.build(
        LIST_URI, states, version=version, options=options(profile, deflate=deflate)
    )
    assert len(bodies) == 1
    return bodies[0]


def parsed(nb: notify.NotifyBody) -> ParsedBody:
    return parse_body(nb.content_type, nb.body, nb.content_encoding)


# --- The linphone profile, rule by rule --------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["plain", "deflate"])
def linphone_body(request) -> notify.NotifyBody:
    return build_one(fixture_states(), "linphone", deflate=request.param)


def test_linphone_boundary_unquoted_and_last(linphone_body):
    assert UNQUOTED_LAST_BOUNDARY.match(linphone_body.content_type), linphone_body.content_type
    assert linphone_body.content_type.rsplit(";", 1)[1].startswith("boundary=")
    assert '"' not in linphone_body.content_type.rsplit(";", 1)[1]


def test_linphone_no_crlf_before_the_first_boundary(linphone_body):
    p = parsed(linphone_body)
    assert p.plain.startswith(f"--{p.boundary}\r\n".encode())
    assert p.plain.endswith(f"\r\n--{p.boundary}--\r\n".encode())


def test_linphone_content_id_spelling_without_angle_brackets(linphone_body):
    p = parsed(linphone_body)
    for part in p.parts:
        lines = part.raw_headers.decode().split("\r\n")
        assert lines[0] == "Content-Transfer-Encoding: binary"
        assert re.fullmatch(r"Content-Id: [^<>\s]+@example\.org", lines[1]), lines[1]
        assert lines[2].startswith("Content-Type: application/")
        assert b"Content-ID" not in part.raw_headers
    assert p.start == f"<{cid_of(p.parts[0].message)}>"


def test_rlmi_first_full_state_version_zero_and_no_name(linphone_body):
    p = parsed(linphone_body)
    assert p.parts[0].message.get_content_type() == "application/rlmi+xml"
    assert p.rlmi.tag == f"{RLMI}list"
    assert (p.rlmi.get("uri"), p.rlmi.get("version"), p.rlmi.get("fullState")) == (
        LIST_URI,
        "0",
        "true",
    )
    assert p.rlmi.find(f".//{RLMI}name") is None
    assert b"<name" not in p.parts[0].payload


def test_resources_byte_identical_users_have_one_active_instance(linphone_body):
    p = parsed(linphone_body)
    assert p.uris() == FIXTURE_ENTRIES
    for res in p.resources():
        instances = res.findall(f"{RLMI}instance")
        if res.get("uri") in FIXTURE_USERS:
            assert len(instances) == 1 and instances[0].get("state") == "active"
            assert instances[0].get("id") and instances[0].get("cid")
        else:
            assert instances == []  # a non-user: NO instance
    assert p.users() == FIXTURE_USERS
    assert len(p.parts) == 1 + len(FIXTURE_USERS)


def test_pidf_of_a_user_is_open_with_contact_timestamp_and_away(linphone_body):
    p = parsed(linphone_body)
    for part in p.parts[1:]:
        assert part.message.get_content_type() == "application/pidf+xml"
        doc = part.root
        entity = doc.get("entity")
        assert FIXTURE_USERS[entity] == doc.findtext(f"{PIDF}tuple/{PIDF}contact")
        assert doc.findtext(f"{PIDF}tuple/{PIDF}status/{PIDF}basic") == "open"
        assert doc.findtext(f"{PIDF}tuple/{PIDF}timestamp") == "2026-11-26T08:32:52Z"
        person = doc.find(f"{DM}person")
        assert person.find(f"{RPID}activities/{RPID}away") is not None
        assert person.findtext(f"{DM}timestamp") == "2026-11-26T08:32:52Z"


def test_deflate_is_a_zlib_stream_not_raw_or_gzip():
    nb = build_one(fixture_states(), deflate=True)
    assert nb.content_encoding == "deflate" and nb.headers["Content-Encoding"] == "deflate"
    assert nb.body[0] == 0x78 and (nb.body[0] << 8 | nb.body[1]) % 31 == 0
    zlib.decompress(nb.body)
    with pytest.raises(zlib.error):
        zlib.decompress(nb.body, -zlib.MAX_WBITS)
    with pytest.raises(OSError):
        gzip.decompress(nb.body)
    assert len(nb.body) < nb.plain_bytes


def test_plain_when_deflate_not_accepted():
    nb = build_one(fixture_states(), deflate=False)
    assert nb.content_encoding is None and "Content-Encoding" not in nb.headers
    assert nb.body.startswith(b"--")


def test_linphone_never_sends_a_tel_resource():
    states = [ResourceState("tel:+33612345678", User("sip:bob@example.org")), *fixture_states()]
    assert "tel:+33612345678" not in parsed(build_one(states, "linphone")).uris()
    assert parsed(build_one(states, "rfc")).uris()[0] == "tel:+33612345678"


def test_same_structure_as_the_notify_linphone_accepted():
    """Ours and the accepted capture differ only in random ids, boundary and Content-Length."""
    headers, body = sip_message("notify-accepted-plain")
    nb = build_one(fixture_states(), "linphone")
    theirs, ours = parse_body(headers["content-type"], body, None), parsed(nb)

    def normalise(p: ParsedBody) -> bytes:
        text = p.plain.decode().replace(p.boundary, "BOUNDARY")
        for part in p.parts:
            text = text.replace(cid_of(part.message), "CID")
        text = re.sub(r' (id|cid)="[^"]+"', r' \1="X"', text)
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "TIME", text)
        return text.encode()

    assert normalise(ours) == normalise(theirs)
    ct = re.sub(r"<[^>]+>", "<CID>", nb.content_type).replace(ours.boundary, "B")
    assert ct == re.sub(r"<[^>]+>", "<CID>", headers["content-type"]).replace(theirs.boundary, "B")


# --- The rfc profile -------------------------------------------------------------------------


def test_rfc_profile_uses_content_id_in_angle_brackets_and_a_quoted_boundary():
    nb = build_one(fixture_states(), "rfc")
    assert re.fullmatch(
        r'multipart/related;type="application/rlmi\+xml";start="<[^<>]+>";boundary="[^"]+"',
        nb.content_type,
    )
    p = parsed(nb)
    for part in p.parts:
        assert re.search(rb"^Content-ID: <[^<>\s]+>\r?$", part.raw_headers, re.M)
        assert b"Content-Id:" not in part.raw_headers
        assert part.message["Content-Transfer-Encoding"] == "binary"
    assert p.start == p.parts[0].message["Content-ID"]
    assert p.users() == FIXTURE_USERS and p.uris() == FIXTURE_ENTRIES


# --- Status objects (live status later) --------------------------------------------------------


def test_status_object_shapes_the_pidf():
    status = pidf.PresenceStatus(
        "open", ("busy", "on-the-phone"), (pidf.Note('in a "meeting" & <out>', "en"),)
    )
    states = [
        ResourceState("sip:a@example.org", User("sip:a@example.org", status)),
        ResourceState("sip:b@example.org", User("sip:b@example.org", pidf.ONLINE)),
        ResourceState("sip:c@example.org", User("sip:c@example.org", OFFLINE)),
    ]
    p = parsed(build_one(states, "rfc"))
    a, b, c = (p.pidf_for(cid_of(part.message)) for part in p.parts[1:])
    assert [e.tag for e in a.find(f"{DM}person/{RPID}activities")] == [
        f"{RPID}busy",
        f"{RPID}on-the-phone",
    ]
    note = a.find(f"{DM}person/{DM}note")
    assert note.text == 'in a "meeting" & <out>'
    assert note.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert b.find(f"{DM}person/{RPID}activities") is None
    assert b.findtext(f"{PIDF}tuple/{PIDF}status/{PIDF}basic") == "open"
    assert c.findtext(f"{PIDF}tuple/{PIDF}status/{PIDF}basic") == "closed"
    assert c.findtext(f"{PIDF}tuple/{PIDF}contact") == "sip:c@example.org"  # contact kept
    with pytest.raises(ValueError):
        pidf.PresenceStatus("busy")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pidf.PresenceStatus(activities=("<x/>",))


# --- Versions, partial bodies and chunks -------------------------------------------------------


def many(n: int, users_every: int = 3) -> list[ResourceState]:
    return [
        ResourceState(
            f"sip:+336{i:08d}@example.org;user=phone",
            User(f"sip:u{i}@example.org") if i % users_every == 0 else None,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("deflate", [False, True])
@pytest.mark.parametrize("profile", ["linphone", "rfc"])
def test_long_lists_split_into_full_then_partial_bodies(deflate, profile):
    states = many(1500)  # 500 users
    opts = options(profile, deflate=deflate, notify_limit=200, max_bytes=12000)
    bodies = notify.build(LIST_URI, states, version=7, options=opts)
    assert len(bodies) >= 3
    assert [b.version for b in bodies] == list(range(7, 7 + len(bodies)))
    assert [b.full_state for b in bodies] == [True] + [False] * (len(bodies) - 1)
    seen_uris: list[str] = []
    seen_users: dict[str, str] = {}
    for nb in bodies:
        assert len(nb.body) <= 12000
        assert nb.users <= 200
        p = parsed(nb)
        assert p.rlmi.get("version") == str(nb.version)
        assert p.rlmi.get("fullState") == ("true" if nb.full_state else "false")
        assert p.uris() == list(nb.uris)
        seen_uris += p.uris()
        seen_users.update(p.users())
    assert seen_uris == [s.uri for s in states]
    assert seen_users == {s.uri: s.user.contact for s in states if s.user}


def test_user_limit_without_byte_pressure():
    bodies = notify.build(
        LIST_URI, many(900), version=0, options=options(notify_limit=100, max_bytes=10**7)
    )
    assert [b.users for b in bodies] == [100, 100, 100]
    assert bodies[0].full_state and not bodies[1].full_state


def test_a_resource_bigger_than_the_body_size_limit_is_sent_alone():
    huge = ResourceState("sip:" + "a" * 900 + "@example.org", User("sip:x@example.org"))
    bodies = notify.build(LIST_URI, [huge, *many(3)], version=1, options=options(max_bytes=500))
    assert bodies[0].uris == (huge.uri,)
    assert sum(len(b.uris) for b in bodies) == 4


def test_first_notify_is_always_full_state_and_empty_lists_still_get_one():
    (nb,) = notify.build(LIST_URI, [], version=0, full_state=False, options=options())
    p = parsed(nb)
    assert p.rlmi.get("fullState") == "true" and p.uris() == [] and len(p.parts) == 1


def partial(resources: list[ResourceState], *, version: int, **kw) -> list[notify.NotifyBody]:
    return notify.build(
        LIST_URI, resources, version=version, full_state=False, options=options(**kw)
    )


def test_partial_bodies_for_live_updates():
    became_user = ResourceState(FIXTURE_ENTRIES[0], User("sip:nina@example.org"))
    gone = ResourceState(FIXTURE_ENTRIES[1])
    (nb,) = partial([became_user, gone], version=4)
    p = parsed(nb)
    assert (p.rlmi.get("version"), p.rlmi.get("fullState")) == ("4", "false")
    assert p.users() == {FIXTURE_ENTRIES[0]: "sip:nina@example.org"}
    assert p.resources()[1].find(f"{RLMI}instance") is None
    assert partial([], version=4) == []
    (term,) = partial([gone], version=5, non_user="terminated")
    inst = parsed(term).resources()[0].find(f"{RLMI}instance")
    assert (inst.get("state"), inst.get("reason"), inst.get("cid")) == (
        "terminated",
        "noresource",
        None,
    )


def test_instance_ids_are_stable_across_notifies():
    a = parsed(build_one(fixture_states(), version=0))
    b = parsed(build_one(fixture_states(), version=1))
    ids = [r.find(f"{RLMI}instance").get("id") for r in a.resources() if len(r)]
    assert ids == [r.find(f"{RLMI}instance").get("id") for r in b.resources() if len(r)]


def test_accept_encoding_parsing():
    assert multipart.accepts_deflate("deflate")
    assert multipart.accepts_deflate(["gzip", "Deflate"])
    assert multipart.accepts_deflate("gzip, deflate;q=0.5")
    assert not multipart.accepts_deflate("deflate;q=0")
    assert not multipart.accepts_deflate([])
    assert not multipart.accepts_deflate(None)
    assert not multipart.accepts_deflate("identity")


# --- Golden files ------------------------------------------------------------------------------

GOLDEN_CASES = {
    "linphone-plain": ("linphone", False, 0, True),
    "linphone-deflate": ("linphone", True, 0, True),
    "rfc-plain": ("rfc", False, 3, True),
    "linphone-partial": ("linphone", False, 4, False),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden(name):
    profile, deflate, version, full = GOLDEN_CASES[name]
    states = fixture_states() if full else fixture_states()[:2]
    (nb,) = notify.build(
        LIST_URI,
        states,
        version=version,
        full_state=full,
        options=options(profile, deflate=deflate),
    )
    plain = zlib.decompress(nb.body) if deflate else nb.body
    text = (
        f"Content-Type: {nb.content_type}\r\n"
        + (f"Content-Encoding: {nb.content_encoding}\r\n" if nb.content_encoding else "")
        + "\r\n"
    ).encode() + plain
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_bytes(text)
    assert text == path.read_bytes(), f"regenerate with UPDATE_GOLDEN=1 and review {path}"


# --- Properties --------------------------------------------------------------------------------

hostile_text = st.text(
    st.one_of(
        st.sampled_from(list("&<>\"'\t\n\r;=@:+ ")),
        st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)),
    ).filter(lambda c: c not in "\ufffe\uffff"),
    min_size=1,
    max_size=30,
)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(hostile_text, st.booleans()), min_size=0, max_size=6, unique_by=lambda t: t[0]
    ),
    st.sampled_from(["linphone", "rfc"]),
    st.booleans(),
)
def test_any_uri_comes_back_byte_identical(entries, profile, deflate):
    states = [
        ResourceState("sip:" + uri, User("sip:" + uri + "@example.org") if user else None)
        for uri, user in entries
    ]
    nb = build_one(states, profile, deflate=deflate)
    p = parsed(nb)
    assert p.uris() == [s.uri for s in states]
    expected = {s.uri: s.user.contact for s in states if s.user}
    assert p.users() == expected
    for part in p.parts[1:]:
        assert part.root.get("entity") in expected
