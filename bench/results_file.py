"""bench/results.json: each benchmark script owns one section and rewrites it atomically."""

import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json")


def update_results(name: str, section: dict) -> None:
    data = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError:
                data = {}
    data[name] = section
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, RESULTS)
