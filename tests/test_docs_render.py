"""Build the documentation site and check the rendered HTML, which a strict build does not:
no code fence left as raw text, every section heading rendered as a heading (not swallowed by a
code block), and a constructor signature plus a parameter table for API classes."""

from __future__ import annotations

import html
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    # mkdocs comes with the dev extra that the README's test command installs
    assert shutil.which("mkdocs") is not None or _has_module("mkdocs"), "pip install -e '.[dev]'"
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def _has_module(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _md_pages():
    return sorted((ROOT / "docs").rglob("*.md"))


def _html_for(site, md):
    rel = md.relative_to(ROOT / "docs").with_suffix("")
    return site / ("index.html" if rel.name == "index" and rel.parent == pathlib.Path(".")
                   else rel.parent / ("" if rel.name == "index" else rel.name) / "index.html")


def _headings(md_text):
    """Markdown headings outside code fences."""
    heads, fence = [], None
    for line in md_text.splitlines():
        m = re.match(r"^(```+|~~~+)", line.strip())
        if m:
            fence = None if fence and line.strip().startswith(fence) else (fence or m.group(1))
            continue
        if fence is None:
            h = re.match(r"^(#{1,4})\s+(.*?)\s*$", line)
            if h:
                heads.append(h.group(2))
    return heads


def _text(fragment):
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).replace("¶", "").strip()


def test_no_raw_fences_and_no_swallowed_sections(site):
    problems = []
    for md in _md_pages():
        page = _html_for(site, md)
        assert page.is_file(), f"{md} was not rendered ({page})"
        body = page.read_text()
        main = body[body.find('<article'):body.find('</article>')]
        # a fence the markdown did not parse shows up as text (often inside <p><code>)
        for m in re.finditer(r"```|~~~", _strip_code_blocks(main)):
            near = main[max(0, m.start() - 80) : m.start() + 40]
            problems.append(f"{md.name}: raw fence marker near ...{near!r}")
        rendered = {_text(h) for h in re.findall(r"<h[1-4][^>]*>(.*?)</h[1-4]>", main, re.S)}
        for head in _headings(md.read_text()):
            plain = _text(re.sub(r"`([^`]*)`", r"\1", head))
            plain = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r"\1", plain)
            if plain not in rendered:
                problems.append(f"{md.name}: heading {head!r} is not rendered as a heading")
    assert not problems, "\n".join(problems)


def _strip_code_blocks(fragment):
    # code blocks may legitimately contain backticks (e.g. a docstring example)
    return re.sub(r"<pre.*?</pre>", "", fragment, flags=re.S)


def test_api_classes_show_constructor_arguments_and_tables(site):
    page = (site / "api" / "processes" / "index.html").read_text()
    vp = page[page.find('id="sdekit.processes.VP"'):]
    vp = vp[: vp.find('class="doc doc-heading"', 100)]
    text = _text(vp)
    for name in ("beta_min", "beta_max", "schedule", "t0"):
        assert name in text, f"VP's page does not show its argument {name}"
    assert "Parameters:" in text and "Default" in text  # a parameter table
    nets = (site / "api" / "nets" / "index.html").read_text()
    unet = _text(nets[nets.find('id="sdekit.nets.UNet"'):][:40000])
    assert "num_res_blocks" in unet and "Parameters:" in unet


def test_no_api_argument_section_left_as_raw_text(site):
    """A docstring's argument section must become a parameter table (or stay a markdown list),
    never the text "Args:" followed by a code block (what a blank line after
    ``**Arguments:**`` used to produce)."""
    problems = []
    for page in sorted((site / "api").rglob("index.html")):
        main = page.read_text()
        main = main[main.find("<article"):main.find("</article>")]
        for m in re.finditer(r"<p>(Args|Arguments|Parameters):</p>\s*<pre", main):
            near = _text(main[max(0, m.start() - 600):m.start()])[-120:]
            problems.append(f"{page.parent.name}: raw argument block near {near!r}")
    assert not problems, "\n".join(problems)
