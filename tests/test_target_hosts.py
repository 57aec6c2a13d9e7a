"""Endpoint secrets name a valid host (DNS name per RFC 1123 / IDNA, or an IP literal) before the
allow-list is consulted: even an allow-list of "*" lets no other string through."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.target import InvalidTarget, normalise_endpoint

ANY = ("*",)
# An independent statement of RFC 1123 host names: LDH labels of 1-63 characters, at most 253 in all.
LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){LABEL}(\.{LABEL})*")


@pytest.mark.parametrize(
    "host",
    [
        "a_b.dynamics.com",  # underscore
        "a b.dynamics.com",  # space
        "a\tb.dynamics.com",
        "a*.dynamics.com",
        "a!.dynamics.com",
        "a$b.dynamics.com",
        "ex%41.dynamics.com",  # percent-escape
        "a\\b.dynamics.com",
        "-a.dynamics.com",
        "a-.dynamics.com",
        "a..dynamics.com",
        "." + "a.dynamics.com",
        "a" * 64 + ".dynamics.com",  # label over 63
        ".".join(["a" * 63] * 4) + ".dynamics.com",  # over 253
        "xn--zz.dynamics.com",  # an A-label that is not valid punycode
        "xn--a.dynamics.com",
        "a\u200bb.dynamics.com",  # zero-width space
        "\u2488.dynamics.com",  # "⒈": disallowed by IDNA 2008
        "127.1",  # resolvers read these as 127.0.0.1
        "0x7f.1",
        "2130706433",
        "127.000.000.001",
        "1.2.3.4.5",
        "[fe80::1%25eth0]",  # zone ID
        "[v1.x]",
    ],
)
def test_strings_that_are_not_hosts_are_refused_whatever_the_allow_list(host):
    with pytest.raises(InvalidTarget):
        normalise_endpoint(f"https://{host}/", ANY)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://public-eur.mkt.dynamics.com", "https://public-eur.mkt.dynamics.com/"),
        ("https://public-eur.mkt.dynamics.com.", "https://public-eur.mkt.dynamics.com/"),  # root label
        ("https://Bücher.dynamics.com/", "https://xn--bcher-kva.dynamics.com/"),  # IDNA: A-label
        ("https://xn--bcher-kva.dynamics.com/", "https://xn--bcher-kva.dynamics.com/"),
        ("https://10.1.2.3:8443/", "https://10.1.2.3:8443/"),
        ("https://[2001:DB8::1]/", "https://[2001:db8::1]/"),
        ("https://" + "a" * 63 + ".dynamics.com/", "https://" + "a" * 63 + ".dynamics.com/"),
        ("https://x.dynamics.com/pre%20fix/", "https://x.dynamics.com/pre%20fix/"),
    ],
)
def test_host_names_and_ip_literals_are_taken_in_normal_form(raw, expected):
    assert normalise_endpoint(raw, ANY) == expected


@pytest.mark.parametrize(
    "path", ["/a b/", "/a\x00/", "/../x/", "/a/%2e%2E/", "/a<b/", '/a"b/', "/ä/", "/a%zz/"]
)
def test_path_prefixes_hold_only_url_path_characters(path):
    with pytest.raises(InvalidTarget):
        normalise_endpoint(f"https://x.dynamics.com{path}", ANY)


def test_the_port_must_be_one_a_server_can_listen_on():
    for port in ("0", "65536", "-1", "x"):
        with pytest.raises(InvalidTarget):
            normalise_endpoint(f"https://x.dynamics.com:{port}/", ANY)


hosts = st.one_of(
    st.text(max_size=40),
    st.text(st.sampled_from("ab0-._*%\\:[]xn"), max_size=30),
    st.lists(st.from_regex(r"\A[a-z0-9-]{0,70}\Z"), min_size=1, max_size=6).map(".".join),
)


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(hosts)
def test_whatever_passes_is_a_host_name_or_an_ip_literal(host):
    try:
        base = normalise_endpoint(f"https://{host}/", ANY)
    except InvalidTarget:
        return
    name = urlsplit(base).hostname or ""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        assert HOST_NAME.fullmatch(name), (host, base)
        assert not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", name.rsplit(".", 1)[-1]), (host, base)
