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
        (ConfigError("x"), 400, errors.BadInput),
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
