"""Smart-city twin services on ktwin's Python SDK (ports of ``examples/smart-city/services``)."""
