"""Every search parameter FHIR R4 (4.0.1) defines for the resource types this gateway serves, as
data: the names of observation.html#search, patient.html#search, device.html#search and the
parameters of all resources (search.html §2.1.1.1, resource.html#search, domainresource.html).

A name listed here that `gateway.fhir.search.SEARCH_PARAMETERS` does not support is a filter the
client meant: ignoring it would return data the client did not ask for, so it is
refused with 400 even without `Prefer: handling=strict`. Only names FHIR does not define are
"unknown" parameters that lenient handling may ignore (search.html §2.1.1.0 "handling").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Parameters of every resource (Resource, DomainResource) and the special ones of search.html.
_ALL_RESOURCES: Final = frozenset(
    {
        "_id", "_lastUpdated", "_profile", "_security", "_source", "_tag",  # Resource
        "_text", "_content", "_list", "_has", "_type", "_query", "_filter",
    }
)  # fmt: skip

R4_SEARCH_PARAMETERS: Final[Mapping[str, frozenset[str]]] = {
    "Observation": _ALL_RESOURCES
    | {
        "based-on", "category", "code", "code-value-concept", "code-value-date",
        "code-value-quantity", "code-value-string", "combo-code", "combo-code-value-concept",
        "combo-code-value-quantity", "combo-data-absent-reason", "combo-value-concept",
        "combo-value-quantity", "component-code", "component-code-value-concept",
        "component-code-value-quantity", "component-data-absent-reason",
        "component-value-concept", "component-value-quantity", "data-absent-reason", "date",
        "derived-from", "device", "encounter", "focus", "has-member", "identifier", "method",
        "part-of", "patient", "performer", "specimen", "status", "subject", "value-concept",
        "value-date", "value-quantity", "value-string",
    },
    "Patient": _ALL_RESOURCES
    | {
        "active", "address", "address-city", "address-country", "address-postalcode",
        "address-state", "address-use", "birthdate", "death-date", "deceased", "email",
        "family", "gender", "general-practitioner", "given", "identifier", "language", "link",
        "name", "organization", "phone", "phonetic", "telecom",
    },
    "Device": _ALL_RESOURCES
    | {
        "device-name", "identifier", "location", "manufacturer", "model", "organization",
        "patient", "status", "type", "udi-carrier", "udi-di", "url",
    },
}  # fmt: skip
