"""A host process that runs flow work and nothing else (used by the durability tests):
``python host_process.py '<json settings>'``. Prints ``ready`` once its executor
runs, then works until it is stopped (or killed)."""

import json
import sys
import time


def main() -> None:
    settings = json.loads(sys.argv[1])
    sys.path.insert(0, settings["repo"])
    from host import create_app
    from host.services import flow_runs

    app = create_app(settings["config"], instance_path=settings["instance"])
    flow_runs.start_executor(app)
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
