"""The commands: the ``intake`` command line (:mod:`intake.cli`) and the vendors' client
(:mod:`intake.client`). The top floor: nothing else imports this package."""
