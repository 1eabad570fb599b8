"""One way to name a stream setting held in a frozen dataclass (Framing, Lighting): a preset name,
an instance, a dict of its fields (from a JSON/TOML config), or None."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def resolve_preset(value: Any, cls: type[T], presets: dict[str, T | None], name: str) -> T | None:
    """`value` as a `cls` instance (or None): a key of `presets`, an instance, a dict of `cls`
    fields (lists become tuples), or None. Anything else, or an unknown field, is a ValueError
    naming the setting and what it accepts."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        fields = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - fields)
        if unknown:
            raise ValueError(f"{name}: unknown fields {unknown}; {cls.__name__} has {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    if isinstance(value, str) and value in presets:
        return presets[value]
    raise ValueError(f"{name} must be one of {sorted(presets)}, a plateaug.{cls.__name__}, a dict of its fields or "
                     f"None, got {value!r}")
