"""A tiny document model rendered to both Markdown and HTML, so the two pages say the same."""

import html
import re


class Doc:
    def __init__(self, title):
        self.title = title
        self.blocks = []
        self._anchors = set()

    def anchor(self, text):
        # GitHub's rule, so that links work in the rendered report.md too.
        base = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-") or "section"
        a, i = base, 2
        while a in self._anchors:
            a = "%s-%d" % (base, i)
            i += 1
        self._anchors.add(a)
        return a

    def h(self, level, text):
        a = self.anchor(text)
        self.blocks.append(("h", level, text, a))
        return a

    def toc(self):
        """A list of links to the level-2 sections, filled in when rendered."""
        self.blocks.append(("toc",))

    def _resolved(self):
        links = ["[%s](#%s)" % (b[2], b[3]) for b in self.blocks if b[0] == "h" and b[1] == 2]
        return [("ul", links) if b[0] == "toc" else b for b in self.blocks]

    def p(self, text):
        """A paragraph; `code` spans and [text](#anchor) links are the only markup."""
        self.blocks.append(("p", text))

    def items(self, items):
        self.blocks.append(("ul", list(items)))

    def table(self, headers, rows, faded=None, align=None):
        """faded: per row, whether to draw it faded (HTML) / mark it (Markdown already says so)."""
        self.blocks.append(("table", list(headers), [list(r) for r in rows],
                            list(faded) if faded else [False] * len(rows), align))

    def image(self, png, svg, alt):
        """A PNG figure, linked to its SVG when there is one (svg may be None)."""
        self.blocks.append(("img", png, svg, alt))

    def pre(self, text):
        self.blocks.append(("pre", text))

    # Markdown ---------------------------------------------------------------------------------
    def markdown(self):
        out = ["# " + self.title, ""]
        for b in self._resolved():
            kind = b[0]
            if kind == "h":
                out += ["#" * b[1] + " " + b[2], ""]
            elif kind == "p":
                out += [b[1], ""]
            elif kind == "ul":
                out += ["- " + it for it in b[1]] + [""]
            elif kind == "table":
                headers, rows = b[1], b[2]
                out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
                aligns = b[4] or ["l"] * len(headers)
                out.append("|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|")
                for r in rows:
                    out.append("| " + " | ".join(_md_cell(c) for c in r) + " |")
                out.append("")
            elif kind == "img":
                svg = " ([SVG](%s))" % b[2] if b[2] else ""
                out += ["![%s](%s)%s" % (b[3], b[1], svg), ""]
            elif kind == "pre":
                out += ["```", b[1], "```", ""]
        return "\n".join(out).rstrip() + "\n"

    # HTML -------------------------------------------------------------------------------------
    def html(self):
        out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
               "<title>%s</title>" % html.escape(self.title), "<style>", _CSS, "</style>",
               "</head><body>", "<h1>%s</h1>" % html.escape(self.title)]
        for b in self._resolved():
            kind = b[0]
            if kind == "h":
                out.append("<h%d id=\"%s\">%s</h%d>" % (b[1], b[3], html.escape(b[2]), b[1]))
            elif kind == "p":
                out.append("<p>%s</p>" % _inline_html(b[1]))
            elif kind == "ul":
                out.append("<ul>" + "".join("<li>%s</li>" % _inline_html(i) for i in b[1])
                           + "</ul>")
            elif kind == "table":
                headers, rows, faded, aligns = b[1], b[2], b[3], b[4]
                aligns = aligns or ["l"] * len(headers)
                out.append("<table><thead><tr>" + "".join(
                    "<th>%s</th>" % _inline_html(str(h)) for h in headers) + "</tr></thead><tbody>")
                for r, f in zip(rows, faded):
                    cells = "".join("<td%s>%s</td>" % (" class=\"num\"" if a == "r" else "",
                                                       _inline_html(str(c)))
                                    for c, a in zip(r, aligns))
                    out.append("<tr%s>%s</tr>" % (" class=\"faded\"" if f else "", cells))
                out.append("</tbody></table>")
            elif kind == "img":
                link = html.escape(b[2] or b[1])
                svg = " (<a href=\"%s\">SVG</a>)" % html.escape(b[2]) if b[2] else ""
                out.append("<figure><a href=\"%s\"><img src=\"%s\" alt=\"%s\"></a>"
                           "<figcaption>%s%s</figcaption></figure>"
                           % (link, html.escape(b[1]), html.escape(b[3]), html.escape(b[3]), svg))
            elif kind == "pre":
                out.append("<pre>%s</pre>" % html.escape(b[1]))
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _md_cell(c):
    return str(c).replace("|", "\\|").replace("\n", " ")


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")


def _inline_html(text):
    # Escape first, then turn `code` and [text](target) back into markup.
    s = html.escape(str(text), quote=False)
    s = _CODE.sub(lambda m: "<code>%s</code>" % m.group(1), s)
    s = _LINK.sub(lambda m: "<a href=\"%s\">%s</a>" % (m.group(2).replace("\"", "%22"),
                                                      m.group(1)), s)
    return s


_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto;
       max-width: 1250px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.86em; }
th, td { border: 1px solid #ccc; padding: 0.22em 0.5em; vertical-align: top; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.faded td { color: #999; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f4f4f4; padding: 0 0.2em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
"""
