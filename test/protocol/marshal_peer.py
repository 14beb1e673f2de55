"""The real xml_marshaller, driven by the TypeScript tests: reads a JSON list of typed values
on stdin, answers for each the bytes Python's dumps() produces and what loads() makes of the
XML the TypeScript side produced."""
import base64
import json
import sys

from xml_marshaller.xml_marshaller import dumps, loads


def to_python(node):
    kind = node["t"]
    if kind == "none":
        return None
    if kind == "bool":
        return node["v"]
    if kind == "int":
        return int(node["v"])
    if kind == "float":
        return float(node["v"])
    if kind == "str":
        return node["v"]
    if kind == "list":
        return [to_python(item) for item in node["v"]]
    if kind == "tuple":
        return tuple(to_python(item) for item in node["v"])
    if kind == "dict":
        return {key: to_python(value) for key, value in node["v"]}
    raise ValueError(kind)


def from_python(value):
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": repr(value)}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, list):
        return {"t": "list", "v": [from_python(item) for item in value]}
    if isinstance(value, tuple):
        return {"t": "tuple", "v": [from_python(item) for item in value]}
    if isinstance(value, dict):
        return {"t": "dict", "v": [[key, from_python(item)] for key, item in sorted(value.items())]}
    raise ValueError(type(value))


answers = []
for case in json.load(sys.stdin):
    python_xml = dumps(to_python(case["value"]))
    decoded = from_python(loads(case["xml"].encode("utf-8")))
    answers.append({"xml": base64.b64encode(python_xml).decode(), "decoded": decoded})
json.dump(answers, sys.stdout)
