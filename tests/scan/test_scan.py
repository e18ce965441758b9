from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import pytest

from piimw.cli import main
from piimw.scan import Hit, Input, Options, Progress, iter_blocks, iter_inputs, scan

EMAIL = "jane.canary@example.com"
CARD = "4111 1111 1111 1111"
LOG = (
    "2025-01-01 INFO started\n"
    f"2025-01-01 INFO signup {EMAIL} ok\n"
    "2025-01-01 INFO nothing\n"
    f"2025-01-01 WARN charge card={CARD} retry\n"
    '{"level":"info","user":{"email":"bob.canary\\u0040example.org"},"msg":"hi"}\n'
    '{"level":"info","carol.canary@example.net":"x"}\n'
    "last line without newline " + EMAIL
)
RAW = (EMAIL, CARD, "bob.canary", "carol.canary", "4111 1111")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["scan", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    (root / "sub").mkdir(parents=True)
    (root / "app.log").write_text(LOG)
    (root / "clean.log").write_text("nothing to see\n" * 50)
    with gzip.open(root / "sub" / "old.log.gz", "wt") as f:
        f.write(LOG)
    (root / "blob.bin").write_bytes(b"\x00\x01" + EMAIL.encode())
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(EMAIL)
    (root / "skip.tmp").write_text(EMAIL)
    return root


def test_text_report_masks_and_locates(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([str(tree / "app.log")], capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{tree}/app.log:2:24-47: user.contact.email [email] j***@example.com"
    assert lines[1].endswith(":4:29-48: user.financial.credit_card [card] **** **** **** 1111")
    assert "json-escaped" in lines[2]
    assert lines[2].endswith("b***@example.org in /user/email")
    assert lines[3].endswith("in / (a key)")
    assert ":7:27-50:" in lines[4]
    assert len(lines) == 5
    assert "5 finding(s)" in err
    for value in RAW:
        assert value not in out + err


def test_directory_gz_and_skips(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([str(tree), "--exclude", "*.tmp", "--format", "json"], capsys)
    assert code == 1
    doc = json.loads(out)
    paths = {f["path"] for f in doc["findings"]}
    assert paths == {f"{tree}/app.log", f"{tree}/sub/old.log.gz"}
    assert doc["summary"]["files"] == 3  # app.log, clean.log, old.log.gz
    assert doc["summary"]["findings"] == 10
    assert doc["summary"]["by_category"]["user.financial.credit_card"] == 2
    for value in RAW:
        assert value not in out


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(LOG.encode())))
    code, out, _ = run(["-"], capsys)
    assert code == 1
    assert out.startswith("<stdin>:2:24-47:")


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.log"
    clean.write_text("hello\n")
    assert run([str(clean)], capsys)[0] == 0
    code, _, err = run([str(tmp_path / "missing.log")], capsys)
    assert code == 2
    assert "no such file" in err
    assert run(["-", "--in-place"], capsys)[0] == 2
    with pytest.raises(SystemExit) as e:
        main(["scan"])
    assert e.value.code == 2
    capsys.readouterr()


def test_sarif(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([str(tree / "app.log"), "--format", "sarif"], capsys)
    assert code == 1
    sarif = json.loads(out)
    assert sarif["version"] == "2.1.0"
    (run_,) = sarif["runs"]
    assert run_["tool"]["driver"]["name"] == "piimw"
    assert {r["id"] for r in run_["tool"]["driver"]["rules"]} == {
        "user.contact.email", "user.financial.credit_card"}
    first = run_["results"][0]
    region = first["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"], region["endColumn"]) == (2, 24, 47)
    assert first["level"] == "warning"
    assert run_["results"][1]["level"] == "error"  # cards are sensitive
    assert first["partialFingerprints"]["piimwFinding/v1"]
    assert run_["columnKind"] == "unicodeCodePoints"
    for value in RAW:
        assert value not in out


def test_baseline(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "baseline.json"
    log = tree / "app.log"
    assert run([str(log), "--write-baseline", str(base)], capsys)[0] == 0
    text = base.read_text()
    for value in RAW:
        assert value not in text
    assert len(json.loads(text)["fingerprints"]) == 5
    code, out, err = run([str(log), "--baseline", str(base)], capsys)
    assert (code, out) == (0, "")
    assert "accepted by the baseline" in err
    with open(log, "a") as f:
        f.write(f"\nnew leak {EMAIL}\n")
    code, out, _ = run([str(log), "--baseline", str(base)], capsys)
    assert code == 1
    assert out.count("\n") == 1
    assert run([str(log), "--baseline", str(tmp_path / "nope.json")], capsys)[0] == 2


def test_redact_copies_keep_line_structure(tree: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "clean"
    code, _, _ = run([str(tree), "--exclude", "*.tmp", "--redact", str(out_dir)], capsys)
    assert code == 1  # the originals still hold the findings
    copy = out_dir / str(tree).lstrip("/") / "app.log"
    cleaned = copy.read_text()
    assert cleaned.count("\n") == LOG.count("\n")
    assert not cleaned.endswith("\n")
    assert "[REDACTED:email]" in cleaned
    assert "[REDACTED:card]" in cleaned
    json.loads(cleaned.splitlines()[4])  # escaped JSON stays valid JSON
    for value in RAW:
        assert value not in cleaned
    gz = out_dir / str(tree).lstrip("/") / "sub" / "old.log.gz"
    with gzip.open(gz, "rt") as f:
        assert f.read() == cleaned
    assert (tree / "app.log").read_text() == LOG  # never in place unless asked
    assert run([str(copy)], capsys)[0] == 0  # and the copy scans clean


def test_in_place(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tree / "app.log"
    log.chmod(0o640)
    assert run([str(log), "--in-place"], capsys)[0] == 0
    assert EMAIL not in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o640
    assert not list(tree.glob(".piimw-*"))
    assert run([str(log)], capsys)[0] == 0


def test_known_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "a.log"
    log.write_text("user Zebulon Quarterfield logged in\nuser mx-7731-aa logged in\n")
    known = tmp_path / "known.txt"
    known.write_text("name\tZebulon Quarterfield\nmx-7731-aa\n")
    code, out, _ = run([str(log), "--known", str(known)], capsys)
    assert code == 1
    assert "a.log:1:6-26: user.name [known]" in out
    assert ":2:6-16:" in out
    assert "Zebulon" not in out
    assert "mx-7731" not in out
    bad = tmp_path / "bad.txt"
    bad.write_text("nonsense-category\tvalue\n")
    assert run([str(log), "--known", str(bad)], capsys)[0] == 2


def test_blocks_split_on_lines() -> None:
    data = b"a\nbb\nccc\n" * 1000 + b"tail"
    blocks = list(iter_blocks(io.BytesIO(data), block_size=7))
    assert b"".join(b for _, b in blocks) == data
    line = 1
    for first, block in blocks:
        assert first == line
        assert block.endswith(b"\n") or block == b"tail"
        line += block.count(b"\n")
    assert list(iter_blocks(io.BytesIO(b""))) == [(1, b"")]


def _hits(paths: list[str], **opts: object) -> list[Hit]:
    out: list[Hit] = []
    scan(list(iter_inputs(paths)), Options(progress=False, **opts), out.append)  # type: ignore[arg-type]
    return out


def test_parallel_matches_serial_and_keeps_order(tmp_path: Path) -> None:
    lines = []
    for i in range(20000):
        if i % 97 == 0:
            lines.append(f"{i} user{i}@example.com did a thing\n")
        elif i % 193 == 0:
            lines.append(f"{i} paid {CARD}\n")
        else:
            lines.append(f"{i} routine line with nothing personal in it at all\n")
    big = tmp_path / "big.log"
    big.write_text("".join(lines))
    serial = _hits([str(big)], jobs=1)
    parallel = _hits([str(big)], jobs=2, block_size=4096, parallel_after=8192)
    assert serial == parallel
    assert [h.line for h in parallel] == sorted(h.line for h in parallel)
    assert len(parallel) == len(range(0, 20000, 97)) + len(
        [i for i in range(0, 20000, 193) if i % 97])
    for h in parallel:
        assert lines[h.line - 1].startswith(f"{h.line - 1} ")


def test_progress_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet, tty = io.StringIO(), Tty()
    for stream in (quiet, tty):
        p = Progress(1000, stream)
        p._last = -1.0
        p.advance(500)
        p.close()
    assert quiet.getvalue() == ""
    assert "50%" in tty.getvalue()


def test_input_listing_is_sorted_and_skips_binary(tree: Path) -> None:
    names = [i.display for i in iter_inputs([str(tree)])]
    assert names == [f"{tree}/app.log", f"{tree}/clean.log", f"{tree}/skip.tmp",
                     f"{tree}/sub/old.log.gz"]
    assert isinstance(next(iter_inputs(["-"])), Input)
