"""axe-core in the browser tests: every page a test visits is checked, and critical or serious
violations fail the test (tests/conftest.py `page`).

axe-core comes from the npm registry (package.json devDependencies). It is installed as an init
script, which, like `page.evaluate`, is not subject to the page's Content-Security-Policy, so the
policy stays exactly as production sends it. The page checks itself after each load and after
each htmx swap and reports through a binding; the fixture also checks after every `goto`,
`reload`, `wait_for_url` and `wait_for_load_state`, and once more when the test ends, so a page
that the test leaves quickly is still checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE_SOURCE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = ("critical", "serious")
REPORT_BINDING = "__matricloudAxeReport"

# Runs in the top frame of every page after axe-core itself. A check waits for finite CSS
# transitions and animations (a dialog fading in) and runs only when the DOM changed since the
# last one, so the fixture's extra checks cost nothing on a page that stayed the same.
RUNNER = """
(() => {
  // Only the portal's pages: not frames, nor the about:blank a test starts on.
  if (window.top !== window || !location.protocol.startsWith("http")) return;
  const failing = %(impacts)s;
  let running = null;
  let dirty = true;
  let timer = null;
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const settled = () => Promise.race([
    pause(1500),
    Promise.all(document.getAnimations()
      .filter((a) => a.effect && a.effect.getComputedTiming().endTime !== Infinity)
      .map((a) => a.finished.catch(() => null))),
  ]);
  const run = async () => {
    await settled();
    dirty = false;
    const results = await axe.run(document, {resultTypes: ["violations"]});
    const violations = results.violations
      .filter((v) => failing.includes(v.impact))
      .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                    targets: v.nodes.map((n) => n.target.join(" "))}));
    if (violations.length) await window[%(binding)s]({url: location.href, violations});
    return violations.length;
  };
  window.__matricloudAxeCheck = async () => {
    while (running) await running.catch(() => null);
    if (!dirty) return 0;
    running = run();
    try { return await running; } finally { running = null; }
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(() => window.__matricloudAxeCheck().catch(() => null), 50);
  };
  const watch = () => {
    const all = {subtree: true, childList: true, attributes: true, characterData: true};
    new MutationObserver(() => { dirty = true; }).observe(document.documentElement, all);
  };
  if (document.documentElement) watch();
  else document.addEventListener("readystatechange", watch, {once: true});
  window.addEventListener("load", soon);
  document.addEventListener("htmx:afterSettle", soon);
})();
"""


def init_script() -> str:
    """axe-core and the runner, for `BrowserContext.add_init_script`."""
    if not AXE_SOURCE.exists():
        raise RuntimeError(f"{AXE_SOURCE} is missing: install the npm packages (npm ci)")
    runner = RUNNER % {"impacts": list(FAILING_IMPACTS), "binding": f'"{REPORT_BINDING}"'}
    return f"{AXE_SOURCE.read_text()}\n;{runner}"


def check(page: Any) -> None:
    """Check the page as it is now (nothing to do on a page without the runner, such as a
    download, or one that is already navigating away: the next page's load checks that one)."""
    from playwright.sync_api import Error

    if page.is_closed():
        return
    try:
        page.evaluate("() => window.__matricloudAxeCheck ? window.__matricloudAxeCheck() : 0")
    except Error as error:
        if "context was destroyed" not in str(error) and "navigat" not in str(error):
            raise


def describe(reports: list[dict]) -> list[str]:
    """One line per rule, page and element, each once."""
    lines: list[str] = []
    for report in reports:
        for violation in report["violations"]:
            for target in violation["targets"]:
                line = (
                    f"{violation['id']} ({violation['impact']}) at {report['url']}: {target}"
                    f" — {violation['help']}"
                )
                if line not in lines:
                    lines.append(line)
    return lines
