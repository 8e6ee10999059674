"""Actions: what an item says happened to its object. Each model's fold gives them meaning."""

# The closed set of actions an item can carry; each model's fold says what they do to state.
ACTIONS = frozenset(
    {
        "upsert",  # the item is the object's whole current content
        "delete",  # the object was deleted at the source
        "restore",  # a deletion is undone
        "supplement",  # adds to the object (notification status T)
        "annul",  # the object should never have been reported (notification status C)
        "service_started",  # IPLOS: a service allocation begins
        "service_ended",
        "stop_from",  # IPLOS: a temporary stop begins
        "stop_to",
        "provider_changed",
    }
)
