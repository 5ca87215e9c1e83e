"""JSON Schema → form model → HTML, and the coercion and validation of values.

One implementation serves connect forms, action forms, the marketplace's field
lists and the API's form endpoint. The form model itself is built when a manifest
is compiled (``host.manifest.form``), so runs and pages never build it again. The
HTML is ``templates/forms/_fields.html``.
"""

from ..manifest.form import Field, Form, build_form
from .values import coerce, validate

__all__ = ["Field", "Form", "build_form", "coerce", "validate"]
