"""A second hand-written set, written before the final training run and never used to tune
the corpus or the features (``handwritten.py`` was used for error analysis): its scores are
the least biased estimate we have of quality on real text."""

from __future__ import annotations

from handwritten import parse

SENTENCES = (
    "Customer [PER Ingeborg Halvorsen] says the coffee grinder arrived without a lid.",
    "Forwarding address: [ADDR 88 Tamarack Drive, Eugene, OR 97401]",
    "[PER Kwabena Asante] left a 1-star review for the Dyson V15.",
    "Spoke to [PER Leticia Barros] re: duplicate charge on the Spotify Family plan.",
    "New office: [ADDR 5 Carrick Lane, Leeds LS2 7EY].",
    "Paket bitte an [ADDR Tulpenweg 9, 79098 Freiburg] schicken.",
    "Samsung Electronics and Warner Music announced a partnership.",
    "Quarterly Revenue Update: Strong Growth in Cloud Services",
    'user_profile={"display_name": "[PER Nikolai Vasquez]", "tier": "Silver"}',
    "DEBUG cache miss key=session:44f1 latency=12ms",
    "Hello, I am [PER Farida Osei] and my parcel never came.",
    "The Jordan River Cafe on Pine Street is hiring baristas.",
    "Please call [PER Dr. Anneliese Wuttke] regarding the lab results.",
    "Ship the Canon EOS R6 to [ADDR 742 Evergreen Terrace, Springfield, OR 97477].",
    "Thanks, [PER Yosef Abramov]",
    "Escalated by [PER Priyanka Raghavan] to tier 2 support.",
)

EXAMPLES = [parse(s.replace("[PER Dr. ", "Dr. [PER ")) for s in SENTENCES]
