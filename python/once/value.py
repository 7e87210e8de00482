"""Plain value classes: equality, hashing and repr by their fields, as `@dataclass(frozen=True)`
gives them, without importing `dataclasses`.

`dataclasses` imports `inspect` (and with it `ast`, `dis` and `tokenize`), ~12 ms, and each
frozen dataclass costs ~1 ms more to create: ~20 ms of every run that has a step to run, most
of the time `once` itself spends when one file changed in a 10,000-file workspace. A subclass
lists its fields in `__slots__` and sets them once, in its own `__init__`; type checkers see
them as `Final` there.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see once/__init__.py
if TYPE_CHECKING:
    from typing import ClassVar


class Value:
    """Compared, hashed and shown by the attributes named in `FIELDS` (in that order)."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)  # noqa: S101 - for the type checker: same type as self
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({fields})"
