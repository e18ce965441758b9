"""Train the shipped name/address tagger from a generated corpus, deterministically.

    python -m piimw.discover.train --out piimw/data/ner_model.json.gz

The corpus is synthetic but varied: log lines, support messages, e-mails and JSON-ish text with
names from many cultures, US/UK/German street addresses, and many hard negatives (products,
brands named after people or cities, companies, capitalised words at sentence start, numbers
followed by capitalised words). A fifth of the first names, surnames and street words is held
out: the held-out set (``split="heldout"``) uses only those, so its scores measure names and
streets the model and its gazetteers never saw.
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from piimw.discover.tagger import TAGS, Tagger, tokenize

__all__ = ["Example", "evaluate", "generate", "main", "train"]

Example = tuple[str, list[tuple[int, int, str]]]  # text, [(start, end, "PER" | "ADDR")]


def _words(text: str) -> list[str]:
    return text.split()


FIRST = _words("""
James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara
Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Nancy Daniel Lisa Matthew
Betty Anthony Margaret Mark Sandra Emily Olivia Liam Noah Emma Ava Sophia Isabella Mia Lucas
Mateo Santiago Valentina Camila Sofia Alejandro Diego Lucia Carmen Javier Pablo Maria Jose Juan
Luis Ana Guadalupe Wei Fang Li Jing Xiu Ying Hao Lei Jun Mei Hiroshi Yuki Haruto Sakura Kenji
Aiko Takeshi Yumi Minjun Jiwoo Seoyeon Hyun Priya Rahul Aarav Ananya Vikram Deepika Arjun Kavya
Rohan Sneha Ravi Lakshmi Mohammed Ahmed Fatima Aisha Omar Layla Yusuf Zainab Hassan Mariam Ali
Khalid Nour Chinedu Ngozi Oluwaseun Adebayo Amara Kwame Abena Kofi Thandiwe Sipho Wanjiru Baraka
Zawadi Olumide Lars Ingrid Sven Astrid Henrik Freya Klaus Heike Jurgen Ursula Dieter Sabine
Lukas Lena Jonas Hannah Pierre Amelie Louis Chloe Antoine Camille Julien Manon Giuseppe Giulia
Marco Francesca Luca Chiara Piotr Agnieszka Katarzyna Tomasz Dmitri Olga Ivan Natalia Sergei
Anastasia Nguyen Linh Minh Thao Huong Mehmet Ayse Emre Zeynep Elif Burak Joao Beatriz Thiago
Larissa Rafael Gabriela Siobhan Declan Niamh Cormac Aoife Tariq Farah Imran Sana Bilal Noor
Ezra Miriam Avi Yael Tamar Kai Leilani Keanu Malia Aroha Tane Mateus Ines Rui Leonor""")

LAST = _words("""Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White
Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen
Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Wang Zhang
Chen Liu Yang Huang Zhao Wu Zhou Xu Tanaka Suzuki Takahashi Watanabe Yamamoto Nakamura Kim Park
Choi Jung Kang Patel Sharma Singh Kumar Gupta Reddy Iyer Nair Mehta Chatterjee Khan Hussain
Rahman Abdullah Haddad Nasser Mansour Farouk Okafor Adeyemi Okonkwo Mensah Boateng Mwangi Otieno
Nkosi Dlamini Abubakar Bello Eze Muller Schmidt Schneider Fischer Weber Meyer Wagner Becker
Hoffmann Schulz Dubois Moreau Laurent Lefebvre Rossi Russo Ferrari Esposito Bianchi Romano
Kowalski Nowak Wisniewski Ivanov Petrov Smirnova Volkov Tran Pham Hoang Yilmaz Kaya Demir Celik
Silva Santos Oliveira Souza Pereira Costa Almeida Murphy Kelly Byrne Walsh O'Brien O'Connor
Cohen Levi Friedman Andersson Johansson Larsen Hansen Nielsen Jensen Kealoha Ngata Vermeulen
Dekker Jansen Novak Horvat Popescu Papadopoulos Georgiou Fernandes Mendes Ortiz Castillo""")

STREET = _words("""Maple Oak Pine Cedar Elm Birch Willow Walnut Chestnut Spruce Main Park Lake Hill
Church Mill Station Bridge Victoria King Queen Baker Market High Washington Lincoln Jefferson
Madison Franklin Sunset Riverside Meadow Highland Forest Valley Spring Orchard Harbor Grove
Cherry Magnolia Dogwood Hickory Laurel Ridge Prospect Union Liberty Elmwood Greenwood Kingsley
Ashford Sheffield Windsor Cambridge Oxford Clarendon Albert Stanley Warwick Beacon Fairview
Montgomery Hamilton Jackson Grant Monroe Adams Hawthorne Juniper Sycamore Cypress Aspen Canyon
Linden Garden Rose Summit Westfield Eastwood Northgate Southview Brookside Clearwater""")

DE_STREET = _words("""
Haupt Bahnhof Schiller Goethe Linden Berg Garten Kirch Wald Mozart Friedrich Kant
Rosen Schul Dorf Markt Feld Wiesen Sonnen Birken Eichen Buchen Lessing Heine Beethoven Bismarck
Frankfurter Berliner Hamburger Münchner Kölner Ring Tal Burg Mühlen Schloss Post Park Brunnen
Tannen Ahorn Erlen Blumen Hafen Industrie""")

US_SUFFIX = ("Street", "St", "St.", "Avenue", "Ave", "Ave.", "Road", "Rd", "Rd.", "Boulevard",
             "Blvd", "Lane", "Ln", "Drive", "Dr", "Court", "Ct", "Way", "Place", "Pl",
             "Terrace", "Parkway", "Circle", "Highway")
UK_SUFFIX = ("Road", "Street", "Lane", "Close", "Crescent", "Gardens", "Grove", "Mews", "Row",
             "Terrace", "Avenue", "Square", "Walk", "Hill", "Drive", "Way")
DE_SUFFIX = ("straße", "strasse", "str.", "weg", "allee", "platz", "gasse", "ring", "damm")
US_CITIES = ("Springfield", "Portland", "Austin", "Denver", "Columbus", "Madison", "Salem",
             "Fairfield", "Franklin", "Georgetown", "Clinton", "Arlington", "Chicago", "Boston",
             "Seattle", "Oakland", "Tucson", "Raleigh", "San Diego", "New York", "Los Angeles")
STATES = ("IL", "OR", "TX", "CO", "OH", "WI", "MA", "CA", "NY", "WA", "NC", "AZ", "GA", "FL")
UK_CITIES = ("London", "Manchester", "Leeds", "Bristol", "Cardiff", "Glasgow", "Edinburgh",
             "Liverpool", "Oxford", "Brighton", "York", "Belfast", "Sheffield", "Norwich")
DE_CITIES = ("Berlin", "Hamburg", "München", "Köln", "Frankfurt am Main", "Stuttgart",
             "Leipzig", "Dresden", "Bremen", "Hannover", "Nürnberg", "Freiburg", "Bonn")
TITLES = ("Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Mr", "Mrs", "Ms", "Dr", "Herr", "Frau",
          "Mx.", "Sir", "Madame")

PRODUCTS = ("iPhone 15 Pro", "Galaxy S23 Ultra", "Model 3", "Apple Watch", "Jordan 1 Retro",
            "Air Max 90", "Windows 11 Pro", "Ford Mustang", "Lincoln Navigator",
            "Chevrolet Tahoe", "Dodge Charger", "Mercedes Benz", "Louis Vuitton",
            "Tommy Hilfiger", "Ralph Lauren", "Calvin Klein", "Hugo Boss", "Ben & Jerry's",
            "Wells Fargo", "Morgan Stanley", "Goldman Sachs", "Johnson & Johnson",
            "Procter & Gamble", "Marks & Spencer", "Boston Scientific", "Phoenix Contact",
            "Washington Post", "Wall Street Journal", "Dell XPS 13", "ThinkPad X1 Carbon",
            "Surface Laptop", "Kindle Paperwhite", "PlayStation 5", "Nintendo Switch",
            "Victoria's Secret", "Jack Daniel's", "Martha Stewart Living", "Lamborghini Urus",
            "Tesla Model Y", "Santa Fe", "Honda Civic", "Toyota Camry", "Deutsche Bank",
            "Siemens Healthineers", "Zalando Plus", "Paris Saint-Germain", "Manchester United",
            "Oxford University Press", "Cambridge Analytica", "Hamilton Beach", "Hampton Inn",
            "Marriott Bonvoy", "Hilton Honors", "Disney Plus", "Warner Bros", "McDonald's",
            "Wendy's", "Baker Tilly", "Ernst & Young", "Price Waterhouse", "Jackson Hewitt",
            "Franklin Templeton", "Grant Thornton", "Madison Square Garden", "Kingsley Hotel",
            "Park Hyatt", "Station Square Mall", "Lake Tahoe Resort", "Oracle Cloud",
            "Salesforce Einstein", "Amazon Prime", "Google Maps", "Adobe Acrobat")
WORDS = ("Order", "Invoice", "Payment", "Shipping", "Delivery", "Account", "Customer",
         "Support", "Ticket", "Refund", "Status", "Priority", "Thanks", "Please", "Hello",
         "Regards", "Update", "Error", "Warning", "Notice", "Summary", "Team", "Manager",
         "Premium", "Gold", "Platinum", "Express", "Standard", "Returned", "Pending",
         "Approved", "Declined", "Monday", "Friday", "January", "March", "Unfortunately",
         "Meanwhile", "Service", "Internal", "Server", "Gateway", "Checkout", "Cart", "Profile")
HEAD = ("Quarterly", "Report",
        "Release", "Roadmap", "Sprint", "Retro", "Onboarding", "Guide", "Policy", "Security",
        "Incident", "Postmortem", "Marketing", "Sales", "Pipeline", "Forecast", "Draft",
        "Final", "Agenda", "Product", "Launch", "Holiday", "Schedule", "Office", "Closure",
        "Benefits", "Enrollment", "Annual", "Strategy", "Offsite", "Welcome", "Kit")
JSON_NAME_KEYS = ("name", "full_name", "customer", "recipient", "contact", "author",
                  "user", "owner", "assignee", "cardholder", "display_name", "patient")
JSON_OTHER_KEYS = ("product", "product_name", "plan", "company", "brand", "city", "team",
                   "title", "category", "store", "model", "tier")
PLAIN = ("the package arrived damaged", "my card was charged twice",
         "the app crashes on startup", "I cannot reset my password",
         "please cancel the subscription", "the invoice total looks wrong",
         "delivery was two days late", "the discount code did not apply",
         "we need an export of last month", "the login page times out",
         "can you check the status", "the tracking link is broken")
NUMBERED = ("Order {n} Shipped", "{n} Items Returned", "Route {n}", "Terminal {n}",
            "Gate {n}", "Platform {n}", "Chapter {n} Review", "Version {n} Release",
            "Build {n} Failed", "Room {n} Booked", "Flight {n} Delayed", "{n} Main Features",
            "{n} Park Tickets", "Invoice {n} Paid", "{n} King Size Beds", "Level {n} Support")


def _split(items: Sequence[str], held: bool) -> list[str]:
    return [x for i, x in enumerate(items) if (i % 5 == 2) == held]


class _Gen:
    def __init__(self, rng: random.Random, held: bool) -> None:
        self.r = rng
        self.first = _split(FIRST, held)
        self.last = _split(LAST, held)
        self.street = _split(STREET, held)
        self.de = _split(DE_STREET, held)
        self.de_last = False

    def c(self, items: Sequence[str]) -> str:
        return self.r.choice(items)

    def made_up(self) -> str:
        """A pronounceable word that is in no list: teaches shape and context, not lists."""
        onset = ("b", "br", "ch", "d", "f", "g", "h", "j", "k", "kr", "l", "m", "n", "p", "r",
                 "s", "sh", "t", "th", "v", "w", "y", "z", "")
        coda = ("", "", "n", "r", "s", "l", "m", "k", "t", "nd", "sk", "tz")
        out = "".join(self.c(onset) + self.c("aeiouaeiy") for _ in range(self.r.randint(1, 3)))
        return (out + self.c(coda)).capitalize()

    def name(self) -> str:
        r = self.r.random()
        first, last = self.c(self.first), self.c(self.last)
        if self.r.random() < 0.3:
            first = self.made_up()
        if self.r.random() < 0.3:
            last = self.made_up()
        if r < 0.55:
            out = f"{first} {last}"
        elif r < 0.65:
            out = f"{first} {self.c(self.first)} {last}"
        elif r < 0.75:
            out = f"{first} {self.c('ABCDEFGHJKLMNPRSTW')}. {last}"
        elif r < 0.82:
            out = f"{first} {last}-{self.c(self.last)}"
        elif r < 0.9:
            out = first
        else:
            out = last if self.r.random() < 0.5 else f"{first[0]}. {last}"
        if self.r.random() < 0.04:
            out = out.lower()
        elif self.r.random() < 0.03:
            out = out.upper()
        return out

    def street_line(self) -> str:
        self.de_last = False
        r = self.r.random()
        num = str(self.r.choice((self.r.randint(1, 99), self.r.randint(100, 9999))))
        if r < 0.45:
            pre = self.c(("N ", "S ", "E ", "W ", "North ", "West ", "")) if \
                self.r.random() < 0.2 else ""
            base = self.made_up() if self.r.random() < 0.25 else self.c(self.street)
            line = f"{num} {pre}{base} {self.c(US_SUFFIX)}"
            if self.r.random() < 0.25:
                line += self.c((", Apt ", ", Suite ", " Apt ", " #", ", Unit ")) + \
                    str(self.r.randint(1, 40)) + self.c(("", "B", "A"))
            return line
        if r < 0.75:
            base = self.made_up() if self.r.random() < 0.25 else self.c(self.street)
            line = f"{num} {base} {self.c(UK_SUFFIX)}"
            if self.r.random() < 0.2:
                line = f"Flat {self.r.randint(1, 20)}, {line}"
            return line
        self.de_last = True
        base = self.made_up() if self.r.random() < 0.25 else self.c(self.de)
        suffix = self.c(DE_SUFFIX)
        if self.r.random() < 0.15:
            return f"Am {base}{self.c(('berg', 'markt', 'hof'))} {self.r.randint(1, 80)}"
        sep = "-" if self.r.random() < 0.1 else ""
        street = f"{base}{sep}{suffix.capitalize() if sep else suffix}"
        return f"{street} {self.r.randint(1, 150)}{self.c(('', '', 'a', 'b'))}"

    def address(self) -> str:
        line = self.street_line()
        r = self.r.random()
        if r < 0.35:
            return line
        if self.de_last:
            return f"{line}, {self.r.randint(10000, 99999)} {self.c(DE_CITIES)}"
        if r < 0.7:
            return (f"{line}, {self.c(US_CITIES)}, {self.c(STATES)} "
                    f"{self.r.randint(10000, 99999)}")
        pc = (f"{self.c('ENSWBMLG')}{self.c('WC1234')}{self.r.randint(1, 20)} "
              f"{self.r.randint(1, 9)}{self.c('ABDEFGHJ')}{self.c('LNPQRSTUWXYZ')}")
        return f"{line}, {self.c(UK_CITIES)} {pc}"

    def negative(self) -> str:
        r = self.r.random()
        if r < 0.35:
            return self.c(PRODUCTS)
        if r < 0.55:
            return self.c(NUMBERED).format(n=self.r.randint(1, 9999))
        if r < 0.7:
            return self.c(US_CITIES + UK_CITIES + DE_CITIES)
        if r < 0.85:
            return " ".join(self.c(WORDS) for _ in range(self.r.randint(1, 3)))
        return self.c(PLAIN)

    def money(self) -> str:
        amount = f"{self.r.randint(1, 9999)}{self.c(('.', ','))}{self.r.randint(0, 99):02d}"
        cur = self.c(("EUR", "USD", "GBP", "CHF", "JPY", "$", "€", "£"))
        return f"{cur}{amount}" if cur in "$€£" else f"{amount} {cur}"

    def headline(self) -> str:
        words = [self.c(WORDS + HEAD) for _ in range(self.r.randint(2, 6))]
        if len(words) > 2 and self.r.random() < 0.5:
            words.insert(self.r.randint(1, len(words) - 1), self.c(("and", "for", "of", "&")))
        return " ".join(words)


# Templates: {N} a name, {A} an address, {X} a negative, {n} a number, {T} a title.
TEMPLATES = (
    "Hi, my name is {N} and I live at {A}.",
    "Customer {N} reported that {X} stopped working.",
    "Please ship the {X} to {A} by Friday.",
    "Dear {N},\nthank you for your order of the {X}.",
    "Thanks {N}! We updated the delivery address to {A}.",
    '{"customer": "{N}", "shipping_address": "{A}", "item": "{X}"}',
    '{"id": {n}, "note": "call {N} before delivery", "status": "pending"}',
    'INFO order={n} recipient="{N}" ship_to="{A}" sku="{X}"',
    "WARN payment declined for {N} (order {n}), product {X}",
    "{T} {N} moved from {A} to {A}.",
    "Ticket #{n}: {X}. Reporter: {N}",
    "Regards,\n{N}\n{A}",
    "cc: {N}; {N}",
    "Assigned to {N}. {X} is back in stock.",
    "Billing address: {A}\nName on card: {N}",
    "{X} sales rose in {X} after the {X} campaign.",
    "Order {n} Shipped via {X}. Tracking available in the app.",
    "{X}. {X}! Please contact support.",
    "The {X} store on {A} is closed today.",
    "Meeting with {T} {N} at {X}, room {n}.",
    "{N} wrote: {P}",
    "{P}. Regards, {N}",
    "Unfortunately {P}. Could someone from {X} look at it?",
    "GET /api/orders/{n} 200 {n}ms user_agent=\"{X}\"",
    "ERROR {X} timeout after {n} ms (retry {n})",
    "Sent by {N} from {X}",
    "Hello team, {N} and {N} will join the {X} review.",
    "{N}, {A}",
    "Return label for {N}: {A}",
    "Please update my address to {A}. Thanks, {N}",
    "{X} {n} reviewed by {T} {N}.",
    "Visit us at {A} or call the {X} hotline.",
    "Delivered to {A} and signed for by {N}.",
    "{X} partners with {X} on {X}",
    "Status: {X}. Next step: {P}.",
    "contact_name={N}&street={A}&plan={X}",
    "{N} ({X}) approved the refund of {n} EUR.",
    "We could not deliver to {A}; {P}.",
    "Dear {T} {N},\nyour {X} order has been renewed.",
    "Hi {N},\nplease find attached the {H}.",
    "{H}",
    "{H}: {H}",
    "{H}\n{P}.",
    "Subject: {H}",
    '{"{K}": "{N}", "{O}": "{X}"}',
    '{"{O}": "{X}", "{K}": "{N}", "total": {n}}',
    '{"{O}": "{X}", "{O}": "{X}", "id": {n}}',
    '"{K}":"{N}","address":"{A}"',
    "Could {N} get back to me regarding the {X}?",
    "I spoke with {N} yesterday about {P}.",
    "Please tell {N} that {P}.",
    "Chargeback reviewed by {N} on ticket {n}.",
    "{N} called about the {X} and {P}.",
    "Ask {N} to review the {H}.",
    "DEBUG session started user_name={N} cart={n}",
    "Big sale: {X} now {n} USD.",
    "{X} opens a new flagship in {X}.",
    "Your {X} ({n} GB) ships in {n} days.",
    "I had lunch with {N} and {N} after the {X} launch.",
    "Switch the account owner to {N}.",
    "Statement for {N} mailed to {A}.",
    "Courier will drop it at {A} tomorrow morning.",
    "Thanks,\n{N}",
    "Best,\n{N}\n{H}",
    "Hi there, {P}. Amount charged: {M}.",
    "Hello everyone, the {X} invoice of {M} is overdue.",
    "Hey all,\n{P}.",
    "paid={M} buyer={N} sku={n}",
    "{X} subscription renewed for {M} on {X} {n}.",
    "Balance due: {M}; contact {N} with questions.",
)


def generate(seed: int, n: int, split: str = "train") -> list[Example]:
    """``n`` labelled examples; ``split`` is ``"train"`` or ``"heldout"`` (disjoint names)."""
    rng = random.Random(f"{seed}/{split}")
    g = _Gen(rng, split == "heldout")
    out: list[Example] = []
    for _ in range(n):
        parts: list[str] = []
        spans: list[tuple[int, int, str]] = []
        pos = 0
        tpl = rng.choice(TEMPLATES)
        i = 0
        while i < len(tpl):
            if tpl[i] == "{" and tpl[i + 2: i + 3] == "}":
                key = tpl[i + 1]
                if key == "N":
                    piece, label = g.name(), "PER"
                elif key == "A":
                    piece, label = g.address(), "ADDR"
                elif key == "X":
                    piece, label = g.negative(), ""
                elif key == "P":
                    piece, label = g.c(PLAIN), ""
                elif key == "T":
                    piece, label = g.c(TITLES), ""
                elif key == "M":
                    piece, label = g.money(), ""
                elif key == "H":
                    piece, label = g.headline(), ""
                elif key == "K":
                    piece, label = g.c(JSON_NAME_KEYS), ""
                elif key == "O":
                    piece, label = g.c(JSON_OTHER_KEYS), ""
                else:
                    piece, label = str(rng.randint(1, 99999)), ""
                if label:  # a closing "." (as in "St.") is not part of the span
                    spans.append((pos, pos + len(piece.rstrip(".")), label))
                parts.append(piece)
                pos += len(piece)
                i += 3
            else:
                parts.append(tpl[i])
                pos += 1
                i += 1
        out.append(("".join(parts), spans))
    return out


def bio(text: str, spans: Sequence[tuple[int, int, str]]) -> tuple[list[tuple[int, int, str]],
                                                                     list[str]]:
    toks = tokenize(text)
    tags = ["O"] * len(toks)
    for s, e, label in spans:
        inside = [k for k, t in enumerate(toks) if t[0] >= s and t[1] <= e]
        for j, k in enumerate(inside):
            tags[k] = ("B-" if j == 0 else "I-") + label
    return toks, tags


_LEXICAL = ("w=", "p3=", "x2=", "x3=", "x4=", "gF", "pn=")


def english_vocabulary() -> frozenset[str]:
    """Lowercase English dictionary words: the public-domain ``web2`` list (Webster's Second
    International, 1934) from the ``english-words`` package, a training-time dependency
    (``pip install english-words==2.0.2``). Capitalised entries (proper names) are left out.
    The package's other list, GCIDE, is GPL and deliberately not used: the words ship inside
    the model file."""
    try:
        words_module = importlib.import_module("english_words")
    except ImportError as e:
        raise SystemExit("training needs the word lists: pip install english-words==2.0.2") \
            from e
    web2: set[str] = words_module.get_english_words_set(["web2"], lower=False, alpha=True)
    words = {w for w in web2 if w.islower()}
    return frozenset(w for w in words if 2 <= len(w) <= 16)


def train(examples: Sequence[Example], *, epochs: int = 8, seed: int = 7,
          min_weight: float = 0.05, dropout: float = 0.5,
          vocabulary: frozenset[str] = frozenset()) -> Tagger:
    """Averaged perceptron, greedy decoding with its own predicted history.

    With probability ``dropout`` a token's lexical features (its form, affixes, gazetteer hit)
    are hidden for an update, so the model learns context and shape too and does not merely
    memorise the names and streets it was shown.
    """
    first = sorted({n for n in _split(FIRST, False)})
    streets = sorted({*US_SUFFIX, *UK_SUFFIX, *(s.rstrip(".") for s in US_SUFFIX)})
    tagger = Tagger({}, first_names=first, street_words=streets, vocabulary=vocabulary)
    ntags = len(TAGS)
    index = {t: k for k, t in enumerate(TAGS)}
    w: dict[str, list[float]] = {}
    totals: dict[str, list[float]] = {}
    stamps: dict[str, list[int]] = {}
    step = 0
    data = [(bio(text, spans), text) for text, spans in examples]
    feats = [tagger.token_features(toks, text) for (toks, _), text in data]
    order = list(range(len(data)))
    rng = random.Random(seed)

    def update(name: str, k: int, delta: float) -> None:
        ws = w.get(name)
        if ws is None:
            ws = w[name] = [0.0] * ntags
            totals[name] = [0.0] * ntags
            stamps[name] = [0] * ntags
        totals[name][k] += (step - stamps[name][k]) * ws[k]
        stamps[name][k] = step
        ws[k] += delta

    for _ in range(epochs):
        rng.shuffle(order)
        for idx in order:
            (toks, gold), _text = data[idx]
            p1, p2 = "<s>", "<s>"
            for i, f in enumerate(feats[idx]):
                step += 1
                hist = Tagger.history(p1, p2, toks[i][2].lower())
                if rng.random() < dropout:
                    names = (*(x for x in f if not x.startswith(_LEXICAL)), *hist[:2])
                else:
                    names = (*f, *hist)
                scores = [0.0] * ntags
                for name in names:
                    ws = w.get(name)
                    if ws is not None:
                        for k in range(ntags):
                            scores[k] += ws[k]
                guess = max(range(ntags), key=scores.__getitem__)
                truth = index[gold[i]]
                if guess != truth:
                    for name in names:
                        update(name, truth, 1.0)
                        update(name, guess, -1.0)
                p2, p1 = p1, TAGS[guess]
    averaged: dict[str, tuple[float, ...]] = {}
    for name, ws in w.items():
        avg = tuple(round((totals[name][k] + (step - stamps[name][k]) * ws[k]) / step, 3)
                    for k in range(ntags))
        if max(abs(x) for x in avg) >= min_weight:
            averaged[name] = avg
    tagger.weights = dict(averaged)
    return tagger


def evaluate(tagger: Tagger, examples: Sequence[Example]) -> dict[str, dict[str, float]]:
    """Exact-match span precision / recall / F1, per label and overall."""
    counts: dict[str, list[int]] = {"PER": [0, 0, 0], "ADDR": [0, 0, 0]}  # tp, pred, gold
    for text, gold in examples:
        pred = set(tagger.entities(text))
        want = set(gold)
        for label, c in counts.items():
            p = {x for x in pred if x[2] == label}
            g = {x for x in want if x[2] == label}
            c[0] += len(p & g)
            c[1] += len(p)
            c[2] += len(g)
    counts["all"] = [sum(c[k] for c in list(counts.values())) for k in range(3)]
    out = {}
    for label, (tp, npred, ngold) in counts.items():
        prec = tp / npred if npred else 1.0
        rec = tp / ngold if ngold else 1.0
        out[label] = {"precision": round(prec, 4), "recall": round(rec, 4),
                      "f1": round(2 * prec * rec / (prec + rec) if prec + rec else 0.0, 4),
                      "gold": ngold}
    return out


SEED = 20260501
TRAIN_SIZE = 12000
HELDOUT_SIZE = 1500


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m piimw.discover.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--size", type=int, default=TRAIN_SIZE)
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tagger = train(generate(args.seed, args.size), epochs=args.epochs,
                   vocabulary=english_vocabulary())
    heldout = evaluate(tagger, generate(args.seed, HELDOUT_SIZE, "heldout"))
    tagger.meta = {"seed": args.seed, "train_examples": args.size, "epochs": args.epochs,
                   "heldout": heldout, "features": len(tagger.weights)}
    tagger.save(args.out)
    print(f"trained in {time.perf_counter() - t0:.1f}s: {len(tagger.weights)} features, "
          f"{args.out.stat().st_size} bytes -> {args.out}", file=sys.stderr)
    for label, m in heldout.items():
        print(f"held-out {label:<4} P={m['precision']:.3f} R={m['recall']:.3f} "
              f"F1={m['f1']:.3f} (n={m['gold']:.0f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
