"""Errors of the runtime that are not control-surface errors (those live in control.py)."""

from __future__ import annotations


class PipelineError(Exception):
    """The IR cannot be run by this runtime; the message says which part and why."""
