"""Loads a speechmill report in headless Chromium (Debian's `chromium`) over the
DevTools protocol and prints, as JSON, what a reader would see:

- `load_ms`: navigation start to the end of the load event (Navigation Timing);
- `charts`: every `figure.chart`, its `<svg>`'s rendered size and how many of its
  shapes (rect, path, line) have a non-zero rendered box;
- `funnel`: the funnel table's rows (node, rows, rejects) as rendered;
- `audio`: how many `<audio>` elements the page has, and the first one's data
  decoded by the browser (Web Audio `decodeAudioData`): channels, sample rate, length;
- `external`: elements that would load something over the network (src/href that
  is not a data: URI or an in-page anchor);
- `text_len`: characters of visible text.

With --screenshot PNG, a full-page screenshot is saved too.

    python report_browser.py --html report.html [--screenshot page.png]
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket  # websocket-client

CHECK_JS = r"""
(async () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const charts = [...document.querySelectorAll('figure.chart')].map(f => {
    const svg = f.querySelector('svg');
    const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    const shapes = svg ? [...svg.querySelectorAll('rect, path, line')] : [];
    const drawn = shapes.filter(s => { const b = s.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length;
    return {chart: f.dataset.chart, width: r.width, height: r.height, shapes: shapes.length, drawn};
  });
  const funnel = [...document.querySelectorAll('table.funnel tr[data-node]')].map(tr => ({
    node: tr.dataset.node, rows: Number(tr.dataset.rows), rejects: Number(tr.dataset.rejects),
    shown_rows: Number(tr.children[2].textContent), shown_rejects: Number(tr.children[4].textContent)}));
  const audios = [...document.querySelectorAll('audio')];
  let decoded = null;
  if (audios.length) {
    try {
      const bytes = await (await fetch(audios[0].src)).arrayBuffer();
      const ctx = new OfflineAudioContext(1, 16000, 16000);
      const buffer = await ctx.decodeAudioData(bytes);
      decoded = {channels: buffer.numberOfChannels, sample_rate: buffer.sampleRate,
                 length: buffer.length, seconds: buffer.duration,
                 expected_seconds: Number(audios[0].dataset.seconds)};
    } catch (e) { decoded = {error: String(e)}; }
  }
  const external = [...document.querySelectorAll('[src], [href]')]
    .map(e => e.getAttribute('src') || e.getAttribute('href'))
    .filter(u => !u.startsWith('data:') && !u.startsWith('#'));
  return {load_ms: nav ? nav.loadEventEnd : null, dom_ms: nav ? nav.domContentLoadedEventEnd : null,
          charts, funnel, audio: {count: audios.length, first: decoded}, external,
          text_len: document.body.innerText.length};
})()
"""


class Page:
    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def wait_event(self, name, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == name:
                return msg
        raise TimeoutError(name)


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("chromium not found: run 'bash scripts/peers.sh' (it installs Debian's chromium)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--html", required=True)
    ap.add_argument("--screenshot")
    args = ap.parse_args()
    profile = tempfile.mkdtemp(prefix="speechmill-chromium-")
    proc = subprocess.Popen(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--mute-audio",
         "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(open(port_file).read().split("\n")[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        target = next(t for t in targets if t.get("type") == "page")
        page = Page(target["webSocketDebuggerUrl"])
        page.call("Page.enable")
        url = "file://" + os.path.abspath(args.html)
        started = time.time()
        page.call("Page.navigate", url=url)
        page.wait_event("Page.loadEventFired")
        wall_ms = (time.time() - started) * 1000
        result = page.call("Runtime.evaluate", expression=CHECK_JS, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise SystemExit(f"check script failed: {result['exceptionDetails']}")
        out = result["result"]["value"]
        out["wall_ms"] = wall_ms
        out["html_bytes"] = os.path.getsize(args.html)
        if args.screenshot:
            size = page.call("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000),
                    "scale": 1}
            shot = page.call("Page.captureScreenshot", format="png", clip=clip,
                             captureBeyondViewport=True)
            with open(args.screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        print(json.dumps(out))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
