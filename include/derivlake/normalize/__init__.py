"""Exchange payloads -> typed lake rows, parsed column-wise per batch; bad messages -> quarantine."""

from derivlake.normalize.registry import NORMALIZERS, normalizer_for

__all__ = ["NORMALIZERS", "normalizer_for"]
