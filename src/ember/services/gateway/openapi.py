"""``GET /openapi.json``: an OpenAPI 3.1 description of every exposed name's methods and attributes.

The metadata comes from each daemon (methods, attributes, oneway methods; Python types are
not on the wire, so parameters and results are described as any JSON value). Clients can be
generated from it (openapi-generator, openapi-python-client ...).
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ANY: dict[str, Any] = {}  # JSON Schema: any value
_CALL_BODY = {
    "type": "object",
    "properties": {
        "args": {"type": "array", "items": _ANY, "description": "positional arguments"},
        "kwargs": {"type": "object", "additionalProperties": _ANY, "description": "keyword arguments"},
    },
    "additionalProperties": False,
}
_EXCEPTION = {
    "type": "object",
    "description": "the remote exception, as Pyro5's gateway sends it",
    "properties": {
        "__class__": {"type": "string", "examples": ["builtins.ValueError"]},
        "__exception__": {"const": True},
        "args": {"type": "array"},
        "attributes": {"type": "object", "properties": {"_pyroTraceback": {"type": "array", "items": {"type": "string"}}}},
    },
    "required": ["__class__", "__exception__", "args"],
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}


def _responses(oneway: bool) -> dict[str, Any]:
    ok = {"description": "oneway: sent, no result (empty body)"} if oneway else {
        "description": "the result (a remote generator streams application/x-ndjson, one item a line)",
        "content": {"application/json": {"schema": _ANY}, "application/x-ndjson": {"schema": {"type": "string"}}}}
    json_error = {"content": {"application/json": {"schema": _ERROR}}}
    return {
        "200": ok,
        "400": {"description": "bad arguments or body", **json_error},
        "403": {"description": "name not exposed, or wrong gateway key", **json_error},
        "404": {"description": "unknown name, method or attribute", **json_error},
        "413": {"description": "request body too large", **json_error},
        "500": {"description": "the remote method raised", "content": {"application/json": {"schema": _EXCEPTION}}},
        "504": {"description": "the daemon did not answer within the gateway's timeout", **json_error},
    }


def _operation_id(name: str, member: str, verb: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in f"{name}_{member}")
    return f"{verb}_{safe}"


def openapi_document(objects: dict[str, dict[str, Any]], title: str, version: str, keyed: bool) -> dict[str, Any]:
    """The document for ``objects``: name -> ``{"methods", "attributes", "oneway"}`` (or ``{"error": text}``)."""
    paths: dict[str, Any] = {}
    unreachable: dict[str, str] = {}
    for name in sorted(objects):
        meta = objects[name]
        if "error" in meta:
            unreachable[name] = meta["error"]
            continue
        oneway = set(meta.get("oneway", ()))
        for method in sorted(meta.get("methods", ())):
            paths[f"/pyro/{name}/{method}"] = {"post": {
                "operationId": _operation_id(name, method, "call"),
                "tags": [name],
                "summary": f"call {name}.{method}" + (" (oneway)" if method in oneway else ""),
                "parameters": [{"name": "X-Pyro-Options", "in": "header", "required": False,
                                "schema": {"type": "string", "enum": ["oneway"]}},
                               {"name": "X-Pyro-Correlation-Id", "in": "header", "required": False,
                                "schema": {"type": "string", "format": "uuid"}}],
                "requestBody": {"required": False, "content": {"application/json": {"schema": _CALL_BODY}}},
                "responses": _responses(method in oneway),
            }}
        for attribute in sorted(meta.get("attributes", ())):
            paths[f"/pyro/{name}/{attribute}"] = {"get": {
                "operationId": _operation_id(name, attribute, "get"),
                "tags": [name],
                "summary": f"read attribute {name}.{attribute}",
                "responses": _responses(False),
            }}
        paths[f"/pyro/{name}/$meta"] = {"get": {
            "operationId": _operation_id(name, "meta", "meta"),
            "tags": [name],
            "summary": f"methods and attributes of {name}",
            "responses": {"200": {"description": "metadata", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"methods": {"type": "array", "items": {"type": "string"}},
                                                 "attributes": {"type": "array", "items": {"type": "string"}},
                                                 "oneway": {"type": "array", "items": {"type": "string"}}}}}}}},
        }}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Remote objects behind an Ember HTTP gateway (Pyro5 gateway compatible)."},
        "paths": paths,
        "tags": [{"name": name} for name in sorted(objects) if name not in unreachable],
    }
    if keyed:
        document["components"] = {"securitySchemes": {"gatewayKey": {
            "type": "apiKey", "in": "header", "name": "X-Pyro-Gateway-Key"}}}
        document["security"] = [{"gatewayKey": []}]
    if unreachable:
        document["x-ember-unreachable"] = unreachable
    return document
