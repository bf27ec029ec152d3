"""Load, merge, substitute and validate the pipeline configuration."""

from pipeline.config.loader import load_config, load_yaml_files
from pipeline.config.model import Config, PipelineConfig, validate_config

__all__ = ["Config", "PipelineConfig", "load_config", "load_yaml_files", "validate_config"]
