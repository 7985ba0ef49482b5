"""nbgrader's feedback HTML with its math rendered at build time: readable offline, with no script from a CDN.

nbgrader's feedback template calls nbconvert's MathJax macro without an argument, so the page always loads MathJax
from cdnjs (`c.HTMLExporter.mathjax_url` is not used there); offline, students see raw TeX. This exporter, set as
`c.GenerateFeedback.exporter_class` in nbgrader_config.py, turns each formula of the Markdown cells into MathML
(backprop_ninja/mathml.py) while rendering, and takes the MathJax loader out of the page.
"""
from __future__ import annotations

import re

from jinja2 import pass_context
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

from backprop_ninja.mathml import tex_to_mathml

# The block nbconvert's mathjax.html.j2 macro writes: the loader script and its configuration.
MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


class MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, writing MathML where it would leave TeX for MathJax."""

    def inline_math(self, body: str) -> str:
        return tex_to_mathml(body, display=False)

    def block_math(self, body: str) -> str:
        return tex_to_mathml(body, display=True)

    def latex_environment(self, name: str, body: str) -> str:
        return tex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)


class OfflineMathFeedback(HTMLExporter):
    """HTMLExporter (nbgrader's feedback template and settings apply as before) with math as MathML, no MathJax."""

    @pass_context  # as the method it replaces: Jinja hands it the cell being rendered
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        renderer = MathMLRenderer(
            escape=False, attachments=cell.get("attachments", {}), embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text, exclude_anchor_links=self.exclude_anchor_links,
            **self.lexer_options)
        return MarkdownWithMath(renderer=renderer).render(source)

    def from_notebook_node(self, nb, resources=None, **kw):
        output, resources = super().from_notebook_node(nb, resources, **kw)
        return MATHJAX_BLOCK.sub("", output), resources
