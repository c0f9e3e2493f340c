"""Search terms as people type them: stripped, and short enough to be a search."""

from __future__ import annotations

from spoonfeeder.errors import ValidationError

# SQLite refuses a LIKE pattern past 50,000 bytes, and no one searches with a page of text.
MAX_TERM_CHARS = 500


def search_term(text: str | None, *, field: str = "search") -> str:
    """`text` without surrounding blanks ("" for none); ValidationError when too long."""
    term = (text or "").strip()
    if len(term) > MAX_TERM_CHARS:
        raise ValidationError(
            f"Search: at most {MAX_TERM_CHARS} characters, got {len(term):,}", field
        )
    return term
