"""GET /fhir/metadata: the CapabilityStatement (R4 capabilitystatement.html, http.html#capabilities)
built from the same tables the search parser uses, so it cannot promise what is not served."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from gateway.fhir.search import CHAINS, INCLUDES, SEARCH_PARAMETERS
from gateway.web.appkeys import SETTINGS
from gateway.web.fhir.common import base_url
from gateway.web.fhir.outcome import FHIR_JSON, fhir_response, negotiate
from gateway.web.smart import token_endpoint

OAUTH_URIS: Final = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_DEFINITIONS: Final = {
    ("Observation", "patient"): "http://hl7.org/fhir/SearchParameter/clinical-patient",
    ("Observation", "code"): "http://hl7.org/fhir/SearchParameter/clinical-code",
    ("Observation", "date"): "http://hl7.org/fhir/SearchParameter/clinical-date",
}
_RESULT_PARAMETERS: Final = (
    ("_count", "number"),
    ("_sort", "string"),
    ("_summary", "token"),
    ("_total", "token"),
    ("_elements", "string"),
)
_INTERACTIONS: Final = {
    "Observation": ("read", "vread", "history-instance", "search-type"),
    "Patient": ("read", "search-type"),
    "Device": ("read", "search-type"),
}


def _chains(resource_type: str, name: str) -> dict[str, str]:
    """R4 CapabilityStatement has no element for chains: name them in the documentation."""
    chains = sorted(chain for chain, via in CHAINS[resource_type].items() if via == name)
    return {"documentation": "chains: " + ", ".join(chains)} if chains else {}


def capability_statement(base: str, token_url: str) -> dict[str, object]:
    resources = []
    for resource_type, parameters in SEARCH_PARAMETERS.items():
        resource: dict[str, object] = {
            "type": resource_type,
            "interaction": [{"code": code} for code in _INTERACTIONS[resource_type]],
            "versioning": "versioned" if resource_type == "Observation" else "no-version",
            "readHistory": resource_type == "Observation",
            "searchInclude": list(INCLUDES[resource_type]),
            "searchParam": [
                {
                    "name": name,
                    "type": str(kind),
                    **(
                        {"definition": _DEFINITIONS[(resource_type, name)]}
                        if (resource_type, name) in _DEFINITIONS
                        else {}
                    ),
                    **_chains(resource_type, name),
                }
                for name, kind in parameters.items()
            ]
            + [{"name": name, "type": kind} for name, kind in _RESULT_PARAMETERS],
        }
        if resource_type == "Observation":
            resource["operation"] = [
                {
                    "name": "lastn",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
                }
            ]
        resources.append(resource)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "wearable-gateway"},
        "implementation": {"description": "wearable-gateway clinic read API", "url": base},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "extension": [
                        {
                            "url": OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": token_url}],
                        }
                    ],
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "SMART Backend Services: client_credentials with a JWT "
                    "client assertion; see .well-known/smart-configuration",
                },
                "resource": resources,
            }
        ],
    }


async def get_metadata(request: web.Request) -> web.Response:
    """Public, as FHIR servers' capabilities are: it names no subject and no data."""
    negotiate(request)
    settings = request.app[SETTINGS]
    return fhir_response(capability_statement(base_url(request), token_endpoint(settings)))
