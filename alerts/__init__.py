"""Alerting: rules and their state machine (the engine), and the way from alert to person
(routing, grouping, inhibition, silences, acks, the durable outbox and the notifiers)."""
