"""The review store: the index of quarantined items, the workflow, notes, the access
log, replay bookkeeping and the statistics quality staff read.

* :meth:`ReviewRepository.index` is called by the quarantine indexer with a batch of rejected
  items and the consumer's next offsets, stored in one transaction (offsets live with the data,
  so an item is indexed exactly once however often the topic is replayed).
* Workflow: ``new → in_review → resolved | wont_fix | awaiting_resubmission`` (any status can be
  set from any other: staff correct mistakes); every change, assignment and note is appended to
  ``review_history`` with its author and time.
* Every read of an item (detail, export, replay) and every reveal of a masked identifier is
  appended to ``review_access_log`` by the caller, through :meth:`ReviewRepository.log_access`.
* :meth:`ReviewRepository.mark_replayed` records a replay after its events reached the log: the
  review item is resolved, and the sender's receipt item now names the new event (so it turns
  ``applied`` when the projector has applied it) and gets a ``replayed`` change in its feed.

Its parts: the records it reads and writes (:mod:`.records`), the queries — search, details,
access log, statistics (:mod:`.queries`) — and the writes of the workflow — indexing, status
changes, replay bookkeeping, the access log (:mod:`.workflow`). The review logic that HTTP and
the command line share (filters, masking, replay) is the top-level package ``review``.
"""

from statestore.review.problems import ProblemPage, ProblemRow
from statestore.review.queries import ReviewQueries
from statestore.review.records import (
    MAX_PAGE_SIZE,
    SORTS,
    STATUSES,
    AccessAction,
    AccessRow,
    HistoryRow,
    Page,
    RejectedItem,
    Replayed,
    ReviewFilter,
    ReviewRow,
    Statistics,
    Status,
    UnitDays,
    care_day,
    review_item_id,
)
from statestore.review.workflow import ReviewRepository

__all__ = [
    "MAX_PAGE_SIZE",
    "SORTS",
    "STATUSES",
    "AccessAction",
    "AccessRow",
    "HistoryRow",
    "Page",
    "ProblemPage",
    "ProblemRow",
    "RejectedItem",
    "Replayed",
    "ReviewFilter",
    "ReviewQueries",
    "ReviewRepository",
    "ReviewRow",
    "Statistics",
    "Status",
    "UnitDays",
    "care_day",
    "review_item_id",
]
