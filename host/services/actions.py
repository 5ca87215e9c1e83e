"""An action's form as the page and the API show it: fields, with the options of
their sources loaded when the fields they depend on have values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from ..db import Installation
from ..errors import MinihostError, NotFound, ValidationError
from ..forms import Field
from ..manifest import Action, Manifest
from ..principal import Principal
from .installations import manifest_of
from .sources import load_options

__all__ = ["FieldState", "FormState", "form_state"]


@dataclass
class FieldState:
    """A field plus what its dropdown holds right now."""

    field: Field
    depends_on: tuple[str, ...] = ()
    options: list[dict[str, Any]] | None = None
    error: str | None = None
    fallback: bool = False
    waiting_for: list[str] = dc_field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "name": self.field.name, "title": self.field.title, "type": self.field.type,
            "widget": self.field.widget, "required": self.field.required,
        }
        if self.field.description:
            item["description"] = self.field.description
        if self.field.has_default:
            item["default"] = self.field.default
        if self.field.enum is not None:
            item["enum"] = list(self.field.enum)
        if self.field.source:
            item["source"] = self.field.source
            item["dependsOn"] = list(self.depends_on)
            if self.options is not None:
                item["options"] = self.options
            if self.error is not None:
                item["optionsError"] = self.error
            if self.fallback:
                item["fallback"] = "input"
            if self.waiting_for:
                item["waitingFor"] = self.waiting_for
        return item


@dataclass
class FormState:
    manifest: Manifest
    action: Action
    fields: list[FieldState]

    def by_name(self) -> dict[str, FieldState]:
        return {state.field.name: state for state in self.fields}


def action_of(manifest: Manifest, name: str) -> Action:
    action = manifest.action(name)
    if action is None:
        raise NotFound(f"{manifest.title} has no action {name!r}")
    return action


def form_state(app: Flask, db: Session, principal: Principal, installation: Installation,
               action_name: str,
               values: Mapping[str, Any]) -> FormState:
    """The form, with each dropdown's options loaded for the current ``values``."""
    manifest = manifest_of(app, db, installation)
    action = action_of(manifest, action_name)
    states = []
    for item in action.form.fields:
        state = FieldState(item)
        if item.source:
            source = manifest.sources[item.source]
            state.depends_on = source.depends_on
            state.waiting_for = [n for n in source.depends_on if values.get(n) in (None, "")]
            if not state.waiting_for:
                try:
                    state.options = load_options(app, db, principal, installation, item.source,
                                                 values)
                except ValidationError:
                    state.options = None
                except MinihostError as error:
                    state.error = error.detail
                    state.fallback = item.fallback == "input"
        states.append(state)
    return FormState(manifest, action, states)
