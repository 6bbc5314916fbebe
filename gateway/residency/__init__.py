"""Pure residency policy: which zone a request may touch. No I/O."""

from gateway.residency.policy import declared_zone_rejection, enrolment_zone_error, found_in_zone

__all__ = ["declared_zone_rejection", "enrolment_zone_error", "found_in_zone"]
