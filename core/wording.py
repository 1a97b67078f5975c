"""How counts are written on every page: thousands separators and the right plural."""
from __future__ import annotations


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``n`` and its noun, singular for exactly one, with thousands separators.

    ``nouns`` is the plural when it is not ``noun + "s"``.

    >>> plural(1, "test image"), plural(60000, "image"), plural(0, "epoch")
    ('1 test image', '60,000 images', '0 epochs')
    >>> plural(2, "class", "classes")
    '2 classes'
    """
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def span(values: list[int], unit: str) -> str:
    """The range of some counts in words, e.g. the presets' parameter counts.

    >>> span([34826, 2854, 331754], "parameters")
    '2,854 to 331,754 parameters'
    """
    return f"{min(values):,} to {max(values):,} {unit}"


DOT_LEADER = "\u2024"    # looks like '.', but markdown never reads it as part of a URL


def plain(text: str, limit: int = 48) -> str:
    """A user's name made safe for a markdown element (captions, alerts, labels): letters,
    digits, spaces, '-' and '_' kept; a '.' shown as the look-alike one-dot leader, so
    "digit.png" still reads as its name but no "www.x.com" becomes a link; anything else
    (brackets, ':', '/', controls) shown as '?', so no link or image; at most ``limit``
    characters.

    >>> plain("my net_2"), plain("[x](https://evil.example)")
    ('my net_2', '?x??https???evil\u2024example?')
    >>> plain("digit.png") == "digit" + DOT_LEADER + "png"
    True
    >>> plain("A" * 60, limit=5)
    'AAAAA…'
    """
    clean = "".join(c if c.isalnum() or c in " -_" else DOT_LEADER if c == "." else "?"
                    for c in str(text)[:limit])
    return clean + ("…" if len(str(text)) > limit else "")
