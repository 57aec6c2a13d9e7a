"""`python -m relayctl`: the operator's view of the redelivery queues (status, peek, replay)."""
