"""The base of each family's criterion: the loss terms a recipe chose, as ``{name: value}``.

A criterion holds the term names resolved from the recipe (``loss.terms``, ``loss.box``)
through ``LOSSES``. Per step it prepares its family's *context* once (targets and outputs
aligned, in float32) and calls each term on it. The model's logged names, its loss weights
and the NaN guard all follow :attr:`Criterion.names`, so a new term is one registered
function and a recipe line.
"""

from __future__ import annotations

from detectlab.errors import ConfigError
from detectlab.registry import LOSSES, RegistryError


class Criterion:
    """Subclasses set ``FAMILY`` (the registered family of their terms), ``DEFAULT_TERMS``
    (the reference's terms) and ``BOX_TERMS`` (``loss.box`` choice -> the terms it selects;
    they replace the terms registered with role ``"box"``), and implement :meth:`context`."""

    FAMILY = ""
    DEFAULT_TERMS: tuple[str, ...] = ()
    BOX_TERMS: dict[str, tuple[str, ...]] = {}

    def __init__(self, terms=None, label_smoothing: float = 0.0):
        self.names = self.resolve_terms(terms)
        self.terms = {name: LOSSES.get(name) for name in self.names}
        self.label_smoothing = float(label_smoothing)

    @classmethod
    def family_terms(cls) -> list[str]:
        return [n for n in LOSSES.names() if getattr(LOSSES.get(n), "loss_family", None) == cls.FAMILY]

    @classmethod
    def resolve_terms(cls, terms=None, box: str | None = None) -> tuple[str, ...]:
        """The term names of ``loss.terms`` (the family's reference terms when empty) with the
        box terms of ``loss.box`` in place of the listed box terms. Unknown names, another
        family's terms, repeats and an unknown box choice are ``ConfigError`` lines."""
        names = list(terms or cls.DEFAULT_TERMS)
        for name in names:
            try:
                fn = LOSSES.get(name)
            except RegistryError as exc:
                raise ConfigError(f"loss.terms: {exc}") from None
            if getattr(fn, "loss_family", None) != cls.FAMILY:
                raise ConfigError(f"loss.terms: '{name}' is not a {cls.FAMILY} loss (its terms: {', '.join(cls.family_terms())})")
        if box is not None:
            if box not in cls.BOX_TERMS:
                raise ConfigError(f"loss.box: '{box}' is not a box loss of {cls.FAMILY} (one of: {', '.join(cls.BOX_TERMS)})")
            boxes = [i for i, n in enumerate(names) if LOSSES.get(n).loss_role == "box"]
            at = boxes[0] if boxes else len(names)
            names = [n for n in names[:at] if n not in cls.BOX_TERMS[box]] + list(cls.BOX_TERMS[box]) + [
                n for n in names[at:] if LOSSES.get(n).loss_role != "box"]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"loss.terms: '{repeated[0]}' is listed twice")
        if not names:
            raise ConfigError("loss.terms: at least one loss term is needed")
        return tuple(names)

    def group(self, group: str | None) -> tuple[str, ...]:
        """The names of the terms in ``group`` (every term for ``None``)."""
        return tuple(n for n in self.names if group is None or self.terms[n].loss_group == group)

    def context(self, x, y, outputs, group: str | None = None):
        """What the terms read, prepared once per step."""
        raise NotImplementedError

    def __call__(self, x, y, outputs, group: str | None = None) -> dict:
        """``{name: float32 scalar}`` of the terms (of ``group``) for one batch: ``x`` the
        model's inputs, ``y`` the loader's targets, ``outputs`` the model's outputs."""
        context = self.context(x, y, outputs, group)
        return {name: self.terms[name](context) for name in self.group(group)}
