"""A node's parameter table: the :class:`Parameter` row and what acts on a whole table.

A row checks one raw value (:meth:`Parameter.check`) and says its valid values in words; a
table (:data:`Table`) gives its defaults, its checked values, the names a node was given but does
not have, and is declared on an rclpy node (:func:`declare`, read-only, with descriptions and
ranges). The two nodes' tables and their typed settings are in :mod:`instrument_seg.ros.params`.

Importing this module needs no ROS (launch files and tests use it without rclpy); only
:func:`declare`, handed a node, imports ``rcl_interfaces``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from instrument_seg.errors import InputError

#: Parameters every rclpy node declares itself (not unknown when given).
BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides")


@dataclass(frozen=True)
class Parameter:
    """One read-only node parameter.

    Attributes:
        name: the ROS parameter name.
        default: its default; its type is the parameter's ROS type (float: double).
        description: what ``ros2 param describe`` shows.
        choices: the valid values of a string parameter (empty: any).
        required: for a string: the hint of the error an empty value raises (empty: allowed).
        minimum: for a number: the smallest valid value, inclusive (None: no bound).
        maximum: for a number: the largest valid value, inclusive (None: no bound).
        minimum_note: what the minimum means, in the error sentence (e.g. ``" (all)"``).
        unit: the unit of a number, for the error sentence and the constraints (e.g. ``"s"``).
        note: the valid values in words where no choices or range say them.
        dynamic_typing: it also accepts values of another type (an integer or a numeric string
            for a double; a number for the threshold word).
    """

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    required: str = ""
    minimum: float | None = None
    maximum: float | None = None
    minimum_note: str = ""
    unit: str = ""
    note: str = ""
    dynamic_typing: bool = False

    def range_text(self) -> str:
        """The valid range in words (``"1 to 1000"``, ``"0 (default) to 256"``); "" if none."""
        if self.minimum is None and self.maximum is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        low, high = _num_text(self.minimum), _num_text(self.maximum)
        if self.maximum is None:
            return f"{low}{self.minimum_note} or more{unit}"
        if self.minimum is None:
            return f"at most {high}{unit}"
        return f"{low}{self.minimum_note} to {high}{unit}"

    def constraints(self) -> str:
        """The valid values in words, for the descriptor's ``additional_constraints``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.range_text():
            return f"from {self.range_text()}"
        if self.note:
            return self.note
        if self.required:
            return "not empty"
        return ""

    def check(self, value: Any) -> Any:
        """Checks one raw value and converts it to the default's type.

        Strings without choices come back stripped, floats as ``float`` (numeric strings from a
        launch file included), integers as ``int``, lists as lists of ``int``; others as they
        are.

        Raises:
            InputError: one sentence naming the parameter and the bad value.
        """
        if self.choices:
            if value not in self.choices:
                raise InputError(
                    f"parameter {self.name} is '{value}'; use one of {', '.join(self.choices)}"
                )
            return value
        if isinstance(self.default, bool):
            if not isinstance(value, bool):
                raise InputError(
                    f"parameter {self.name} is {_quoted(value)}; it must be true or false"
                )
            return value
        if isinstance(self.default, (int, float)):
            number = _number(value, integer=isinstance(self.default, int))
            if number is None:
                kind = "an integer" if isinstance(self.default, int) else "a number"
                raise InputError(f"parameter {self.name} is {_quoted(value)}; it must be {kind}")
            low = -math.inf if self.minimum is None else self.minimum
            high = math.inf if self.maximum is None else self.maximum
            if not (math.isfinite(number) and low <= number <= high):
                raise InputError(f"parameter {self.name} is {value}; use {self.range_text()}")
            return number
        if isinstance(self.default, list):
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise InputError(
                    f"parameter {self.name} is {_quoted(value)}; it must be a list of integers"
                )
            return [int(v) for v in value]
        if isinstance(self.default, str):
            if not isinstance(value, str) and not self.dynamic_typing:
                raise InputError(f"parameter {self.name} is {_quoted(value)}; it must be a string")
            text = str(value).strip()
            if self.required and not text:
                raise InputError(f"parameter {self.name} is empty; {self.required}")
            return text
        return value


def _num_text(value: float | None) -> str:
    """A bound in words: integers in full, floats as ``%g``."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _quoted(value: Any) -> str:
    """A raw value for an error sentence: strings quoted, ``None`` as "not set"."""
    if value is None:
        return "not set (an empty list or a value without a type)"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def _number(value: Any, integer: bool) -> float | int | None:
    """``value`` as an int (``integer``) or a float; a float also from an int or a numeric
    string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if integer:
        return value if isinstance(value, int) else None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


#: A node's parameters, in its YAML file's order.
Table = tuple[Parameter, ...]


def defaults(table: Table) -> dict[str, Any]:
    """name -> default, in the table's order (what the YAML file lists)."""
    return {p.name: p.default for p in table}


def checked(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Checks every value against its row (:meth:`Parameter.check`) and converts it to the
    default's type.

    Raises:
        InputError: one sentence naming the parameter and its bad value.
    """
    return {p.name: p.check(values[p.name]) for p in table}


def unknown_parameters(names: Iterable[str], table: Table) -> list[str]:
    """The names in ``names`` (parameters given to a node) that ``table`` does not declare,
    sorted; rclpy's own parameters (``use_sim_time``, ...) are not unknown."""
    known = {p.name for p in table} | set(BUILTIN_PARAMETERS)
    return sorted(n for n in set(names) - known if not n.startswith("qos_overrides."))


def unknown_warning(node_name: str, names: list[str], table: Table) -> str:
    """One sentence about parameters a node was given but does not have, with the closest
    known name for each where one is close (a typo)."""
    known = [p.name for p in table]
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return (
        f"ignoring parameter(s) that {node_name} does not have: {', '.join(parts)}; its "
        f"parameters are {', '.join(known)}"
    )


def override_problem(p: Parameter, value: Any) -> str:
    """Why a value given for ``p`` (a ``-p`` override or a YAML file's) cannot be used, in one
    sentence; "" when it is fine. Values of another ROS type than the default's count as bad
    unless ``p.dynamic_typing`` (a double takes an integer then)."""
    if not p.dynamic_typing and value is not None:
        expected = type(p.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            return (
                f"parameter {p.name} is {value}, an integer; it must be a double (write "
                f"{value}.0)"
            )
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            kinds = {bool: "true or false", int: "an integer", float: "a double",
                     str: "a string", list: "a list of integers"}
            return f"parameter {p.name} is {_quoted(value)}; it must be {kinds[expected]}"
    try:
        p.check(value)
    except InputError as exc:
        return str(exc)
    return ""


def declare(node: Any, table: Table) -> dict[str, str]:
    """Declares every parameter of ``table`` on an rclpy ``node``: read-only, with its
    description, its valid values as ``additional_constraints`` and its range as the
    descriptor's ``integer_range`` / ``floating_point_range``.

    A value given to the node (``-p``, a params file) that is of the wrong type or out of range
    does not raise here: the parameter keeps its default and the problem is returned, so that a
    lifecycle node comes up and reports it when it is configured (one sentence each).

    Returns:
        name -> the sentence saying why the given value was refused (empty: all fine).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import ParameterException

    overrides = getattr(node, "_parameter_overrides", {}) or {}
    problems: dict[str, str] = {}
    for p in table:
        descriptor = ParameterDescriptor(
            description=p.description,
            additional_constraints=p.constraints(),
            read_only=True,
            dynamic_typing=p.dynamic_typing,
        )
        integer = isinstance(p.default, int) and not isinstance(p.default, bool)
        if integer and p.minimum is not None:
            high = p.maximum if p.maximum is not None else 2**63 - 1
            descriptor.integer_range = [
                IntegerRange(from_value=int(p.minimum), to_value=int(high), step=1)
            ]
        elif isinstance(p.default, float) and p.minimum is not None and p.maximum is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(
                    from_value=float(p.minimum), to_value=float(p.maximum), step=0.0
                )
            ]
        given = overrides.get(p.name)
        problem = override_problem(p, given.value) if given is not None else ""
        if not problem:
            try:
                node.declare_parameter(p.name, p.default, descriptor)
                continue
            except ParameterException as exc:  # what rclpy refuses that the check let through
                problem = f"parameter {p.name}: {exc}"
        problems[p.name] = problem
        node.declare_parameter(p.name, p.default, descriptor, ignore_override=True)
    return problems


def values_of(node: Any, table: Table) -> dict[str, Any]:
    """The current values (name -> value) of the parameters ``table`` declared on ``node``."""
    return {p.name: node.get_parameter(p.name).value for p in table}
