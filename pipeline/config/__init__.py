from .loader import ConfigError, load_config
from .schema import ReferenceManagementConfig

__all__ = ["ConfigError", "ReferenceManagementConfig", "load_config"]
