from .service import PreloadBusy, PreloadError, PreloadResult, ReferenceSyncService, preload_running, run_preload

__all__ = ["PreloadBusy", "PreloadError", "PreloadResult", "ReferenceSyncService", "preload_running", "run_preload"]
