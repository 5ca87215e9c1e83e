"""The floor for bench/action_api.py: a hand-written Flask endpoint doing the same
upstream call with ``requests`` and no Minihost (no auth, no database)."""

import os

import requests
from flask import Flask

app = Flask(__name__)
UPSTREAM = os.environ["BENCH_UPSTREAM"]
local = __import__("threading").local()


def session() -> requests.Session:
    if not hasattr(local, "session"):
        local.session = requests.Session()
    return local.session


@app.post("/run")
def run() -> tuple[dict, int]:
    response = session().get(UPSTREAM + "/items", params={"q": "hello"}, timeout=10)
    response.raise_for_status()
    return {"status": "succeeded", "output": {"value": response.json()["id"]}}, 201
