"""The one count-label rule: class names ↔ item counts, and which class a recorded quantity belongs to.

Classes are named by the count they stand for, ``"0"``..``"K"``; an optional last overflow class ``"{K+1}+"`` holds
that many items or more. A quantity falls in the class of the same count, or in the overflow class when it is larger;
any other quantity has no class. Standard library only: it ships next to the endpoint's handler in ``model.tar.gz``
(``code/core/labels.py``) and into the SageMaker training bundle, where nothing else of the project is installed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

OVERFLOW = "+"
_NAME = re.compile(r"[0-9]+\+?")
NAME_RULE = "class names must be counts like '3' or '5+'"


def is_overflow(label: str) -> bool:
    """Whether ``label`` is an overflow class ("5+": five or more)."""
    return label.endswith(OVERFLOW)


def count_of(label: str) -> int:
    """The count a class name stands for: "3" → 3, overflow "5+" → 5. ValueError for any other name."""
    if not _NAME.fullmatch(label):
        raise ValueError(f"{NAME_RULE}, got {label!r}")
    return int(label.removesuffix(OVERFLOW))


def counts_of(labels: Sequence[str]) -> list[int]:
    """The count of every class name, checked: ValueError (naming all of them) unless every name is a count and
    only the last one is an overflow class."""
    labels = [str(label) for label in labels]
    valid = bool(labels) and all(_NAME.fullmatch(label) for label in labels)
    if not valid or any(is_overflow(label) for label in labels[:-1]):
        raise ValueError(f"{NAME_RULE}, got {labels}")
    return [count_of(label) for label in labels]


def class_of(quantity: int, labels: Sequence[str]) -> int | None:
    """Index of the class that holds ``quantity`` items ("K+" holds K and more), or None when no class does."""
    for index, label in enumerate(labels):
        count = count_of(label)
        if quantity == count or (is_overflow(label) and quantity > count):
            return index
    return None


def label_names(max_count: int, overflow: bool = False, min_count: int = 0) -> list[str]:
    """Class names "min".."max", plus "{max+1}+" with ``overflow``: label_names(4, True) is ["0", .., "4", "5+"]."""
    names = [str(count) for count in range(min_count, max_count + 1)]
    if overflow:
        names.append(f"{max_count + 1}{OVERFLOW}")
    return names


@dataclass(frozen=True)
class LabelSpace:
    """Which counts become classes: ``min_count..max_count``, optionally with a last ``"{max+1}+"`` overflow class.

    ``max_count < 0`` means no upper limit ("hard": every count is its own class, up to the largest one seen).
    """

    min_count: int = 0
    max_count: int = 5
    overflow_bucket: bool = False

    def label_of(self, count: int) -> int | None:
        """Class id for a count, or None when the count is outside the selection."""
        if count < self.min_count:
            return None
        if 0 <= self.max_count < count:
            if self.overflow_bucket:
                return self.max_count + 1 - self.min_count
            return None
        return count - self.min_count

    def names(self, largest_label: int) -> list[str]:
        """ClassLabel names "min".."max" (and "max+1+"); ``largest_label`` sizes the open-ended "hard" space."""
        if self.max_count < 0:
            return label_names(self.min_count + largest_label, min_count=self.min_count)
        return label_names(self.max_count, self.overflow_bucket, self.min_count)
