"""Test helpers shipped with persistdict, so third-party backends prove themselves on the
same suite as the built-ins: subclass
[`MappingConformance`][persistdict.testing.MappingConformance] and define ``open_dict``."""

from persistdict.testing.conformance import MappingConformance as MappingConformance

__all__ = ["MappingConformance"]
