"""A small hand-written test set for the shipped tagger: ``[PER ...]`` / ``[ADDR ...]`` marks
the expected entities. Written by hand, not generated; many names and streets are in no list
the training corpus draws from."""

from __future__ import annotations

import re

SENTENCES = (
    "Hi there, this is [PER Margarethe Olsen], I ordered a blender last week.",
    "Please send the replacement to [ADDR 4417 Bristlecone Ave, Boulder, CO 80301].",
    "Refund approved by [PER Tobias Kranz] for order 88123.",
    "My new address is [ADDR 27 Ashgrove Road, Bristol BS7 9LJ], thanks!",
    "Ich wohne in der [ADDR Weidenstraße 14, 04109 Leipzig].",
    'payload={"name": "[PER Oyelaran Adewale]", "plan": "Gold"}',
    "INFO checkout completed for [PER Svetlana Morozova] total=129.00 EUR",
    "The Cadillac Escalade is back in stock at our Tulsa store.",
    "Thanks for contacting Charles Schwab support. Your ticket is 55120.",
    "Parcel 5521 Dispatched. Tracking will be available tomorrow.",
    "Can [PER Hamid Rezaei] call me back about the Pixel 8 Pro?",
    "Deliver to [ADDR 9 Coppergate Close, York YO1 9NR] after 5pm please.",
    "Dear [PER Ms. Ilse Brandt],\nyour subscription has been renewed.",
    "macOS Sonoma keeps crashing after the update.",
    "Signed, [PER Rafael Quintero]",
    "Ship to: [ADDR 1600 Larkspur Lane, Apt 3, Fresno, CA 93721]",
    "We met [PER Chidi Anozie] and [PER Mei-Lin Zhou] at the conference.",
    "Real Madrid merchandise is 20% off this week.",
    "ERROR PaymentService timeout after 3000 ms (retry 2)",
    "Return label for [PER Björn Lindqvist]: [ADDR Kastanienallee 52, 10435 Berlin]",
    "Please update the contact person to [PER Aroha Te Rangi].",
    "Thursday Standup Notes: Capacity Planning and Vendor Renewals",
    "GET /api/v2/orders/7781 200 43ms",
    "Invoice for [PER Gwendolyn Price] sent to [ADDR 310 Wexford Street, Dublin 2].",
)

_MARK = re.compile(r"\[(PER|ADDR) ([^\]]+)\]")


def parse(marked: str) -> tuple[str, list[tuple[int, int, str]]]:
    out: list[str] = []
    spans: list[tuple[int, int, str]] = []
    pos = last = 0
    for m in _MARK.finditer(marked):
        plain = marked[last:m.start()]
        out.append(plain)
        pos += len(plain)
        value = m.group(2)
        if value.startswith("Ms. "):  # titles are not part of the name
            out.append("Ms. ")
            pos += 4
            value = value[4:]
        spans.append((pos, pos + len(value), m.group(1)))
        out.append(value)
        pos += len(value)
        last = m.end()
    out.append(marked[last:])
    return "".join(out), spans


EXAMPLES = [parse(s) for s in SENTENCES]
