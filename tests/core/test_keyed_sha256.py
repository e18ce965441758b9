"""KeyedSha256 is HMAC-SHA-256: RFC 4231's vectors, and ``hmac.new`` for any key and message."""

from __future__ import annotations

import hashlib
import hmac
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from piimw.keyed_sha256 import KeyedSha256


def test_rfc_4231_vectors() -> None:
    # Test case 1 (a short key) and 6 (a key longer than the block: hashed first).
    assert KeyedSha256(b"\x0b" * 20).hexdigest(b"Hi There") == (
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    assert KeyedSha256(b"\xaa" * 131).hexdigest(
        b"Test Using Larger Than Block-Size Key - Hash Key First") == (
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")


@settings(max_examples=500)
@given(key=st.binary(max_size=200), messages=st.lists(st.binary(max_size=300), max_size=4))
def test_equals_hmac_for_any_key_and_message(key: bytes, messages: list[bytes]) -> None:
    mac = KeyedSha256(key)
    for message in messages:  # the prepared states are never changed by a call
        assert mac.digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_one_instance_from_many_threads() -> None:
    mac = KeyedSha256(b"k" * 32)
    messages = [str(i).encode() * (i % 7 + 1) for i in range(2000)]
    expected = [hmac.new(b"k" * 32, m, hashlib.sha256).digest() for m in messages]
    wrong: list[int] = []

    def work(offset: int) -> None:
        for i in range(offset, len(messages), 4):
            if mac.digest(messages[i]) != expected[i]:
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
