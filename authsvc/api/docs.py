"""``/openapi.json`` (the generated OpenAPI document) and ``/docs`` (a page rendering it)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from authsvc.openapi import build_spec

bp = Blueprint("docs", __name__)

_CACHE_KEY = "authsvc.openapi"


def openapi_document(app: Flask) -> dict[str, Any]:
    """The app's OpenAPI document, built on first use (the routes are fixed by then)."""
    if _CACHE_KEY not in app.extensions:
        app.extensions[_CACHE_KEY] = build_spec(app)
    return app.extensions[_CACHE_KEY]


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this service (not in the envelope)."""
    # Deliberately the bare document, not {code, msg, data}: OpenAPI tooling (code
    # generators, schemathesis, API gateways) expects the document itself at this URL.
    return jsonify(openapi_document(current_app))


_STYLE = """
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem; }
  code, pre { font: 13px ui-monospace, monospace; }
  details { border: 1px solid #ccc; border-radius: 6px; margin: .5rem 0; padding: .4rem .7rem; }
  summary { cursor: pointer; }
  .method { display: inline-block; min-width: 4.5rem; font-weight: bold;
            text-transform: uppercase; }
  table { border-collapse: collapse; margin: .3rem 0 .8rem; }
  td, th { border-bottom: 1px solid #eee; padding: .2rem .6rem .2rem 0; text-align: left;
           vertical-align: top; }
  .muted { color: #666; }
"""

_SCRIPT = """
"use strict";
const el = (tag, text, cls) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
};

function render(spec) {
  const resolve = (s) => s && s.$ref
    ? s.$ref.split("/").slice(1).reduce((o, k) => o[k], spec) : (s || {});
  const refName = (s) => s && s.$ref ? s.$ref.split("/").pop() : null;
  const typeOf = (raw) => {
    const s = resolve(raw);
    if (refName(raw)) return refName(raw);
    if (s.allOf) return s.allOf.map(typeOf).join(" & ");
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.type === "array") return typeOf(s.items) + "[]";
    return [].concat(s.type || "any").join(" | ");
  };
  const fieldsTable = (raw) => {
    const s = resolve(raw);
    const props = s.properties || {};
    if (!Object.keys(props).length) return el("p", typeOf(raw), "muted");
    const table = el("table");
    const required = new Set(s.required || []);
    table.append(...Object.entries(props).map(([name, p]) => {
      const row = el("tr");
      const q = resolve(p);
      const limits = ["minLength", "maxLength", "minimum", "maximum", "default"]
        .filter((k) => k in q).map((k) => `${k} ${JSON.stringify(q[k])}`).join(", ");
      row.append(el("td", name + (required.has(name) ? " *" : "")), el("td", typeOf(p)),
                 el("td", [q.description, limits].filter(Boolean).join(" - "), "muted"));
      return row;
    }));
    return table;
  };

  document.getElementById("intro").textContent =
    `${spec.info.title} ${spec.info.version} - ${spec.info.description}`;
  const main = document.getElementById("operations");
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const box = el("details");
      const head = el("summary");
      head.append(el("span", method, "method"), el("code", path), " ", el("span", op.summary));
      box.append(head);
      const auth = (op.security || []).map((r) => Object.keys(r).join("+") || "none");
      box.append(el("p", "Credentials: " + (auth.length ? auth.join(" or ") : "none"), "muted"));
      const params = (op.parameters || []).map(resolve);
      if (params.length) {
        box.append(el("h4", "Parameters"));
        const table = el("table");
        for (const p of params) {
          const row = el("tr");
          row.append(el("td", p.name), el("td", p.in), el("td", p.description || "", "muted"));
          table.append(row);
        }
        box.append(table);
      }
      if (op.requestBody) {
        box.append(el("h4", "Body (application/json)"));
        box.append(fieldsTable(op.requestBody.content["application/json"].schema));
      }
      box.append(el("h4", "Responses"));
      for (const [status, response] of Object.entries(op.responses)) {
        box.append(el("p", `${status}: ${response.description}`));
        for (const [type, media] of Object.entries(response.content || {})) {
          const body = resolve(media.schema);
          const data = body.properties && body.properties.data;
          if (status !== "200") continue;
          const text = `${type}: ${typeOf(media.schema)}`;
          box.append(data ? fieldsTable(data) : el("p", text, "muted"));
        }
      }
      main.append(box);
    }
  }
}

fetch("openapi.json")
  .then((r) => r.json())
  .then(render)
  .catch((e) => { document.getElementById("intro").textContent = "Failed to load: " + e; });
"""

_PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>authsvc API</title>
<style>"""
    + _STYLE
    + """</style>
</head>
<body>
<h1>authsvc API</h1>
<p id="intro" class="muted">Loading <a href="openapi.json">openapi.json</a>...</p>
<main id="operations"></main>
<script>"""
    + _SCRIPT
    + """</script>
</body>
</html>
"""
)


def _sha256_source(source: str) -> str:
    digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
    return f"'sha256-{digest}'"


# Only the page's own inline style and script (pinned by hash) and this origin's
# /openapi.json: no CDN, no other script, no framing, no form submission.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {_sha256_source(_SCRIPT)}",
        f"style-src {_sha256_source(_STYLE)}",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


@bp.get("/docs")
def page() -> Response:
    """A page listing every operation of /openapi.json (plain HTML + JS, no CDN)."""
    response = Response(_PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
