"""The HTML report in a real browser (headless Chromium, which .ci/run installs): the page
shows the totals, a failing check expands on click, and no request leaves the page."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_reporters import sample_run

from grader.builtin import reporters

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
CSP = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>\n?')

# Run in the page after it loads: click the first failing check's summary, and list every
# resource the page fetched (the Resource Timing API sees images, styles, fonts, fetches).
PROBE = """<script>
const d = document.querySelector("details"), pre = d.querySelector("pre");
const result = {openBefore: d.open, shownBefore: pre.checkVisibility()};
d.querySelector("summary").click();
Object.assign(result, {openAfter: d.open, shownAfter: pre.checkVisibility(),
  heading: document.querySelector("h1").textContent, text: pre.textContent,
  requests: performance.getEntriesByType("resource").map(e => e.name)});
document.body.setAttribute("data-probe", JSON.stringify(result));
</script>
"""


def _page_requests(netlog: Path) -> list[str]:
    """The URLs the page itself asked for, from Chromium's network log: requests whose
    isolation key is the page's own site (file://), not the browser's background traffic."""
    events = json.loads(netlog.read_text())["events"]
    urls: dict[int, str] = {}
    from_page: set[int] = set()
    for event in events:
        params, source = event.get("params") or {}, event.get("source", {}).get("id")
        if "url" in params:
            urls.setdefault(source, params["url"])
            if str(params.get("network_isolation_key", "")).startswith("file://"):
                from_page.add(source)
    return sorted({urls[s] for s in from_page if not urls[s].startswith(("file:", "data:", "about:", "blob:"))})


def _probe(page: str, tmp_path: Path) -> dict:
    path = tmp_path / "report.html"
    # The report's own policy forbids scripts; the probe is the test's, so it goes in a copy
    # without the policy, which measures what the page itself would fetch.
    path.write_text(CSP.sub("", page).replace("</body>", PROBE + "</body>"))
    proc = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--virtual-time-budget=3000", f"--log-net-log={tmp_path / 'net.json'}", "--dump-dom",
                           path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert found, f"the browser gave no result (exit {proc.returncode}): {proc.stderr[-1500:]}"
    result = json.loads(html.unescape(found.group(1)))
    result["requests"] += _page_requests(tmp_path / "net.json")
    return result


@pytest.mark.skipif(BROWSER is None, reason="no headless browser here (chromium, chromium-browser, google-chrome); "
                                           ".ci/run installs Debian's chromium")
def test_the_html_report_in_a_real_browser(tmp_path: Path):
    run = sample_run()
    page = reporters.render_html(run)
    assert CSP.search(page), "the report forbids every load in the browser itself"
    result = _probe(page, tmp_path)
    assert result["heading"].startswith("llm-grader: 2/8 points"), result
    assert result["openBefore"] is False and result["shownBefore"] is False, result
    assert result["openAfter"] is True and result["shownAfter"] is True, result
    assert "max abs error 0.5" in result["text"], result
    assert result["requests"] == [], result
