"""The engine every long body of trials runs on (searches and experiments alike).

A *trial* is one network trained with one seed.  The store (:mod:`.store`, one SQLite
file) records which trials exist, their protocol and their results; :mod:`.trial` trains
one; :mod:`.scheduler` runs the unfinished ones in child processes or on Ray;
:mod:`.recover` rebuilds a damaged store and reports status.  What a trial trains with is
one :class:`TrialPlan`; how the trials run is one :class:`RunOptions`.
"""
from .plan import RunOptions, TrialPlan
from .recover import check_rebuildable, rebuild_store, result_files, status
from .scheduler import TrialsHalted, execute
from .store import STORE_NAME, Store, StoreError, extends_protocol, worker_id
from .trial import check_data, run_trial

__all__ = ["TrialPlan", "RunOptions", "Store", "StoreError", "STORE_NAME", "extends_protocol", "worker_id",
           "run_trial", "check_data", "execute", "TrialsHalted", "rebuild_store", "check_rebuildable",
           "result_files", "status"]
