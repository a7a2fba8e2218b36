"""What a weights load did, layer by layer (every loader returns one)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model layers with weights absent from the file
    unused: list[str] = field(default_factory=list)  # file layers the model does not have
    left_out: list[str] = field(default_factory=list)  # of those, the ones the model leaves out by design

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} layers"]
        if self.excluded:
            parts.append(f"excluded {len(self.excluded)}")
        if self.missing:
            parts.append(f"{len(self.missing)} model layers not in the file (e.g. {self.missing[0]})")
        others = [name for name in self.unused if name not in self.left_out]
        if self.left_out:
            parts.append(f"left out {len(self.left_out)} layers this model does not have ({', '.join(self.left_out)})")
        if others:
            parts.append(f"{len(others)} file layers not in the model (e.g. {others[0]})")
        return ", ".join(parts)
