"""Mini-app manifests: load JSON or YAML, validate (schema + lint), compile.

The schema is published (``minihost schema``); the lint catches what a schema
cannot (placeholders, paths, sources, hosts). A manifest that fails is never
half-loaded: :class:`~host.errors.ManifestError` lists every problem with its
file and JSON pointer.
"""

from .lint import BUILTIN_AUTH_TYPES, CONFIG_RESERVED, RESERVED_PARAMETERS, SYSTEM_VALUES
from .loader import (
    compile_manifest,
    digest_of,
    find_manifest,
    load_manifest,
    manifest_schema,
    parse_text,
    read_document,
    validate_document,
    validated_digest,
)
from .model import Action, Auth, Manifest, Request, Source

__all__ = [
    "BUILTIN_AUTH_TYPES",
    "CONFIG_RESERVED",
    "RESERVED_PARAMETERS",
    "SYSTEM_VALUES",
    "Action",
    "Auth",
    "Manifest",
    "Request",
    "Source",
    "compile_manifest",
    "digest_of",
    "find_manifest",
    "load_manifest",
    "manifest_schema",
    "parse_text",
    "read_document",
    "validate_document",
    "validated_digest",
]
