"""Argument types of the public entry points, checked in Python: a wrong one is a one-line
`[component] name must be ..., got ...` TypeError naming the argument, instead of nanobind's multi-line
"incompatible function arguments" list of signatures (or a str silently iterated as a list). The kinds
accept what the nanobind casters accept (numpy / 0-d mlx scalars for numbers, arrays for id lists)."""
import functools
import inspect
import numbers
import operator
import os

import mlx.core as mx

from . import _core


class Kind:
    """What an argument may be: a description for the message, a test, and for lists the items' kind
    (so that a message names the bad item)."""

    def __init__(self, what, test, item=None):
        self.what, self.test, self.item = what, test, item

    def __or__(self, other):
        return Kind(f"{self.what} or {other.what}", lambda v: self.test(v) or other.test(v), self.item or other.item)


def _int32(v):
    # nanobind's int is C++'s 32-bit int; it takes anything with __index__ (numpy ints, 0-d mlx int arrays).
    if isinstance(v, bool):
        return False
    try:
        return -2**31 <= operator.index(v) < 2**31
    except TypeError:
        return False


def _number(v):
    if isinstance(v, (bool, str, bytes)):
        return False
    if isinstance(v, numbers.Real):
        return True
    try:  # 0-d mlx / numpy arrays, as nanobind's float caster takes them
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _ids(v):
    """Token ids: a list / tuple / range of ints, or a 1-d integer array (what nanobind's list caster takes)."""
    if isinstance(v, (str, bytes, dict)):
        return False
    if hasattr(v, "tolist"):
        v = v.tolist()
    try:
        return all(_int32(x) for x in v)
    except TypeError:  # not iterable
        return False


NONE = Kind("None", lambda v: v is None)
STR = Kind("a str", lambda v: isinstance(v, str))
INT = Kind("an int", _int32)
NUMBER = Kind("a number", _number)
BOOL = Kind("True or False", lambda v: isinstance(v, bool))
ARRAY = Kind("an mlx.core.array", lambda v: isinstance(v, mx.array))
PATH = Kind("a path (str or os.PathLike)", lambda v: isinstance(v, (str, os.PathLike)))
CALLABLE = Kind("a callable", callable)
HOOK = Kind("a Hook", lambda v: isinstance(v, _core.Hook))
GROUP = Kind("an mlx.core.distributed.Group", lambda v: isinstance(v, mx.distributed.Group))
IDS = Kind("a list of token ids (ints)", _ids)


def list_of(kind, what):
    """A list or tuple of `kind` items; a bare str is not a list of anything."""
    return Kind(what, lambda v: isinstance(v, (list, tuple)) and all(kind.test(x) for x in v), kind)


INTS = list_of(INT, "a list of ints")
STRS = list_of(STR, "a list of str")
HOOKS = list_of(HOOK, "a list of Hook objects")


def _shown(value):
    """None, booleans and numbers by value; anything else by its type's name."""
    if value is None or isinstance(value, numbers.Number):
        return repr(value)
    return type(value).__name__


def _lone_surrogate(value):
    """The index of a lone surrogate in a str (which has no UTF-8 form, so C++ cannot take it), else None."""
    try:
        value.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return e.start


def check(component, name, value, kind):
    if isinstance(value, str) and (at := _lone_surrogate(value)) is not None:
        raise TypeError(f"[{component}] {name} must be valid Unicode text, got a lone surrogate "
                        f"U+{ord(value[at]):04X} at index {at}")
    if not kind.test(value):
        if kind.item is not None and isinstance(value, (list, tuple)):
            bad = next((i for i, x in enumerate(value) if not kind.item.test(x)), None)
            if bad is not None:
                raise TypeError(f"[{component}] {name}[{bad}] must be {kind.item.what}, got {_shown(value[bad])}")
        raise TypeError(f"[{component}] {name} must be {kind.what}, got {_shown(value)}")
    return value


def checked(component, **kinds):
    """Decorator for a Python function: the arguments named in `kinds` are checked, however they are passed."""
    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                given = signature.bind(*args, **kwargs).arguments
            except TypeError as e:  # a missing or unknown argument, in Python's own words
                raise TypeError(f"[{component}] {fn.__name__}(): {e}") from None
            for name, kind in kinds.items():
                if name in given:
                    check(component, name, given[name], kind)
            return fn(*args, **kwargs)
        return wrapper
    return decorate


def check_method(cls, component, method, **kinds):
    """Puts a check in front of the nanobind method cls.method; `kinds` names its arguments in order."""
    original = getattr(cls, method)
    names = list(kinds)

    def wrapper(self, *args, **kwargs):
        for name, value in [*zip(names, args), *kwargs.items()]:
            if name in kinds:
                check(component, name, value, kinds[name])
        return original(self, *args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = method
    wrapper.__doc__ = original.__doc__
    setattr(cls, method, wrapper)
