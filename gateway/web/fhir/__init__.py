"""FHIR R4 REST endpoints under /fhir: metadata, Observation, Patient, Device."""
