"""A host process (used by the durability and scale-out tests):
``python host_process.py '<json settings>'``. Without ``serve``, it runs flow work and
nothing else; with ``serve``, it also answers HTTP on a port of its own, reading its
configuration from the instance's ``minihost.cfg`` as a deployed host does. Prints
``ready`` (and the port) once it works, then works until it is stopped (or killed)."""

import json
import sys
import time


def main() -> None:
    settings = json.loads(sys.argv[1])
    sys.path.insert(0, settings["repo"])
    from host import create_app
    from host.services import flow_runs

    if settings.get("serve"):
        from werkzeug.serving import make_server

        app = create_app(instance_path=settings["instance"])
        flow_runs.start_executor(app)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        print(f"ready {server.server_port}", flush=True)
        server.serve_forever(poll_interval=0.1)
        return
    app = create_app(settings["config"], instance_path=settings["instance"])
    flow_runs.start_executor(app)
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
