from .service import PreloadError, PreloadResult, ReferenceSyncService, run_preload

__all__ = ["PreloadError", "PreloadResult", "ReferenceSyncService", "run_preload"]
