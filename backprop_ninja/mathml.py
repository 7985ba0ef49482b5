"""TeX to MathML at build time, so that a page shows its math with no script and no network.

latex2mathml does the conversion; its output is then rebuilt from a short list of MathML elements and presentation
attributes, with every text escaped: it copies `\\text{...}` verbatim and turns `\\href`, `\\style` and `\\class` into
attributes, so TeX from anyone else could otherwise smuggle in markup or a link. Anything it cannot convert is shown
as its TeX source, escaped. Browsers render MathML Core natively (Chromium 109+, Firefox, Safari).
"""
from __future__ import annotations

import html
import xml.etree.ElementTree as ElementTree

from latex2mathml.converter import convert

MATHML = "http://www.w3.org/1998/Math/MathML"
ELEMENTS = {"math", "mrow", "mi", "mn", "mo", "mtext", "mspace", "ms", "mfrac", "msqrt", "mroot", "msub", "msup",
            "msubsup", "munder", "mover", "munderover", "mtable", "mtr", "mtd", "mstyle", "mpadded", "mphantom",
            "menclose", "merror", "mmultiscripts", "mprescripts", "none", "semantics", "annotation"}
ATTRIBUTES = {"display", "mathvariant", "stretchy", "fence", "separator", "accent", "accentunder", "largeop",
              "movablelimits", "symmetric", "lspace", "rspace", "width", "height", "depth", "linethickness",
              "displaystyle", "scriptlevel", "columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines",
              "rowlines", "frame", "notation", "form", "minsize", "maxsize", "mathsize", "encoding"}


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """`tex` as a <math> element safe to put in a page; on failure, the TeX itself in <code class="tex">."""
    try:
        tree = ElementTree.fromstring(convert(tex, display="block" if display else "inline"))
    except Exception:  # latex2mathml raises its own errors and plain ones on TeX it does not know
        return f'<code class="tex">{html.escape(tex)}</code>'
    return _rebuild(tree)


def _rebuild(element: ElementTree.Element) -> str:
    """The element written again from the allowed names and attributes only, its text escaped."""
    name = element.tag.rsplit("}", 1)[-1]
    inner = html.escape(element.text or "", quote=False) + "".join(
        _rebuild(child) + html.escape(child.tail or "", quote=False) for child in element)
    if name not in ELEMENTS:
        return inner  # an element we do not know: keep what it shows, not the element
    attributes = "".join(f' {key}="{html.escape(value)}"' for key, value in sorted(element.attrib.items())
                         if key in ATTRIBUTES)
    if name == "math":
        attributes = f' xmlns="{MATHML}"' + attributes
    return f"<{name}{attributes}>{inner}</{name}>"
