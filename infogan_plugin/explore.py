"""``ganrun --plugin infogan explore RUN``: a local page with one control per code and the grid
G draws for them, regenerated on the server as the controls move.

The standard library's ``http.server.ThreadingHTTPServer`` serves it: two routes (the page
and a PNG endpoint) need no framework, and a dependency would be one more thing to install
for a tool that runs on the user's own machine. The server listens on 127.0.0.1 unless told
otherwise, answers only ``GET /`` and ``GET /image.png?...`` (404 for anything else),
validates every query parameter (400 with a one-line reason) and generates under a lock, one
grid at a time. The page keeps at most one request in flight and, when it finishes, asks only
for the newest state of the controls, so a fast slider drag never queues stale grids.
"""

from __future__ import annotations

import html
import ipaddress
import json
import math
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import click

from infogan_plugin.generate import checkpoint_opt, device_opt, load_for_command, run_arg
from infogan_plugin.run import CodeValue, InfoGANRun
from registry.cli.options import option

__all__ = ["BadRequest", "Explorer", "explore_command", "make_server"]

DEFAULT_N = 16  # a 4x4 grid
MAX_N = 64
MAX_SEED = 2**32 - 1  # what the page's reseed button draws; larger seeds are refused
MAX_QUERY = 2048  # characters
SLIDER_STEPS = 100
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class BadRequest(ValueError):
    """A query the image endpoint refuses; ``str(exc)`` is the one-line reason sent back."""


class Explorer:
    """The page and the image endpoint of one run, independent of HTTP (testable directly)."""

    def __init__(self, run: InfoGANRun) -> None:
        self.run = run
        self.lock = threading.Lock()  # one G pass at a time: torch threads are shared anyway
        self.controls = [self._control(slot) for slot in run.spec.slots]

    @staticmethod
    def _control(slot: Any) -> dict[str, Any]:
        code = slot.code
        if code.discrete:
            low, high = code.value_range()
            if not math.isfinite(high):  # infinite support (a count): the values its traversal shows
                high = low + code.traversal_values().shape[0] - 1
            return {
                "name": slot.name,
                "type": code.type_name,
                "kind": "buttons",
                "values": list(range(int(low), int(high) + 1)),
                "value": None,
            }
        start, end = code.traversal_range()
        low, high = code.value_range()
        start, end = max(start, low), min(end, high)  # the slider never offers a refused value
        mid = 0.0 if start <= 0.0 <= end else (start + end) / 2
        return {
            "name": slot.name,
            "type": code.type_name,
            "kind": "slider",
            "min": start,
            "max": end,
            "step": (end - start) / SLIDER_STEPS,
            "value": mid,
        }

    # ------------------------------------------------------------------ the endpoint
    def parse(self, query: str) -> tuple[dict[str, CodeValue], int, int]:
        """``c1=3&c2=0.5&seed=7&n=16`` -> (codes, seed, n); ``BadRequest`` for anything else."""
        if len(query) > MAX_QUERY:
            raise BadRequest(f"query longer than {MAX_QUERY} characters")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=64)
        except ValueError as exc:
            raise BadRequest(f"malformed query ({exc})") from None
        names = self.run.code_names
        seen: set[str] = set()
        codes: dict[str, CodeValue] = {}
        seed, n = 0, DEFAULT_N
        for key, text in pairs:
            if key in seen:
                raise BadRequest(f"parameter {key!r} given twice")
            seen.add(key)
            if key == "seed":
                seed = _integer(key, text, 0, MAX_SEED)
            elif key == "n":
                n = _integer(key, text, 1, MAX_N)
            elif key in names:
                if not _NUMBER.fullmatch(text):  # also refuses nan, inf and 1e999 spelled out
                    raise BadRequest(f"{key}={text[:40]!r} is not a number")
                value = float(text)
                if not math.isfinite(value):
                    raise BadRequest(f"{key}={text[:40]!r} is not a finite number")
                codes[key] = int(value) if value.is_integer() and abs(value) < 2**53 else value
            else:
                raise BadRequest(f"unknown parameter {key[:40]!r}; allowed: {', '.join([*names, 'seed', 'n'])}")
        try:
            self.run.code_columns(codes)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return codes, seed, n

    def image(self, query: str) -> bytes:
        """The PNG grid for a query (``BadRequest`` for a bad one)."""
        codes, seed, n = self.parse(query)
        with self.lock:
            images = self.run.generate(n, codes=codes, seed=seed)
        return self.run.grid_png(images, nrow=math.ceil(math.sqrt(n)))

    def page(self) -> bytes:
        c, h, w = self.run.image_shape
        title = f"ganrun explorer: {self.run.run_dir.name} (step {self.run.step})"
        config = {"controls": self.controls, "n": DEFAULT_N, "maxSeed": MAX_SEED, "size": [h, w]}
        config = json.dumps(config, allow_nan=False)
        config = config.replace("<", "\\u003c")  # nothing in it can close the script element
        return PAGE.replace("__TITLE__", html.escape(title)).replace("__CONFIG__", config).encode()


def _integer(key: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise BadRequest(f"{key}={text[:40]!r} is not allowed: expected an integer in {low}..{high}")
    return int(text)


def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_allowed(header: str | None, bound: str) -> bool:
    """Whether a request's ``Host`` header may be served: any, for a server bound to another
    interface on purpose (``--host``); a loopback name or address (any port), for a loopback
    server."""
    if not _is_loopback(bound):
        return True
    if not header:
        return False
    name = header.strip().lower()
    if name.startswith("["):  # [::1]:8765
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    return _is_loopback(name)


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A ``ThreadingHTTPServer`` for ``explorer`` bound to ``host:port`` (port 0: a free one);
    the caller runs ``serve_forever()`` and ``shutdown()``/``server_close()``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "ganrun-explore"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # a slider drag is dozens of requests; the terminal stays readable

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; img-src 'self' blob:; "
                "script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            )
            self.end_headers()
            self.wfile.write(body)

        def _text(self, status: HTTPStatus, message: str) -> None:
            self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if not _host_allowed(self.headers.get("Host"), host):
                # DNS rebinding: a page elsewhere that points its own name at 127.0.0.1 would
                # otherwise reach this server; a loopback server answers loopback names only
                self._text(HTTPStatus.FORBIDDEN, "forbidden: this server answers requests for localhost only")
                return
            parts = urlsplit(self.path)
            if parts.path == "/" and not parts.query:
                self._send(HTTPStatus.OK, explorer.page(), "text/html; charset=utf-8")
            elif parts.path == "/image.png":
                try:
                    body = explorer.image(parts.query)
                except BadRequest as exc:
                    self._text(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
                    return
                self._send(HTTPStatus.OK, body, "image/png")
            else:
                self._text(HTTPStatus.NOT_FOUND, "not found: this server has / and /image.png only")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True  # a hung client never keeps Ctrl-C from ending the process
    return server


@click.command("explore")
@run_arg
@option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Only this machine can connect by default; another address "
    "(0.0.0.0: every interface) lets anyone who can reach it use the page.",
)
@checkpoint_opt
@device_opt
@click.pass_context
def explore_command(ctx: click.Context, run: Path, port: int, host: str, checkpoint: str | None, device: str) -> None:
    """Serve a local page to explore a run's codes: a slider per continuous code (over its
    traversal range), buttons per categorical code, a reseed button, and the grid G draws,
    updated as the controls move. Ctrl-C stops it."""
    loaded = load_for_command(ctx, run, checkpoint, device)
    explorer = Explorer(loaded)
    try:
        server = make_server(explorer, host, port)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port", param_hint="--port"
        ) from None
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    click.echo(f"exploring {loaded.run_dir} (step {loaded.step}) at http://{shown}:{bound_port}/  (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.server_close()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
main { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
#grid { width: 512px; height: 512px; image-rendering: pixelated; background: #eee; border: 1px solid #ccc; }
fieldset { border: 1px solid #ccc; margin: 0 0 1em 0; min-width: 20em; }
legend { font-weight: 600; }
input[type=range] { width: 16em; }
button { margin: 2px; min-width: 2.4em; }
button.on { background: #246; color: white; }
#status { color: #a00; min-height: 1.2em; }
output { font-variant-numeric: tabular-nums; margin-left: .5em; }
</style></head>
<body>
<h1 style="font-size: 1.2em">__TITLE__</h1>
<main>
<img id="grid" alt="generated images">
<form id="controls" onsubmit="return false">
<fieldset><legend>noise</legend>
<button type="button" id="reseed">reseed</button> seed <output id="seed">0</output></fieldset>
</form>
</main>
<p id="status"></p>
<script>
"use strict";
const CONFIG = __CONFIG__;
const state = { seed: 0, codes: {} };
const form = document.getElementById("controls"), img = document.getElementById("grid");
const status = document.getElementById("status");

for (const c of CONFIG.controls) {
  const box = document.createElement("fieldset");
  const legend = document.createElement("legend");
  legend.textContent = c.name + " (" + c.type + ")";
  box.appendChild(legend);
  state.codes[c.name] = c.value;
  if (c.kind === "slider") {
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: c.min, max: c.max, step: c.step, value: c.value,
                            id: "code-" + c.name });
    const out = document.createElement("output");
    out.textContent = Number(c.value).toFixed(2);
    slider.addEventListener("input", () => {
      state.codes[c.name] = Number(slider.value); out.textContent = Number(slider.value).toFixed(2); update();
    });
    box.append(slider, out);
  } else {
    const buttons = [];
    for (const v of [null, ...c.values]) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = v === null ? "any" : String(v);
      b.id = "code-" + c.name + "-" + (v === null ? "any" : v);
      b.addEventListener("click", () => {
        state.codes[c.name] = v; buttons.forEach(x => x.classList.toggle("on", x === b)); update();
      });
      buttons.push(b); box.appendChild(b);
    }
    buttons[0].classList.add("on");
  }
  form.appendChild(box);
}
document.getElementById("reseed").addEventListener("click", () => {
  const word = new Uint32Array(1); crypto.getRandomValues(word);
  state.seed = Math.min(word[0], CONFIG.maxSeed);
  document.getElementById("seed").textContent = state.seed; update();
});

function query() {
  const p = new URLSearchParams();
  for (const [name, value] of Object.entries(state.codes)) if (value !== null) p.set(name, String(value));
  p.set("seed", String(state.seed)); p.set("n", String(CONFIG.n));
  return "image.png?" + p.toString();
}

// At most one request in flight; when it ends, only the newest state is requested (if it is
// not what is shown already), so a fast drag skips the positions it passed over.
let inflight = false, wanted = null, shown = null;
function update() { wanted = query(); pump(); }
function pump() {
  if (inflight || wanted === null || wanted === shown) return;
  const url = wanted; inflight = true;
  fetch(url).then(r => r.ok ? r.blob() : r.text().then(t => { throw new Error(t); }))
    .then(blob => {
      const old = img.src; img.src = URL.createObjectURL(blob); img.dataset.query = url; shown = url;
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      status.textContent = "";
    })
    .catch(err => { status.textContent = err.message; shown = url; })
    .finally(() => { inflight = false; pump(); });
}
update();
</script>
</body></html>
"""
