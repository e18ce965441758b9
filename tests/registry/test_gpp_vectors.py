"""GPP strings written by other encoders, read by piimw: the opt-outs their tests set.

The strings come from the test suites of independent implementations (the Rust crate
noirotm/iabgpp-rs, the IAB's iabgpp-es and iabgpp-java); where a suite holds a section's
string only, the GPP header in front of it (``DBAB`` + the section id) was added here. Each
test there set the sale and targeted-advertising (and sharing) opt-outs to "opted out"; GPC
is asserted where the test set it. Sections 24 to 27 are written core first by some versions
and after a section header by others: both are here.
"""

from __future__ import annotations

import pytest

from piimw.signals import parse_gpp

ES = "IABTechLab/iabgpp-es modules/cmpapi/test/encoder/section/"
JAVA = "IABTechLab/iabgpp-java iabgpp-encoder/src/test/java/com/iab/gpp/encoder/section/"
RS = "noirotm/iabgpp-rs iab_gpp/tests/data/"

VECTORS = [
    # (GPP string, section, opted-out fields, gpc as the source set it or None, source)
    ("DBABLA~BVVVVVVVVWA", "usnat", ("sale", "sharing", "targeted_advertising"), None,
     RS + "usnat_v1_opted_out.json"),
    ("DBABBg~BVVVVVVY", "usca", ("sale", "sharing"), None, RS + "usca_opted_out.json"),
    ("DBABRg~BVVVVWY", "usva", ("sale", "targeted_advertising"), None,
     RS + "usva_opted_out.json"),
    ("DBABJg~BVVVVVg", "usco", ("sale", "targeted_advertising"), None,
     RS + "usco_opted_out.json"),
    ("DBABFg~BVVVVVmA", "usut", ("sale", "targeted_advertising"), None,
     RS + "usut_opted_out.json"),
    ("DBABVg~BVVVVVVg.YA", "usct", ("sale", "targeted_advertising"), True,
     RS + "usct_with_gpc.json"),
    ("DBABAw~BVWSSZlY", "usfl", ("sale", "targeted_advertising"), None, ES + "UsFl.test.ts"),
    ("DBABQw~BVWSSZFY.YA", "usmt", ("sale", "targeted_advertising"), True,
     ES + "UsMt.test.ts"),
    ("DBABIw~BVWSSRpFYA.YA", "usor", ("sale", "targeted_advertising"), True,
     ES + "UsOr.test.ts"),
    ("DBABEw~BVWSSVW.Y", "ustx", ("sale", "targeted_advertising"), True, ES + "UsTx.test.ts"),
    ("DBABUw~BVWSSSSVY.Y", "usde", ("sale", "targeted_advertising"), True,
     ES + "UsDe.test.ts"),
    ("DBABUw~BAAAAAABA.Q", "usde", (), False, ES + "UsDe.test.ts (defaults)"),
    ("DBABCw~BVVkklW.Y", "usia", ("sale", "targeted_advertising"), True, ES + "UsIa.test.ts"),
    ("DBABSw~BVWSSVW.Y", "usne", ("sale", "targeted_advertising"), True, ES + "UsNe.test.ts"),
    ("DBABKw~BVWSSZFY.Y", "usnh", ("sale", "targeted_advertising"), True,
     ES + "UsNh.test.ts"),
    ("DBABAY~BVWSSRklWA.YA", "usnj", ("sale", "targeted_advertising"), True,
     ES + "UsNj.test.ts"),
    ("DBABQY~BVWSSVWA.YA", "ustn", ("sale", "targeted_advertising"), True,
     ES + "UsTn.test.ts"),
    ("DBABIY~BVWSSVW.Y", "usmn", ("sale", "targeted_advertising"), True, ES + "UsMn.test.ts"),
    ("DBABEY~BVVV.Y", "usmd", ("sale", "targeted_advertising"), True,
     ES + "UsMd.test.ts (core first)"),
    ("DBABEY~BVVU.YA", "usmd", ("sale", "targeted_advertising"), True,
     JAVA + "UsMdTest.java @4ad8fef (core first)"),
    ("DBABUY~ZBABYA.BVVV.kkk", "usin", ("sale", "targeted_advertising"), None,
     JAVA + "UsInTest.java @86578d0 (section header first)"),
    ("DBABUY~BVVVkkk.YA", "usin", ("sale", "targeted_advertising"), None,
     ES + "UsIn.test.ts @295fddb (core first)"),
    ("DBABCY~aBABYA.BVVV.kkk", "usky", ("sale", "targeted_advertising"), None,
     JAVA + "UsKyTest.java @711a8bb (section header first)"),
    ("DBABCY~BVVV.kkk", "usky", ("sale", "targeted_advertising"), None,
     JAVA + "UsKyTest.java @298030b (core first)"),
    ("DBABSY~bBABYA.BVVV.kkk", "usri", ("sale", "targeted_advertising"), None,
     JAVA + "UsRiTest.java @86578d0 (section header first)"),
]


@pytest.mark.parametrize(("gpp", "section", "fields", "gpc", "source"), VECTORS,
                         ids=[f"{v[1]}-{i}" for i, v in enumerate(VECTORS)])
def test_other_encoders_strings(gpp: str, section: str, fields: tuple[str, ...],
                                gpc: bool | None, source: str) -> None:
    result = parse_gpp(gpp)
    assert result.sections == (section,), source
    assert [o for o in result.opt_outs if not o.endswith(".gpc")] == [
        f"{section}.{f}" for f in fields], source
    if gpc is not None:
        assert (f"{section}.gpc" in result.opt_outs) is gpc, source


def test_every_us_section_at_its_defaults_is_read_and_opts_out_of_nothing() -> None:
    """iabgpp-es test/GppModel.test.ts (c9c38fe): TCF EU and CA, uspv1 and the US sections 7
    to 22, each at its encoder's defaults."""
    gpp = ("DBACOdM~CPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAAAAAA.QAAA.IAAA~BPSG_8APSG_8AAAAAAENAA"
           "CAAAAAAAAAAAAAAAAAAA.YAAAAAAAAAA~1---~BAAAAAAAAABA.QA~BAAAAABA.QA~BAAAABA~BAAAAEA.QA"
           "~BAAAAAQA~BAAAAAEA.QA~BAAAAABA~BAAAAABA.QA~BAAAAAABAA.QA~BAAAAAQA.QA~BAAAAAABAA.QA"
           "~BAAAAAQA.QA~BAAAAAQA.QA~BAAAAABA.QA~BAAAAAAAQA.QA~BAAAAAQA.QA")
    result = parse_gpp(gpp)
    assert result.sections == (
        "uspv1", "usnat", "usca", "usva", "usco", "usut", "usct", "usfl", "usmt", "usor",
        "ustx", "usde", "usia", "usne", "usnh", "usnj", "ustn")
    assert result.opt_outs == ()
