"""Math in nbgrader's feedback pages is MathML written at build time: no MathJax, no CDN, and no markup smuggled in
through TeX. The real `nbgrader generate_feedback` run is checked in tests/test_nbgrader.py; this file checks the
converter and the exporter on the committed release notebook, in a second."""
from __future__ import annotations

import nbformat
import pytest

from backprop_ninja.assign import REPO, notebook_path
from backprop_ninja.mathml import tex_to_mathml
from backprop_ninja.nbgrader_feedback import OfflineMathFeedback



def test_tex_becomes_mathml():
    fraction = tex_to_mathml(r"\frac{n}{n-1}")
    assert fraction.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">')
    assert "<mfrac>" in fraction and "<mi>n</mi>" in fraction
    assert 'display="block"' in tex_to_mathml(r"\sum_i x_i", display=True)


@pytest.mark.parametrize("tex, never", [
    (r"\text{<script>alert(1)</script>}", "<script"),
    (r"\text{<img src=x onerror=alert(1)>}", "<img"),
    (r"\href{javascript:alert(1)}{x}", "javascript:"),
    (r"\style{background:url(http://example.invalid/)}{x}", "style="),
    (r"\class{btn}{x}", "class="),
    (r"\mathrm{a & b}", "& b"),
])
def test_hostile_tex_leaves_no_markup_link_or_style(tex, never):
    rendered = tex_to_mathml(tex)
    assert never not in rendered
    assert rendered.startswith(("<math", '<code class="tex">'))


def test_the_release_renders_its_math_as_mathml_and_loads_no_mathjax():
    release = nbformat.read(notebook_path(REPO, "release"), as_version=4)
    page, _ = OfflineMathFeedback().from_notebook_node(release)

    assert page.count("<math ") >= 20  # the release's formulas: n-1 and 1/n, the batchnorm and cross-entropy forms
    assert "<mfrac>" in page and "<msqrt>" in page
    assert "mathjax" not in page.lower()  # neither the loader nor its configuration
    assert r"\frac{" not in page  # no TeX left over for a script that is not there
