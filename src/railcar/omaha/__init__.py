"""Omaha v3 as update_engine speaks it: one model and codec for both the server and the agent.

* :mod:`railcar.omaha.model` — requests, responses, events, codes (``shared/spec/
  omaha-delivery.md`` §2–§3);
* :mod:`railcar.omaha.codec` — parse and build both directions; hardened XML only
  (no DTDs, entities or external references; bodies over 64 KiB refused);
* :mod:`railcar.omaha.errors` — the error tree.
"""
