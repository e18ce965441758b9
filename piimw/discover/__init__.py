"""Discovery: machine-learning detection of names and addresses, off the request path.

* :class:`NERDetector` is the protocol any NER engine plugs into (``name``, ``find(text)``).
* :class:`TaggerDetector` runs the small tagger piimw trains and ships
  (``piimw/data/ner_model.json.gz``; pure Python, no extra dependency).
* :class:`~piimw.discover.presidio.PresidioDetector` adapts Microsoft Presidio
  (``pip install 'piimw[presidio]'``; imported lazily).
* :class:`DiscoverySampler` inspects a sample of traffic in a background thread and feeds
  ``discovery`` records into the audit trail, from which ``piimw map`` and ``suggest`` read
  undeclared personal data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from piimw.discover.protocol import ADDRESS, LABEL_CATEGORIES, NAME, NERDetector
from piimw.discover.sampler import DiscoverySampler
from piimw.discover.tagger import Tagger, TaggerDetector, default_tagger

if TYPE_CHECKING:
    from piimw.discover.presidio import PresidioDetector

__all__ = [
    "ADDRESS",
    "LABEL_CATEGORIES",
    "NAME",
    "DiscoverySampler",
    "NERDetector",
    "PresidioDetector",
    "Tagger",
    "TaggerDetector",
    "default_tagger",
]


def __getattr__(name: str) -> Any:
    if name == "PresidioDetector":  # keep presidio out of the import of piimw.discover
        from piimw.discover.presidio import PresidioDetector

        return PresidioDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
