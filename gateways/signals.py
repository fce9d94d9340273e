"""What the gateway layer tells the layers above it.

Ingest learns that gateways came online; the remote-operations engine reacts by sending the
operations that waited for them. The signal lives here, below both, so neither imports the
other.
"""

from django.dispatch import Signal

#: Sent with `gateway_ids` (a list of primary keys) once their "online" status is stored.
gateways_online = Signal()
