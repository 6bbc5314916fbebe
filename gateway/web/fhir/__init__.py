"""FHIR R4 REST endpoints under /fhir (issue 4): metadata, Observation, Patient, Device."""
