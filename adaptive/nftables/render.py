"""Payloads written out: as the compact JSON text libnftables reads (`render`), and as an `nft -f`
script for people (`render_text`). The builders (`ruleset`) make the payloads; nothing here touches
the kernel.
"""

from __future__ import annotations

import json
from typing import Any

# An object of libnftables' JSON: a payload (`{"nftables": [command, ...]}`), one of its commands, or
# what a listing answers. Its shapes are libnftables' schema (libnftables-json(5)), not typed here.
Json = dict[str, Any]

# --- the JSON text libnftables reads ---

def render(payload: Json) -> str:
    """The payload as compact JSON text, which is what libnftables reads.

    Element lists, nearly all of a large ban batch, are written directly: `json.dumps` on 100,000
    small dicts takes longer than libnftables takes to parse them. Only the plain shapes
    `ruleset.build_ban` makes (an address, or {"elem": {"val", "timeout"[, "expires"]}}) with values
    that need no escaping are written so; anything else goes through `json.dumps`, so the text always
    parses back to the payload.
    """
    parts = []
    for command in payload["nftables"]:
        body = next(iter(command.values())) if len(command) == 1 else None
        element = body.get("element") if isinstance(body, dict) and len(body) == 1 else None
        if not isinstance(element, dict) or not isinstance(element.get("elem"), list):
            parts.append(json.dumps(command, separators=(",", ":")))
            continue
        head = json.dumps({k: v for k, v in element.items() if k != "elem"}, separators=(",", ":"))
        op = json.dumps(next(iter(command)))
        parts.append(f'{{{op}:{{"element":{head[:-1]},"elem":[{_render_elems(element["elem"])}]}}}}}}')
    return '{"nftables":[' + ",".join(parts) + "]}"


def _plain(text: str) -> bool:
    """A string JSON writes as it is: printable, no quote, no backslash."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _render_elems(elems: list[Any]) -> str:
    out: list[str] = []
    append = out.append
    for e in elems:
        kind = type(e)
        if kind is str:
            if _plain(e):
                append(f'"{e}"')
                continue
        elif kind is dict and len(e) == 1 and type(inner := e.get("elem")) is dict:
            val, timeout, expires = inner.get("val"), inner.get("timeout"), inner.get("expires")
            if type(val) is str and type(timeout) is int and _plain(val):
                if len(inner) == 2:
                    append(f'{{"elem":{{"val":"{val}","timeout":{timeout}}}}}')
                    continue
                if len(inner) == 3 and type(expires) is int:
                    append(f'{{"elem":{{"val":"{val}","timeout":{timeout},"expires":{expires}}}}}')
                    continue
        append(json.dumps(e, separators=(",", ":")))
    return ",".join(out)


# --- the nft text form, for people: `adaptive ruleset --print --text` ---

def render_text(payload: Json) -> str:
    """The payload as an `nft -f` script, one command per line. Covers what the builders of `ruleset` make."""
    return "".join(_command(cmd) + "\n" for cmd in payload["nftables"])


def _command(cmd: Json) -> str:
    (verb, body), = cmd.items()
    (kind, obj), = body.items()
    if kind == "table":
        return f"{verb} table {obj['family']} {obj['name']}"
    where = f"{obj['family']} {obj['table']}"
    if kind == "counter":
        return f"{verb} counter {where} {obj['name']} {{ packets {obj['packets']} bytes {obj['bytes']} }}"
    if kind == "set":
        parts = [f"type {obj['type']};"]
        if obj.get("flags"):
            parts.append(f"flags {','.join(obj['flags'])};")
        if "timeout" in obj:
            parts.append(f"timeout {obj['timeout']}s;")
        if "size" in obj:
            parts.append(f"size {obj['size']};")
        if obj.get("elem"):
            parts.append(f"elements = {{ {', '.join(_expr(e) for e in obj['elem'])} }};")
        return f"{verb} set {where} {obj['name']} {{ {' '.join(parts)} }}"
    if kind == "chain":
        if "hook" not in obj:
            return f"{verb} chain {where} {obj['name']}"
        return (f"{verb} chain {where} {obj['name']} {{ type {obj['type']} hook {obj['hook']} "
                f"priority {obj['prio']}; policy {obj['policy']}; }}")
    if kind == "rule":
        return f"{verb} rule {where} {obj['chain']} {' '.join(_statement(s) for s in obj['expr'])}"
    if kind == "element":
        return f"{verb} element {where} {obj['name']} {{ {', '.join(_expr(e) for e in obj['elem'])} }}"
    raise ValueError(f"no text form for {verb} {kind}")


def _expr(e: Any) -> str:
    if isinstance(e, (str, int)):
        return str(e)
    if isinstance(e, list):
        return ",".join(_expr(x) for x in e)
    (kind, v), = e.items()
    if kind == "payload":
        return f"{v['protocol']} {v['field']}"
    if kind == "meta":
        return f"meta {v['key']}"
    if kind == "ct":
        return f"ct {v['key']}"
    if kind == "&":
        return f"{_expr(v[0])} & {_expr(v[1])}"
    if kind == "set":
        return "{ " + ", ".join(_expr(x) for x in v) + " }"
    if kind == "prefix":
        return f"{v['addr']}/{v['len']}"
    if kind == "elem":
        text = _expr(v["val"])
        if "timeout" in v:
            text += f" timeout {v['timeout']}s"
        if "expires" in v:
            text += f" expires {v['expires']}s"
        return text
    raise ValueError(f"no text form for expression {kind}")


def _statement(s: Json) -> str:
    (kind, v), = s.items()
    if kind == "match":
        right = _expr(v["right"])
        if v["left"] in ({"meta": {"key": "iif"}}, {"meta": {"key": "oif"}}):
            right = f'"{right}"'
        op = "" if v["op"] in ("==", "in") else f"{v['op']} "
        return f"{_expr(v['left'])} {op}{right}"
    if kind in ("accept", "drop"):
        return kind
    if kind in ("goto", "jump"):
        return f"{kind} {v['target']}"
    if kind == "counter":
        return f'counter name "{v}"' if isinstance(v, str) else "counter"
    if kind == "reject":
        return f"reject with {v['type']} {v['expr']}"
    if kind == "limit":
        over = "over " if v.get("inv") else ""
        return f"limit rate {over}{v['rate']}/{v['per']} burst {v['burst']} packets"
    if kind == "ct count":
        return f"ct count {'over ' if v.get('inv') else ''}{v['val']}"
    if kind == "set":
        stmts = " ".join(_statement(x) for x in v.get("stmt", ()))
        return f"{v['op']} {v['set']} {{ {_expr(v['elem'])} {stmts} }}"
    raise ValueError(f"no text form for statement {kind}")
