"""Parse rendered reports with the standard library's html.parser, as a reader's tools would."""

from __future__ import annotations

from html.parser import HTMLParser


class Page(HTMLParser):
    """Start tags (with attributes), text, element ids in order, and table rows' classes and
    texts."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.ids: list[str] = []
        self.rows: list[tuple[str, list[str]]] = []
        self._row: list[str] | None = None
        self._row_class = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
        if tag == "tr":
            self._row, self._row_class = [], str(attributes.get("class") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append((self._row_class, self._row))
            self._row = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._row is not None and data.strip():
            self._row.append(data.strip())

    @property
    def text(self) -> str:
        """All text, whitespace-collapsed."""
        return " ".join(" ".join(self.texts).split())

    def rows_after(self, element_id: str, before: str | None = None) -> list[tuple[str, str]]:
        """Rows (class, text) of the tables between element ``element_id`` and ``before``."""
        html_order = [t for t in self.tags if t[0] == "tr" or t[1].get("id")]
        rows, index, inside = [], 0, False
        for tag, attributes in html_order:
            if attributes.get("id") == element_id:
                inside = True
            elif before is not None and attributes.get("id") == before:
                break
            if tag == "tr":
                if inside:
                    cls, texts = self.rows[index]
                    rows.append((cls, " ".join(texts)))
                index += 1
        return rows
