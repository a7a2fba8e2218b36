"""What a weights load did, layer by layer (every loader returns one)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model layers with weights absent from the file
    unused: list[str] = field(default_factory=list)  # file layers the model does not have

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} layers"]
        if self.excluded:
            parts.append(f"excluded {len(self.excluded)}")
        if self.missing:
            parts.append(f"{len(self.missing)} model layers not in the file (e.g. {self.missing[0]})")
        if self.unused:
            parts.append(f"{len(self.unused)} file layers not in the model (e.g. {self.unused[0]})")
        return ", ".join(parts)
