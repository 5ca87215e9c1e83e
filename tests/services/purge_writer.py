"""Records runs from a separate process while another purges (the retention tests):
``python purge_writer.py '<json settings>'``.

Prints ``writing`` once its first run is recorded, keeps recording until the
``stop`` file exists, then prints one JSON line: the milliseconds each write took.
"""

import json
import sys
import time
from pathlib import Path


def main() -> None:
    settings = json.loads(sys.argv[1])
    sys.path.insert(0, settings["repo"])
    from host import create_app
    from host.db import Run, get_database, new_id, record_action_use, utcnow

    app = create_app(settings["config"], instance_path=settings["instance"])
    database = get_database(app)
    stop = Path(settings["stop"])
    waits = []
    while not stop.exists():
        started = time.perf_counter()
        with database.write() as connection:
            now = utcnow()
            connection.execute(Run.__table__.insert(), {
                "id": new_id("run"), "workspace_id": settings["workspace"],
                "installation_id": settings["installation"], "kind": "action",
                "name": "createNote", "status": "running", "parameters": {},
                "sandbox": False, "started_at": now})
            record_action_use(connection, settings["installation"], "createNote", now)
        waits.append((time.perf_counter() - started) * 1000)
        if len(waits) == 1:
            print("writing", flush=True)
        time.sleep(0.001)
    print(json.dumps(waits), flush=True)
    database.engine.dispose()


if __name__ == "__main__":
    main()
