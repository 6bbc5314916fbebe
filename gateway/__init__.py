"""wearable-gateway: medical-wearable readings in, pseudonymised FHIR R4 Observations out, stored in
the subject's own zone."""

__version__ = "0.1.0"
