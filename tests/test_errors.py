import pytest

from host import errors
from host.errors import (
    Bug,
    ConfigError,
    FieldError,
    ManifestError,
    ManifestProblem,
    NotFound,
    PolicyDenied,
    UpstreamFailed,
    ValidationError,
    to_cli_line,
    to_problem,
)


def test_public_names_are_exactly_all():
    public = {n for n in vars(errors) if not n.startswith("_") and n[0].isupper()}
    public -= {"Any", "Iterable", "Mapping", "PROBLEM_BASE"}
    assert public <= set(errors.__all__)


@pytest.mark.parametrize(
    ("error", "status", "family"),
    [
        (ConfigError("x"), 503, errors.OperatorSetup),
        (errors.DatabaseUnavailable("x"), 503, errors.OperatorSetup),
        (NotFound("x"), 404, errors.BadInput),
        (ValidationError([]), 422, errors.BadInput),
        (UpstreamFailed("x"), 502, errors.MinihostError),
        (PolicyDenied("x"), 403, errors.MinihostError),
        (Bug("x"), 500, errors.MinihostError),
    ],
)
def test_families_and_statuses(error, status, family):
    assert isinstance(error, family)
    assert to_problem(error)["status"] == status


def test_a_database_outage_is_not_a_provider_failure():
    assert not isinstance(errors.DatabaseUnavailable("x"), UpstreamFailed)
    assert not isinstance(ConfigError("x"), errors.BadInput)


def test_every_error_class_of_the_host_lives_in_errors():
    """Importing every module of the host, each MinihostError subclass (and every
    Exception subclass outside private helpers) is defined in host.errors."""
    import importlib
    import pkgutil

    import host

    for module in pkgutil.walk_packages(host.__path__, "host."):
        if ".migrations." not in module.name:
            importlib.import_module(module.name)
    found, todo = [], [errors.MinihostError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in found
                     if c.__module__ != "host.errors" and c.__module__.startswith("host."))
    assert outside == []


def test_a_run_records_its_error_in_one_shape():
    failed = errors.RequestFailed("the provider said no", "/actions/0/requests/1", 400,
                                  "name is taken")
    assert errors.run_error(failed) == {
        "type": "upstream-failed", "message": "the provider said no",
        "request": "/actions/0/requests/1", "providerStatus": 400,
        "providerMessage": "name is taken"}
    assert errors.run_error(errors.Interrupted("stopped")) == {
        "type": "interrupted", "message": "stopped"}


def test_validation_problem_has_field_errors():
    error = ValidationError([FieldError("title", "is required"), FieldError("n", "not a number")])
    assert to_problem(error) == {
        "type": "https://minihost.dev/problems/validation",
        "title": "Invalid values",
        "status": 422,
        "detail": "title: is required; n: not a number",
        "errors": [{"field": "title", "message": "is required"},
                   {"field": "n", "message": "not a number"}],
    }


def test_manifest_problem_lines():
    error = ManifestError([ManifestProblem("a/manifest.json", "/actions/0", "bad"),
                           ManifestProblem("a/manifest.json", "", "worse")])
    assert to_cli_line(error) == "Error: a/manifest.json /actions/0: bad\na/manifest.json /: worse"
    assert to_problem(error)["errors"] == [{"field": "/actions/0", "message": "bad"},
                                           {"field": "", "message": "worse"}]


def test_bugs_do_not_leak_details():
    assert to_problem(Bug("secret stack detail"))["detail"] == "internal error; see the host log"
