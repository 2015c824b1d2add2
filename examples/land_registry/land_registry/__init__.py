"""A land registry agency for the Resident Gateway, speaking SOAP-style XML over HTTP."""
