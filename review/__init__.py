"""The review of rejected items as quality staff and the command line use it: the filters and
what reviewers see (:mod:`review.views`), masking of personal identifiers (:mod:`review.masking`)
and replay after a fix (:mod:`review.replay`). No HTTP here: the review pages and the review API
(``receiver/routes/review_*.py``) and ``intake replay`` stand on top of it; the store it reads is
:mod:`statestore.review`."""
