from .alerts import Alert, AlertKind, ShareSnapshot
from .facts import DerivedReference, FactBatch, FactKind, FactStatus, IncomeFact, ScaleFact
from .inbox import InboxFile, InboxState
from .lookups import UnmappedValue, ValueMapping
from .quarantine import KeyProblem, QuarantinedRow, QuarantineState, RejectedKey
from .runs import RunStatus, SyncRun, SyncTableResult, SyncUpgrade, SyncWatermark, TableStatus
from .suggestions import KeySuggestion
from .uploads import FactUpload, UploadState

__all__ = [
    "Alert",
    "AlertKind",
    "DerivedReference",
    "FactBatch",
    "FactKind",
    "FactStatus",
    "FactUpload",
    "InboxFile",
    "InboxState",
    "IncomeFact",
    "KeyProblem",
    "KeySuggestion",
    "QuarantineState",
    "QuarantinedRow",
    "RejectedKey",
    "RunStatus",
    "ScaleFact",
    "ShareSnapshot",
    "SyncRun",
    "SyncTableResult",
    "SyncUpgrade",
    "SyncWatermark",
    "TableStatus",
    "UnmappedValue",
    "UploadState",
    "ValueMapping",
]
