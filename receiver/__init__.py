"""The HTTP gateway: routes, authentication, request parsing and producing to the event log."""
