"""The running service: the pipeline graph and its lifecycle."""

from pipeline.service.service import Service, run

__all__ = ["Service", "run"]
