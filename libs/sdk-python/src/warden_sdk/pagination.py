"""Walking `page_token` / `next_page_token` listings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ._model import WardenPage

T = TypeVar("T")


class Paginator(Generic[T]):
    """Every item of a listing, fetching pages lazily as the iteration goes: breaking out of a
    `for` loop stops fetching. Each new iteration starts again from the first page.
    `pages()` walks the pages themselves (each has `next_page_token`)."""

    def __init__(self, fetch_page: Callable[[str | None], WardenPage[T]]) -> None:
        self._fetch_page = fetch_page

    def pages(self) -> Iterator[WardenPage[T]]:
        token: str | None = None
        while True:
            page = self._fetch_page(token)
            yield page
            following: str | None = getattr(page, "next_page_token", None)
            # A server that hands back the token it was given would loop forever: that is the end.
            if following is None or following == token:
                return
            token = following

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page
