"""The real peers the functions meet, on loopback: the providers' protocol stubs (Twilio's
Calls and Messages APIs, an SMTP server, PubNub publish: ``providers``), PostgreSQL
(``postgres``: ``DATABASE_URL`` or an embedded server, scratch databases per test), its
TLS front with a throwaway CA (``tls``) and a relay that can lose an answer (``pglink``).

May import: the runtime package and ``devstack``'s floor 0 (``polling``, ``loopback``).
Nothing of moto or the emulation.
"""
