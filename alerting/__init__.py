"""From a risk decision to a responder at the door: levels, cases, dispatch, delivery.

The package's face to the rest of the service (streams/ and sandbox/): the runtime a worker owns, the
decision it hands over, and the dispatcher and responder registry the demo drives directly. The console
is :mod:`alerting.console`, a sub-package with its own ``__all__`` (it brings aiohttp along).
"""

from alerting.decision import Decision
from alerting.dispatcher import Dispatcher
from alerting.responders import ResponderRegistry
from alerting.runtime import AlertingRuntime

__all__ = ["AlertingRuntime", "Decision", "Dispatcher", "ResponderRegistry"]
