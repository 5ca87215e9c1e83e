"""JSON Schema → form model → HTML, and the coercion and validation of values.

One implementation serves connect forms, action forms, the marketplace's field
lists and the API's form endpoint. The HTML is ``templates/forms/_fields.html``.
"""

from .model import Field, Form, build_form
from .values import coerce, validate

__all__ = ["Field", "Form", "build_form", "coerce", "validate"]
