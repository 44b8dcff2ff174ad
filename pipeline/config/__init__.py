from .loader import ConfigError, LoadedDomain, domain_names, load_config, load_domain
from .schema import ReferenceManagementConfig

__all__ = ["ConfigError", "LoadedDomain", "ReferenceManagementConfig", "domain_names", "load_config", "load_domain"]
