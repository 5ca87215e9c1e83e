"""JSON Schema → form model → HTML, and the coercion and validation of values.

One implementation serves connect forms, action forms, the marketplace's field
lists and the API's form endpoint.
"""

from .model import Field, Form, build_form

__all__ = ["Field", "Form", "build_form"]
