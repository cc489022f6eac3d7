"""The web console's pages: plain server-rendered HTML, every remote or user value escaped.

Three pages share one layout (``static/console.css`` and ``static/console.js``, served
from the package): the name-server browser (``/``), an object page (``/object/<name>``) and
the events page (``/events``). The script only adds behaviour (filter, calls, removal,
live events) and writes what it receives with ``textContent``, never as HTML.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

__all__ = ["events_page", "layout", "names_page", "object_page", "name_tree"]


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def object_href(name: str, root: str = "") -> str:
    """The console URL of a name's object page (the name percent-encoded as one segment)."""
    return f"{root}/object/" + quote(name, safe="")


def layout(title: str, body: str, *, keyed: bool, page: str, root: str = "") -> str:
    """A whole page: header with navigation and the gateway-key box, then ``body`` (already HTML).

    ``root``: the path the app is mounted at (ASGI ``root_path``), put before every link.
    """
    nav = "".join(
        f'<a href="{_e(root + href)}"{" class=current" if key == page else ""}>{label}</a>'
        for key, href, label in (("names", "/", "Names"), ("events", "/events", "Events"),
                                 ("openapi", "/openapi.json", "OpenAPI"))
    )
    key_box = ('<label class="key">gateway key <input id="gateway-key" type="password" autocomplete="off" '
               'placeholder="needed to call and change"></label>') if keyed else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · Ember</title>"
        f'<link rel=stylesheet href="{_e(root)}/static/console.css">'
        f'<script src="{_e(root)}/static/console.js" defer></script></head>'
        f'<body data-page="{_e(page)}" data-root="{_e(root)}" data-keyed="{"yes" if keyed else "no"}">'
        f'<header><span class=brand>Ember console</span><nav>{nav}</nav>{key_box}</header>'
        f"<main>{body}</main></body></html>"
    )


class _Node:
    __slots__ = ("children", "entry")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.entry: tuple[str, str, list[str]] | None = None


def name_tree(entries: dict[str, tuple[str, list[str]]]) -> _Node:
    """Names split at dots into nested groups (``a.b.c`` is entry ``c`` in group ``b`` in group ``a``)."""
    root = _Node()
    for name in sorted(entries):
        node = root
        for part in name.split("."):
            node = node.children.setdefault(part, _Node())
        uri, metadata = entries[name]
        node.entry = (name, uri, metadata)
    return root


def _entry_html(name: str, uri: str, metadata: list[str], can_remove: bool, root: str) -> str:
    tags = "".join(f"<span class=tag>{_e(tag)}</span>" for tag in metadata)
    remove = (f'<button type=button class="remove" data-name="{_e(name)}">remove</button>'
              if can_remove else "")
    return (f'<div class=entry data-name="{_e(name)}"><a class=name href="{_e(object_href(name, root))}">{_e(name)}</a>'
            f' <code class=uri>{_e(uri)}</code> <span class=tags>{tags}</span>{remove}</div>')


def _tree_html(node: _Node, path: str, can_remove: bool, root: str) -> str:
    items = []
    for part, child in sorted(node.children.items()):
        full = f"{path}.{part}" if path else part
        inner = ""
        if child.entry is not None:
            inner += _entry_html(*child.entry, can_remove, root)
        if child.children:
            inner += (f'<details open class=group data-group="{_e(full)}"><summary>{_e(part)}.</summary>'
                      f"{_tree_html(child, full, can_remove, root)}</details>")
        items.append(f"<li>{inner}</li>")
    return f"<ul class=tree>{''.join(items)}</ul>"


def names_page(entries: dict[str, tuple[str, list[str]]], ns_uri: str, ping_ms: float | None, ping_error: str,
               *, keyed: bool, expose: str, hidden: int, root: str = "") -> str:
    """The name-server browser: ping, filter box, the tree of exposed names."""
    if ping_error:
        status = f'<span id=ping class=bad>name server not reachable: {_e(ping_error)}</span>'
    else:
        status = f'<span id=ping class=good>name server answered in {ping_ms:.1f} ms</span>'
    note = (f"{len(entries)} exposed name(s) (expose pattern <code>{_e(expose)}</code>"
            f"{f', {hidden} other name(s) hidden' if hidden else ''}).")
    removal = ("Removing a name needs the gateway key." if keyed
               else "Removal is off: start the gateway with a gateway key to allow it.")
    tree = _tree_html(name_tree(entries), "", keyed, root) if entries else "<p class=empty>No exposed names.</p>"
    body = (
        f"<h1>Names</h1><p class=ns>Name server <code>{_e(ns_uri)}</code> {status} "
        '<button type=button id=ping-again>ping</button></p>'
        f"<p>{note} {removal}</p>"
        '<p><input id=filter type=search placeholder="filter names" autofocus></p>'
        f'<div id=names>{tree}</div><p id=message role=status></p>'
    )
    return layout("Names", body, keyed=keyed, page="names", root=root)


def object_page(name: str, uri: str, metadata: list[str], meta: dict[str, list[str]] | None, error: str,
                *, keyed: bool, root: str = "") -> str:
    """One object: its methods and attributes, a call form, the result or remote exception."""
    tags = "".join(f"<span class=tag>{_e(tag)}</span>" for tag in metadata) or "none"
    head = (f'<h1 id=object-name data-name="{_e(name)}">{_e(name)}</h1>'
            f"<p>URI <code>{_e(uri)}</code></p><p>metadata {tags}</p>")
    if meta is None:
        body = head + f'<p class=bad id=object-error>cannot reach the object: {_e(error)}</p>'
        return layout(name, body, keyed=keyed, page="object", root=root)
    oneway = set(meta.get("oneway", ()))
    methods = sorted(meta.get("methods", ()))
    attrs = sorted(meta.get("attributes", ()))
    method_items = "".join(
        f'<li><code>{_e(m)}</code>{" <em>oneway</em>" if m in oneway else ""}</li>' for m in methods) or "<li>none</li>"
    attr_items = "".join(
        f'<li><code>{_e(a)}</code> <button type=button class=read data-attr="{_e(a)}">read</button></li>'
        for a in attrs) or "<li>none</li>"
    options = "".join(f'<option value="{_e(m)}">{_e(m)}</option>' for m in methods)
    form = (
        '<form id=call-form><h2>Call a method</h2>'
        f"<label>method <select id=method name=method>{options}</select></label>"
        '<label>positional arguments (a JSON array) <textarea id=args rows=3>[]</textarea></label>'
        '<label>keyword arguments (a JSON object) <textarea id=kwargs rows=3>{}</textarea></label>'
        '<label class=inline><input type=checkbox id=oneway> oneway (do not wait for a result)</label>'
        '<button type=submit id=call>call</button></form>'
    ) if methods else "<p>No methods to call.</p>"
    body = (
        head
        + f"<div class=columns><section><h2>Methods</h2><ul id=methods>{method_items}</ul></section>"
        + f"<section><h2>Attributes</h2><ul id=attributes>{attr_items}</ul></section></div>"
        + form
        + '<section id=outcome hidden><h2 id=outcome-title>Result</h2><p id=outcome-meta></p>'
        + '<pre id=result></pre><pre id=traceback hidden></pre></section>'
    )
    return layout(name, body, keyed=keyed, page="object", root=root)


def events_page(available: bool, *, keyed: bool, root: str = "") -> str:
    """Subscribe to a subject pattern and watch events arrive (server-sent events)."""
    if not available:
        body = ("<h1>Events</h1><p class=bad>This gateway was built without an event source "
                "(use <code>ember.web.create_app</code> or <code>ember gateway</code>).</p>")
        return layout("Events", body, keyed=keyed, page="events", root=root)
    body = (
        "<h1>Events</h1><p>Events published to the event service (<code>ember events</code>) whose "
        "subject matches a regular expression (from its start), live.</p>"
        '<form id=events-form><label>subject pattern <input id=pattern value=".*" required></label> '
        '<button type=submit id=subscribe>subscribe</button> '
        '<button type=button id=unsubscribe disabled>stop</button></form>'
        '<p id=events-status role=status>not subscribed</p>'
        '<table id=events><thead><tr><th>seq</th><th>time</th><th>subject</th><th>message</th></tr></thead>'
        "<tbody></tbody></table>"
    )
    return layout("Events", body, keyed=keyed, page="events", root=root)
