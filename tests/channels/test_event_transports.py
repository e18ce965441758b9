"""The event channel: ``scrub_event``, and outbound HTTP to third parties (httpx, requests)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
import requests
from pii_canary import Canary
from requests.adapters import HTTPAdapter

import piimw
from piimw.config import Config
from piimw.consent import Consent
from piimw.contrib.httpx import PIITransport
from piimw.contrib.requests import PIIAdapter
from piimw.events import BlockedEvent, Outbound, allows, scrub_event
from piimw.exchange import activate

HOSTS = {"api.segment.io": "analytics", ".doubleclick.net": "marketing"}


def _event(c: Canary) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "userId": "u-42",
            "properties": {"plan": "pro", "email": c.email, "referrer": f"?ref={c.name}",
                           "billing": {"card": c.card, "phone": c.phone}},
            "context": {"ip": c.ip}}


# -- scrub_event ----------------------------------------------------------------------------
def test_scrub_event_scrubs_known_and_detected(canary: Canary) -> None:
    with activate(canary.exchange()):
        out = scrub_event(_event(canary), "analytics", event_type="Signed Up")
    assert out is not None
    assert out["properties"]["plan"] == "pro"
    assert out["userId"] == "u-42"
    canary.assert_clean(json.dumps(out), "the event")


def test_scrub_event_blocks_on_opt_out(canary: Canary) -> None:
    ex = canary.exchange(consent=Consent.opt_out(["analytics"], signal="gpc"))
    with activate(ex):
        assert scrub_event(_event(canary), "analytics") is None
        assert not allows("analytics")
        assert allows("essential")
        assert scrub_event({"ok": 1}, "essential") == {"ok": 1}


def test_scrub_event_gpc_keeps_analytics(canary: Canary) -> None:
    ex = canary.exchange()
    ex.set_consent(Consent.opt_out(["marketing", "third_party"], signal="gpc"))
    with activate(ex):
        assert scrub_event(_event(canary), "marketing") is None
        assert scrub_event(_event(canary), "analytics") is not None


def test_scrub_event_rule_per_use_can_allow(canary: Canary) -> None:
    cfg = Config.from_dict({"rules": [{"id": "crm-email", "action": "mask", "category": "email",
                                       "sink": "event", "use": "marketing"}]})
    with activate(canary.exchange(config=cfg)):
        marketing = scrub_event({"email": canary.email}, "marketing")
        analytics = scrub_event({"email": canary.email}, "analytics")
    assert marketing is not None
    assert marketing["email"].startswith("z***@")
    assert analytics == {"email": "[REDACTED:email]"}


def test_scrub_event_with_a_plan(canary: Canary) -> None:
    plan = piimw.compile_schema({"type": "object", "properties": {
        "nickname": {"type": "string", "x-pii": "name"},
        "free": {"type": "string"}}})
    with activate(canary.exchange()):
        out = scrub_event({"nickname": "Ziggy", "free": f"hi {canary.email}"}, plan=plan)
    assert out == {"nickname": "[REDACTED:name]", "free": "hi [REDACTED:email]"}


def test_scrub_event_outside_a_request_uses_detectors(canary: Canary) -> None:
    out = scrub_event({"email": canary.email, "name": canary.name})
    assert out == {"email": "[REDACTED:email]", "name": canary.name}


# -- httpx ----------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(200, json={"ok": True})

    @property
    def sent(self) -> list[bytes]:
        return [str(r.url).encode() + b"\n" + r.content for r in self.requests]


def test_httpx_scrubs_bodies_and_query_to_listed_hosts(canary: Canary) -> None:
    rec = Recorder()
    client = httpx.Client(transport=PIITransport(httpx.MockTransport(rec), hosts=HOSTS))
    with activate(canary.exchange()):
        r = client.post(f"https://api.segment.io/v1/track?anonymousId={canary.token}",
                        json=_event(canary))
        client.post("https://api.segment.io/v1/batch", content=gzip.compress(
            json.dumps({"batch": [_event(canary)]}).encode()),
            headers={"content-type": "application/json", "content-encoding": "gzip"})
        client.post("https://api.segment.io/v1/form", data={"email": canary.email})
    assert r.status_code == 200
    first = json.loads(rec.requests[0].content)
    assert first["properties"]["plan"] == "pro"
    assert int(rec.requests[0].headers["content-length"]) == len(rec.requests[0].content)
    assert rec.requests[1].headers["content-encoding"] == "gzip"
    batch = gzip.decompress(rec.requests[1].content)
    canary.assert_clean([*rec.sent, batch], "outbound httpx requests")


def test_httpx_negative_control_unwrapped_transport_leaks(canary: Canary) -> None:
    rec = Recorder()
    client = httpx.Client(transport=httpx.MockTransport(rec))
    with activate(canary.exchange()):
        client.post("https://api.segment.io/v1/track", json=_event(canary))
    assert {"email", "card", "phone", "ip", "name"} <= set(canary.leaks(rec.sent))


def test_httpx_blocks_when_opted_out_and_passes_other_hosts(canary: Canary) -> None:
    rec = Recorder()
    client = httpx.Client(transport=PIITransport(httpx.MockTransport(rec), hosts=HOSTS))
    ex = canary.exchange(consent=Consent.opt_out(["marketing"], signal="gpc"))
    with activate(ex):
        with pytest.raises(BlockedEvent) as info:
            client.post("https://ad.doubleclick.net/collect", json=_event(canary))
        client.post("https://api.segment.io/v1/track", json=_event(canary))
        client.post("https://internal.example/api", json={"email": canary.email})
    assert info.value.reason == "consent"
    assert info.value.use == "marketing"
    canary.assert_clean(str(info.value))
    assert [r.url.host for r in rec.requests] == ["api.segment.io", "internal.example"]
    assert json.loads(rec.requests[1].content) == {"email": canary.email}  # not ours to touch


def test_httpx_blocks_what_it_cannot_inspect(canary: Canary) -> None:
    client = httpx.Client(transport=PIITransport(httpx.MockTransport(Recorder()), hosts=HOSTS))
    with activate(canary.exchange()), pytest.raises(BlockedEvent) as info:
        client.post("https://api.segment.io/v1/img", content=b"\x89PNG...",
                    headers={"content-type": "image/png"})
    assert info.value.reason != "consent"


def test_httpx_blocks_gzip_it_could_read_only_in_part(canary: Canary) -> None:
    """A second gzip member (which servers decode) was sent uninspected (found by review)."""
    rec = Recorder()
    client = httpx.Client(transport=PIITransport(httpx.MockTransport(rec), hosts=HOSTS))
    clean = gzip.compress(b"batch start\n")
    whole = gzip.compress(f"user={canary.email} card={canary.card}\n".encode())
    with activate(canary.exchange()):
        for body in (clean + whole, whole[:-8], clean + b"trailing bytes"):
            with pytest.raises(BlockedEvent) as info:
                client.post("https://api.segment.io/v1/batch", content=body,
                            headers={"content-type": "text/plain",
                                     "content-encoding": "gzip"})
            assert info.value.reason == "bad gzip data"
    assert rec.requests == []


def test_httpx_sends_the_json_it_inspected(canary: Canary) -> None:
    """orjson keeps the last of a key given twice; the first went out unread (found by
    review)."""
    rec = Recorder()
    client = httpx.Client(transport=PIITransport(httpx.MockTransport(rec), hosts=HOSTS))
    first = f'"email":"{canary.email}","card":"{canary.card}"'
    raw = ('{"event":"Signed Up","properties":{' + first + ',"email":"-","card":"-"}}').encode()
    with activate(canary.exchange()):
        client.post("https://api.segment.io/v1/track", content=raw,
                    headers={"content-type": "application/json"})
    sent = rec.requests[0].content
    assert json.loads(sent) == {"event": "Signed Up", "properties": {"email": "-", "card": "-"}}
    canary.assert_clean(sent, "outbound JSON with repeated keys")


async def test_httpx_async_client(canary: Canary) -> None:
    rec = Recorder()
    transport = PIITransport(httpx.MockTransport(rec), hosts=HOSTS)
    async with httpx.AsyncClient(transport=transport) as client:
        with activate(canary.exchange()):
            await client.post("https://api.segment.io/v1/track", json=_event(canary))
        with activate(canary.exchange(consent=Consent.opt_out(["analytics"]))), \
                pytest.raises(BlockedEvent):
            await client.post("https://api.segment.io/v1/track", json=_event(canary))
    assert len(rec.requests) == 1
    canary.assert_clean(rec.sent)


# -- requests -------------------------------------------------------------------------------
@pytest.fixture
def sent_by_requests(monkeypatch: pytest.MonkeyPatch) -> list[requests.PreparedRequest]:
    """Replace the network: ``HTTPAdapter.send`` records the request and answers 200."""
    sent: list[requests.PreparedRequest] = []

    def fake_send(self: HTTPAdapter, request: requests.PreparedRequest,
                  *args: Any, **kwargs: Any) -> requests.Response:
        sent.append(request)
        resp = requests.Response()
        resp.status_code = 200
        resp.request = request
        resp._content = b"{}"
        return resp

    monkeypatch.setattr(HTTPAdapter, "send", fake_send)
    return sent


def _body(r: requests.PreparedRequest) -> bytes:
    body = r.body
    return body.encode() if isinstance(body, str) else (body or b"")


def test_requests_adapter_scrubs_and_blocks(canary: Canary,
                                            sent_by_requests: list[requests.PreparedRequest]
                                            ) -> None:
    session = requests.Session()
    session.mount("https://", PIIAdapter(hosts=HOSTS))
    with activate(canary.exchange()):
        session.post(f"https://api.segment.io/v1/track?uid={canary.email}", json=_event(canary))
        session.post("https://api.segment.io/v1/form", data={"name": canary.name})
        session.post("https://internal.example/x", json={"email": canary.email})
    with activate(canary.exchange(consent=Consent.opt_out(["analytics"], signal="dnt"))), \
            pytest.raises(BlockedEvent):
        session.post("https://api.segment.io/v1/track", json=_event(canary))
    assert len(sent_by_requests) == 3
    track, form, internal = sent_by_requests
    assert int(track.headers["Content-Length"]) == len(_body(track))
    canary.assert_clean([str(track.url).encode() + _body(track), _body(form)],
                        "outbound requests")
    assert canary.email.encode() in _body(internal)


def test_requests_negative_control(canary: Canary,
                                   sent_by_requests: list[requests.PreparedRequest]) -> None:
    with activate(canary.exchange()):
        requests.Session().post("https://api.segment.io/v1/track", json=_event(canary))
    assert "email" in canary.leaks(_body(sent_by_requests[0]))


def test_requests_streamed_body_is_blocked(canary: Canary,
                                           sent_by_requests: list[requests.PreparedRequest]
                                           ) -> None:
    session = requests.Session()
    session.mount("https://", PIIAdapter(hosts=HOSTS))
    with activate(canary.exchange()), pytest.raises(BlockedEvent):
        session.post("https://api.segment.io/v1/track", data=iter([b"{}"]))
    assert sent_by_requests == []


def test_outbound_host_matching() -> None:
    out = Outbound({"api.segment.io": "analytics", "*.doubleclick.net": "marketing",
                    ".example.com": "third_party"})
    assert out.use_for("API.SEGMENT.IO") == "analytics"
    assert out.use_for("x.ad.doubleclick.net") == "marketing"
    assert out.use_for("doubleclick.net") == "marketing"
    assert out.use_for("example.com") == "third_party"
    assert out.use_for("notexample.com") is None
    assert out.use_for("segment.io") is None


def test_httpx_keeps_integers_beyond_64_bits(canary: Canary) -> None:
    """orjson reads them as floats: a scrubbed event changed such an id (found by review)."""
    rec = Recorder()
    client = httpx.Client(transport=PIITransport(httpx.MockTransport(rec), hosts=HOSTS))
    big = 12345678901234567890123
    with activate(canary.exchange()):
        client.post("https://api.segment.io/v1/track", content=json.dumps(
            {"orderId": big, "email": canary.email}).encode(),
            headers={"content-type": "application/json"})
        client.post("https://api.segment.io/v1/track", content=json.dumps(
            {"orderId": big, "plan": "pro"}).encode(),
            headers={"content-type": "application/json"})
    changed, clean = (json.loads(r.content) for r in rec.requests)
    assert changed["orderId"] == big
    canary.assert_clean(rec.requests[0].content, "event with a big integer")
    assert clean == {"orderId": big, "plan": "pro"}


def test_httpx_json_too_deep_for_an_exact_reading_is_still_scrubbed(
        canary: Canary, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard library's reading (for integers beyond 64 bits) raised RecursionError
    past the transport on JSON orjson reads (review of the change above). How deep the
    standard library goes depends on the stack: its failure is forced here."""
    import piimw.bodies

    def too_deep(raw: bytes) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(piimw.bodies.json, "loads", too_deep)
    rec = Recorder()
    client = httpx.Client(transport=PIITransport(httpx.MockTransport(rec), hosts=HOSTS))
    body = (f'{{"id":12345678901234567890123,"email":"{canary.email}"}}').encode()
    with activate(canary.exchange()):
        client.post("https://api.segment.io/v1/track", content=body,
                    headers={"content-type": "application/json"})
    canary.assert_clean(rec.requests[0].content, "event read by orjson alone")
