"""Which packages the wheel holds; everything else is in setup.cfg.

The bundled catalog (``miniapps/``) and bundled plugins (``plugins/``) stay at the
repository's top level, where mini-app and plugin authors look for them, and ship
in the wheel as the data-only package ``minihost_bundled``. setup.cfg cannot list
found packages and mapped ones together, hence this file. An editable install maps
the same names onto the checkout, so both kinds of install find the folders through
one import lookup (``host.config.bundled_folder``).
"""

from setuptools import find_namespace_packages, setup

BUNDLED = {"minihost_bundled.miniapps": "miniapps", "minihost_bundled.plugins": "plugins"}

setup(
    packages=[*find_namespace_packages(include=["host", "host.*"], exclude=["*.__pycache__"]),
              *BUNDLED],
    package_dir=BUNDLED,
)
