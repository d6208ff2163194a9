"""GenerationConfig driven by the C++ field list: every C++ field (HF names) is an attribute, with the
C++ defaults, parsing and validation, so a field added in C++ appears here without a Python change."""
import json
import math
import os

from . import _core

# Seed names that are aliases of HF names.
ALIASES = {"max_tokens": "max_new_tokens", "draft_model_id": "draft_model"}


def _canonical(settings):
    """settings under their HF names; two aliases of one field given different values are refused, not
    resolved by argument order."""
    out, given = {}, {}
    for k, v in settings.items():
        name = ALIASES.get(k, k)
        if name in out and not _same(out[name], v):
            raise ValueError(f"[config] {given[name]}={out[name]!r} and {k}={v!r} set the same field "
                             f"'{name}' to different values: give one")
        out[name], given[name] = v, k
    return out


def _same(a, b):
    a, b = (os.fspath(x) if isinstance(x, os.PathLike) else x for x in (a, b))  # a draft model's path
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # arrays compare elementwise
        return False


def _sequence_bias(v):
    """transformers' dict {(token ids): bias} as the list [[[token ids], bias], ...] the C++ side reads; the
    list form passes as it is."""
    if not isinstance(v, dict):
        return v
    bad = next((k for k in v if not isinstance(k, tuple)), None)
    if bad is not None:
        raise ValueError(f"[config] field 'sequence_bias' keys must be tuples of token ids, got {bad!r}")
    return [[list(k), b] for k, b in v.items()]


def _fields():
    return [f[0] for f in _core.generation_config_fields()]


FIELDS = tuple(_fields())
_FIELD_SET = frozenset(FIELDS)


def _json_default(v):
    # numpy / mlx scalars and other ints or floats the json module does not know
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"cannot turn {type(v).__name__} into a generation setting")


def _dumps(settings):
    try:
        # allow_nan=False: JSON has no NaN or Infinity, and the C++ parser would blame text the user never wrote.
        return json.dumps(settings, default=_json_default, allow_nan=False)
    except TypeError as e:
        raise ValueError(f"[config] {e}") from None
    except ValueError:
        bad = next((k for k, v in settings.items() if not _finite(v)), "?")
        raise ValueError(f"[config] field '{bad}' must be a finite number, got {settings.get(bad)!r}") from None


def _finite(v):
    """Whether v holds no NaN or infinity (numbers, and the numbers inside lists, tuples and dicts)."""
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (list, tuple)):
        return all(_finite(x) for x in v)
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    return True


class GenerationConfig:
    """HF GenerationConfig fields (see GenerationConfig.help()). Only the fields set here override the
    model's generation_config.json at generate() time, as in the CLI. Bad values raise ValueError."""

    # draft_model given as a loaded model (mlxgp or mlx-lm) rather than a path: kept here, and the field
    # holds this placeholder.
    LOADED_DRAFT = "<loaded model>"

    def __init__(self, **settings):
        object.__setattr__(self, "_settings", {})
        object.__setattr__(self, "_draft", None)
        self.update(**settings)

    @property
    def draft_model_object(self):
        """The draft model when draft_model_id was given as a loaded model, else None."""
        return self._draft

    # --- fields -------------------------------------------------------------------------------
    @staticmethod
    def field_names():
        return FIELDS

    @staticmethod
    def help():
        """{name: (help, default_text)} for every field."""
        return {n: (h, d) for n, h, d, _ in _core.generation_config_fields()}

    def update(self, **settings):
        """Sets several fields at once, then checks the whole config (ranges and consistency)."""
        self._apply(settings, True)
        return self

    def _apply(self, settings, check):
        trial, draft = dict(self._settings), self._draft
        for k, v in _canonical(settings).items():
            if k == "sequence_bias":
                v = _sequence_bias(v)
            if k == "draft_model" and v is not None and not isinstance(v, str):
                if isinstance(v, os.PathLike):
                    v = os.fspath(v)
                else:  # a loaded model: "default" and paths stay text, as the CLI takes them
                    draft, v = v, self.LOADED_DRAFT
            elif k == "draft_model":
                draft = None
            trial[k] = v
        _core.check_generation_config(_dumps(trial), check)  # ValueError naming the field
        object.__setattr__(self, "_settings", trial)
        object.__setattr__(self, "_draft", draft)

    def validate(self):
        """Raises ValueError on out-of-range or inconsistent settings (generate() checks this too)."""
        _core.check_generation_config(_dumps(self._settings), True)

    def set_from_text(self, name, text):
        """Sets one field from CLI-style text ("0.7", "2,3", "1,2;3"), as the mlxgp flags do."""
        name = ALIASES.get(name, name)
        full = json.loads(_core.set_generation_config_field(_dumps(self._settings), name, str(text)))
        self.update(**{name: full[name]})
        return self

    def __setattr__(self, name, value):
        if name.startswith("_"):
            raise AttributeError(name)
        # One field at a time: its value is parsed here, but consistency between fields (draft_model
        # needs use_speculative) is checked by validate() / generate(), so the order of assignments is free.
        self._apply({name: value}, False)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        key = ALIASES.get(name, name)
        if key not in _FIELD_SET:
            raise AttributeError(f"GenerationConfig has no field {name!r}")
        return self.to_dict()[key]

    def __dir__(self):
        return sorted(set(super().__dir__()) | _FIELD_SET | set(ALIASES))

    # --- conversions --------------------------------------------------------------------------
    def to_dict(self):
        """Every field (unset optionals None), the explicit settings applied over the C++ defaults."""
        return json.loads(_core.check_generation_config(_dumps(self._settings), False))

    def to_json(self):
        return _dumps(self.to_dict())

    def overrides(self):
        """Only the fields set on this object."""
        return dict(self._settings)

    def overrides_json(self):
        return _dumps(self._settings)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if not k.startswith("_") and k != "transformers_version"})

    @classmethod
    def from_json_file(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def copy(self, **changes):
        settings = {**self._settings, **_canonical(changes)}
        if self._draft is not None and settings.get("draft_model") == self.LOADED_DRAFT:
            settings["draft_model"] = self._draft
        return GenerationConfig(**settings)

    def __eq__(self, other):
        return isinstance(other, GenerationConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self._settings.items())
        return f"GenerationConfig({inner})"
