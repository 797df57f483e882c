"""The webhook signature, its documented verification snippet, the SSRF guard and the backoff."""

from __future__ import annotations

import ipaddress
import random
import re
from pathlib import Path

import pytest

from services.notifier import SignatureError, sign, verify_signature
from services.notifier.domain import backoff_s
from services.notifier.urls import RefusedUrlError, check_callback_url, parse_networks, resolve_target

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
BODY = b'{"id":"01JDZ8W3V0R4N8M0Q2K5T7Y9AB","type":"recording.summarized"}'


class TestSignature:
    def test_round_trip_and_every_way_to_fail(self) -> None:
        header = sign(BODY, "s3cret", timestamp=1_700_000_000)
        assert re.fullmatch(r"t=1700000000,v1=[0-9a-f]{64}", header)
        assert verify_signature(BODY, header, "s3cret", now=1_700_000_010) == 1_700_000_000
        for body, head, secret, now, reason in [
            (BODY + b"x", header, "s3cret", 1_700_000_010, "does not match"),
            (BODY, header, "other", 1_700_000_010, "does not match"),
            (BODY, header, "s3cret", 1_700_000_400, "more than 300s"),
            (BODY, None, "s3cret", 1_700_000_010, "no Kubescribe-Signature"),
            (BODY, "v1=abc", "s3cret", 1_700_000_010, "malformed"),
        ]:
            with pytest.raises(SignatureError, match=reason):
                verify_signature(body, head, secret, now=now)

    def test_any_of_several_signatures_matches_during_a_key_rotation(self) -> None:
        new = sign(BODY, "new", timestamp=1_700_000_000)
        old = sign(BODY, "old", timestamp=1_700_000_000).split(",")[1]
        assert verify_signature(BODY, f"{new},{old}", "old", now=1_700_000_000)

    def test_the_documented_snippet_agrees_with_the_helper(self) -> None:
        code = re.search(r"```python\n(import hashlib.*?)```", DOC.read_text(), re.S)
        assert code, "docs/webhooks.md lost its standard-library verification snippet"
        namespace: dict = {}
        exec(code.group(1), namespace)
        header = sign(BODY, "s3cret")
        assert namespace["verify"](BODY, header, "s3cret") is True
        assert namespace["verify"](BODY + b" ", header, "s3cret") is False
        assert namespace["verify"](BODY, header, "wrong") is False


class TestCallbackUrl:
    @pytest.mark.parametrize(
        "url", ["ftp://example.com/x", "/relative", "http://", "https://user:pw@example.com/", "http://h:99999/"]
    )
    def test_bad_shapes_are_rejected_with_a_reason(self, url: str) -> None:
        with pytest.raises(ValueError, match="callback_url"):
            check_callback_url(url)

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://localhost/",
        ],
    )
    async def test_non_public_addresses_are_refused(self, url: str) -> None:
        with pytest.raises(RefusedUrlError, match="SSRF"):
            await resolve_target(url)

    async def test_an_allowed_network_passes_and_the_address_is_pinned(self) -> None:
        target = await resolve_target("http://127.0.0.1:8123/hook?x=1", parse_networks(["127.0.0.0/8"]))
        assert target.address == ipaddress.ip_address("127.0.0.1") and target.port == 8123
        assert target.pinned_url == "http://127.0.0.1:8123/hook?x=1"
        v6 = await resolve_target("https://[::1]/h", parse_networks(["::1/128"]))
        assert v6.pinned_url == "https://[::1]:443/h" and v6.host == "::1"
        with pytest.raises(RefusedUrlError):  # allowing one network allows nothing else
            await resolve_target("http://[::1]/", parse_networks(["127.0.0.0/8"]))

    def test_a_bad_allowed_network_is_a_readable_error(self) -> None:
        with pytest.raises(ValueError, match="ALLOWED_NETWORKS"):
            parse_networks(["10.0.0.0/33"])


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff_s(n, 1.0, 30.0, rng=rng) for n in range(1, 9)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(30.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
