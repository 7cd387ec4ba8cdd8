"""Salesforce record ids: the one rule for the 15- and 18-character forms (stdlib only).

A record id is 15 case-sensitive ASCII letters and digits (``001D000000IRFma``), or those 15
followed by a 3-character suffix that makes it safe for case-insensitive systems
(``001D000000IRFmaIAH``). Each suffix character encodes one block of 5 characters: bit *i* is set
when the block's *i*-th character is an uppercase letter, and the 5-bit value indexes
``ABCDEFGHIJKLMNOPQRSTUVWXYZ012345`` (0 → ``A``, 25 → ``Z``, 26 → ``0``, 31 → ``5``). The
suffix records case only — every lowercase-and-digit id ends ``AAA`` — so it is no checksum of
the letters themselves.

How this module treats an 18-character id (the extractor, the loader and the config check all
follow it):

- the suffix is compared without regard to case: its alphabet has no lowercase letters, so a
  suffix lowered by a case-insensitive tool (``…IRFmaiah``) carries the same information and is
  accepted; the canonical form returned always has the uppercase suffix;
- a suffix that does not describe the case of the first 15 characters (``…IRFmaAAA``, or a body
  whose case was changed, ``001d000000irfmaIAH``) is refused: the id was mistyped or mangled, and
  guessing which record was meant could read or write the wrong account. The mapping check
  then names the id that was probably meant (:func:`id_hint`): the suffix restores the case of
  a lower-cased id, and a wrong suffix is answered with the right one — for a person to confirm.
"""

from __future__ import annotations

SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
ID15_LENGTH = 15
ID18_LENGTH = 18
_BLOCK = 5
_FEW = 2  # letters in the wrong case that still read as a typo rather than another id
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


class InvalidSalesforceId(ValueError):
    """Not a 15- or 18-character Salesforce id; the message says why (never echoes the value)."""


def checksum_suffix(id15: str) -> str:
    """The 3-character suffix of a 15-character id (its first 15 characters are used)."""
    suffix = ""
    for start in range(0, ID15_LENGTH, _BLOCK):
        block = id15[start : start + _BLOCK]
        bits = sum(1 << i for i, ch in enumerate(block) if "A" <= ch <= "Z")
        suffix += SUFFIX_ALPHABET[bits]
    return suffix


def id_problem(value: object) -> str | None:
    """Why ``value`` is not a Salesforce id, or None when it is one."""
    if not isinstance(value, str):
        return "not a string"
    if len(value) not in (ID15_LENGTH, ID18_LENGTH):
        return f"{len(value)} characters (a Salesforce id has 15 or 18)"
    if not _ALNUM.issuperset(value):
        return "characters other than ASCII letters and digits"
    if len(value) == ID18_LENGTH:
        expected = checksum_suffix(value)
        if value[ID15_LENGTH:].upper() != expected:
            return (
                f"suffix {value[ID15_LENGTH:]!r} does not match the case of the first 15 "
                f"characters (expected {expected!r})"
            )
    return None


def recased(value: str) -> str | None:
    """The 18-character id whose first 15 characters have the case ``value``'s suffix describes.

    The suffix stores, for each character, whether it is an uppercase letter; so when an id's
    case was lost (lower-cased by a spreadsheet or a case-insensitive system), the suffix gives it
    back. None when ``value`` is no 18-character id shape or its suffix marks a digit as a capital
    (then it cannot describe these 15 characters).
    """
    if len(value) != ID18_LENGTH or not _ALNUM.issuperset(value):
        return None
    suffix = value[ID15_LENGTH:].upper()
    body = []
    for block, code in enumerate(suffix):
        bits = SUFFIX_ALPHABET.find(code)
        if bits < 0:
            return None
        for i, ch in enumerate(value[block * _BLOCK : (block + 1) * _BLOCK]):
            if bits >> i & 1:
                if not ch.isalpha():
                    return None
                body.append(ch.upper())
            else:
                body.append(ch.lower())
    return "".join(body) + suffix


def id_hint(value: str) -> str | None:
    """For an 18-character id whose suffix does not match: the id that was probably meant.

    When the first 15 characters have no capitals and the suffix says some should, their case
    was lost and the suffix restores it; otherwise the suffix is wrong for the case as written
    ("checksum should be …"), and the id the suffix describes is offered as the other reading.
    None for anything else (a wrong length or character says nothing about the intended id).
    """
    if len(value) != ID18_LENGTH or not _ALNUM.issuperset(value):
        return None
    body, suffix = value[:ID15_LENGTH], value[ID15_LENGTH:].upper()
    expected = checksum_suffix(body)
    if suffix == expected:
        return None
    restored = recased(value)
    if restored is not None and body == body.lower():
        return (
            f"its first 15 characters have no capitals, but the suffix {suffix!r} says which "
            f"should (the case was lost, e.g. lower-cased): did you mean {restored!r}?"
        )
    hint = f"checksum should be {expected!r}: did you mean {body + expected!r}?"
    changed = sum(a != b for a, b in zip(body, (restored or body)[:ID15_LENGTH], strict=True))
    if 0 < changed <= _FEW:  # one or two letters typed in the wrong case: the suffix knows
        hint += f" (or {restored!r}, the case its suffix describes, if a letter's case changed)"
    return hint


def salesforce_id18(value: str) -> str:
    """The canonical 18-character form of a 15- or 18-character id; InvalidSalesforceId if not."""
    problem = id_problem(value)
    if problem is not None:
        raise InvalidSalesforceId(f"not a Salesforce id: {problem}")
    return value[:ID15_LENGTH] + checksum_suffix(value)


def salesforce_id18_or_none(value: str) -> str | None:
    """Like :func:`salesforce_id18`, but None for a value that is not an id."""
    return None if id_problem(value) is not None else value[:ID15_LENGTH] + checksum_suffix(value)


def is_salesforce_id(value: object) -> bool:
    """Whether ``value`` is a valid 15- or 18-character id (suffix checked)."""
    return id_problem(value) is None
