"""imp-data: reproducible data curation and training harness for the Imp family of multimodal models."""

__version__ = "0.1.0"
