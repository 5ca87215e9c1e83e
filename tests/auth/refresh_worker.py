"""Runs actions on one installation from a separate process (used by the
concurrency and crash tests): ``python refresh_worker.py '<json settings>'``.

Prints one JSON line: the status and duration of each run.
"""

import json
import sys
import threading
import time


def main() -> None:
    settings = json.loads(sys.argv[1])
    sys.path.insert(0, settings["repo"])
    from host import create_app
    from host.db import Installation, User, get_database
    from host.principal import Principal
    from host.services.runs import run_action

    app = create_app(settings["config"], instance_path=settings["instance"])
    with get_database(app).sessions() as db:
        user = db.get(User, settings["user"])
        db.expunge(user)
    principal = Principal(user, settings["workspace"], "session:worker")
    results = []
    lock = threading.Lock()

    def one() -> None:
        started = time.monotonic()
        with get_database(app).sessions() as db:
            installation = db.get(Installation, settings["installation"])
            run = run_action(app, db, principal, installation, "fetch", {})
        with lock:
            results.append({"status": run.status, "seconds": time.monotonic() - started,
                            "error": run.error, "token": (run.output or {}).get("token")})

    while time.time() < settings["start_at"]:
        time.sleep(0.005)
    threads = [threading.Thread(target=one) for _ in range(settings["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(results), flush=True)
    get_database(app).engine.dispose()


if __name__ == "__main__":
    main()
