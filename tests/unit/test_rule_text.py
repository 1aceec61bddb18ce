"""Security group rules in Wakame-vdc's text form: parsed, checked, rendered back."""

from __future__ import annotations

import pytest

from app.services.network.rule_text import Rule, RuleError, parse, parse_line, render

WAKAME_RULES = """\
# the web tier
tcp:22,22,ip4:0.0.0.0/0
tcp:8000,8080,ip4:10.0.0.0/8
udp:53,53,ip4:192.168.1.7
icmp:-1,-1,ip4:0.0.0.0/0

icmp:8,0,sg-4kx9a0qz   # echo requests from the app tier
any:-1,-1,sg-4kx9a0qz
ANY:,,ip4:10.1.0.0/16
"""


def test_parse_and_render_round_trip() -> None:
    rules = parse(WAKAME_RULES)
    assert rules == [
        Rule("tcp", 22, 22, cidr="0.0.0.0/0"),
        Rule("tcp", 8000, 8080, cidr="10.0.0.0/8"),
        Rule("udp", 53, 53, cidr="192.168.1.7/32"),
        Rule("icmp", -1, -1, cidr="0.0.0.0/0"),
        Rule("icmp", 8, 0, source_group_id="sg-4kx9a0qz"),
        Rule("any", -1, -1, source_group_id="sg-4kx9a0qz"),
        Rule("any", -1, -1, cidr="10.1.0.0/16"),
    ]
    assert render(rules) == (
        "tcp:22,22,ip4:0.0.0.0/0\n"
        "tcp:8000,8080,ip4:10.0.0.0/8\n"
        "udp:53,53,ip4:192.168.1.7/32\n"
        "icmp:-1,-1,ip4:0.0.0.0/0\n"
        "icmp:8,0,sg-4kx9a0qz\n"
        "any:-1,-1,sg-4kx9a0qz\n"
        "any:-1,-1,ip4:10.1.0.0/16\n"
    )
    assert parse(render(rules)) == rules
    assert parse("") == [] and render([]) == ""


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("tcp:22,22", "expected PROTOCOL:FROM,TO,SOURCE"),
        ("tcp 22 22 0.0.0.0/0", "expected PROTOCOL:FROM,TO,SOURCE"),
        ("sctp:1,1,ip4:0.0.0.0/0", "protocol must be one of tcp, udp, icmp, any"),
        ("tcp:0,22,ip4:0.0.0.0/0", "port 0 is out of range 1-65535"),
        ("udp:53,65536,ip4:0.0.0.0/0", "port 65536 is out of range"),
        ("tcp:-1,-1,ip4:0.0.0.0/0", "port -1 is out of range"),
        ("tcp:80,22,ip4:0.0.0.0/0", "runs backwards"),
        ("tcp:a,b,ip4:0.0.0.0/0", "whole numbers"),
        ("icmp:256,0,ip4:0.0.0.0/0", "icmp type 256 is out of range"),
        ("icmp:8,-2,ip4:0.0.0.0/0", "icmp code -2 is out of range"),
        ("icmp:-1,3,ip4:0.0.0.0/0", "an icmp code needs an icmp type"),
        ("any:1,2,ip4:0.0.0.0/0", "protocol any takes no ports"),
        ("tcp:22,22,ip4:10.0.0.5/8", "has host bits set"),
        ("tcp:22,22,ip4:10.0.0.300/32", "not an IPv4 address"),
        ("tcp:22,22,ip4:::/0", "not an IPv4 address"),
        ("tcp:22,22,0.0.0.0/0", "source must be ip4:CIDR or a group id"),
        ("tcp:22,22,sg-UPPER123", "not a security group id"),
    ],
)
def test_bad_lines_say_what_is_wrong(line: str, words: str) -> None:
    with pytest.raises(RuleError, match=words.replace("(", r"\(")):
        parse_line(line)


def test_a_bad_line_in_a_text_is_named_by_number() -> None:
    with pytest.raises(RuleError, match=r"line 3 \('tcp:22,99999,ip4:0.0.0.0/0'\): .*99999"):
        parse("tcp:22,22,ip4:0.0.0.0/0\n# fine\ntcp:22,99999,ip4:0.0.0.0/0\n")


def test_a_rule_has_exactly_one_source() -> None:
    with pytest.raises(RuleError, match="exactly one source"):
        Rule("tcp", 22, 22)
    with pytest.raises(RuleError, match="exactly one source"):
        Rule("tcp", 22, 22, cidr="0.0.0.0/0", source_group_id="sg-4kx9a0qz")
    with pytest.raises(RuleError, match="not canonical"):
        Rule("tcp", 22, 22, cidr="10.0.0.1")
