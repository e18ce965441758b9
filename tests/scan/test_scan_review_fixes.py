"""``piimw scan`` review findings: keys in "in /field", odd file names, damaged .gz, UTF-16."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from piimw.cli import main
from piimw.detect import Span
from piimw.scan import _field_for, _json_fields, _key_test

IBAN, TOKEN, USER = "DE89370400440532013000", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "jdoe1985"
EMAIL = "jane.canary@example.com"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["scan", "--no-progress", "-j", "1", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_pii_in_a_key_is_never_printed_as_a_field(tmp_path: Path, fmt: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    known = tmp_path / "known.txt"
    known.write_text(f"user.account.username\t{USER}\n")
    log = tmp_path / "app.log"
    log.write_text("\n".join(json.dumps(d) for d in (
        {"balances": {IBAN: EMAIL}}, {"tokens": {TOKEN: EMAIL}}, {"sessions": {USER: EMAIL}},
        {"user": {"email": EMAIL}})) + "\n")
    code, out, _ = run(["--known", str(known), "--format", fmt, str(log)], capsys)
    assert code == 1
    assert not [v for v in (IBAN, TOKEN, USER) if v in out]
    for field in ("/balances/*", "/tokens/*", "/sessions/*", "/user/email"):
        assert field in out


def test_a_key_a_finding_overlaps_is_masked() -> None:
    """Even where the detectors would not flag the key alone (a span found in context)."""
    line = json.dumps({"by": {"x_4111111111111111": EMAIL}})
    fields = _json_fields(line)
    assert fields is not None
    key_start = line.index("x_41")
    value_start = line.index(EMAIL)
    spans = [Span(key_start, key_start + 18, "user.financial.credit_card", "card"),
             Span(value_start, value_start + len(EMAIL), "user.contact.email", "email")]
    test = _key_test(line, fields, spans, lambda s: False)
    assert _field_for(fields, value_start, test) == "/by/*"
    assert _field_for(fields, value_start, lambda s: False) == "/by/x_4111111111111111"


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_a_file_name_that_is_not_utf8(tmp_path: Path, fmt: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    with open(os.fsencode(root) + b"/app\xe9.log", "wb") as f:
        f.write(f"signup {EMAIL}\n".encode())
    code, out, _ = run(["--format", fmt, str(root)], capsys)
    assert code == 1
    doc = json.loads(out)  # the report is complete, valid JSON
    text = json.dumps(doc)
    assert "app\\\\xe9.log" in text or "app%E9.log" in text


def test_a_gz_cut_short_does_not_stop_the_scan(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    data = gzip.compress(b"".join(b"%d signup jane%d@example.com\n" % (i, i)
                                  for i in range(20000)))
    (root / "1-app.log.gz").write_bytes(data[: len(data) // 2])
    (root / "2-other.log").write_text("card 4111 1111 1111 1111\n")
    (root / "3-not.log.gz").write_bytes(b"not gzip\n")
    code, out, err = run([str(root)], capsys)
    assert code == 1
    assert out.count("1-app.log.gz") > 1000  # what was readable was scanned
    assert "2-other.log" in out
    assert "1-app.log.gz: could not be read to its end (EOFError)" in err
    assert "3-not.log.gz: could not be read to its end (BadGzipFile)" in err
    assert "jane" not in err
    clean = tmp_path / "clean.log.gz"
    clean.write_bytes(data[: len(data) // 2])
    code, out, err = run([str(clean)], capsys)
    assert code == 1
    (tmp_path / "empty.gz").write_bytes(b"\x1f\x8b")
    code, out, err = run([str(tmp_path / "empty.gz")], capsys)
    assert code == 2
    assert "could not be read" in err
    before = clean.read_bytes()
    assert run(["--in-place", str(clean)], capsys)[0] == 2
    assert clean.read_bytes() == before  # never replaced by its readable part


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_bom(tmp_path: Path, encoding: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    text = f"start\r\n2024-05-01 signup {EMAIL} card 4111 1111 1111 1111\r\n"
    log = tmp_path / "app.log"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    log.write_bytes(data)
    code, out, _ = run([str(log)], capsys)
    assert code == 1
    assert f"{log}:2:19-42: user.contact.email" in out
    code, out, _ = run([str(tmp_path)], capsys)  # a directory walk does not skip it as binary
    assert code == 1
    assert "user.contact.email" in out
    code, _, _ = run(["--redact", str(tmp_path / "clean"), str(log)], capsys)
    cleaned = (tmp_path / "clean" / str(log).lstrip("/")).read_bytes()
    assert cleaned[:4] == data[:4]  # the same encoding, BOM first
    decoded = cleaned.decode(encoding if encoding != "utf-16-be" else "utf-16")
    assert decoded.lstrip("\ufeff") == ("start\r\n2024-05-01 signup [REDACTED:email] card "
                                        "[REDACTED:card]\r\n")


def test_skipped_binary_files_are_reported(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" + EMAIL.encode())
    (tmp_path / "ok.log").write_text("fine\n")
    code, out, err = run(["--format", "json", str(tmp_path)], capsys)
    assert code == 0
    assert "1 binary file(s) skipped" in err
    assert json.loads(out)["summary"]["skipped_binary"] == 1
