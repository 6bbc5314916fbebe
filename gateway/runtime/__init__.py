"""What one running gateway process holds per zone, built by the composition root (`app.py`,
the CLI) and handed to the services: not use cases, not storage, not policy.

    zones      the Zone object (database, keys, caches) and the ZoneDirectory of those served
    key_ring   the key ring in use, kept in step with the zone's key file and database
    cache      TTL caches of hot-path lookups (credentials, subject resolution, pseudonyms)
"""
