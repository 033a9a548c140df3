"""Outbound client webhooks (Standard Webhooks): delivery status changes are written to an
outbox (WebhookMessage) in the transaction that made them, then sent by tasks on the
`webhooks` queue, signed, retried on a fixed schedule and logged attempt by attempt.

events     the event types and what triggers them
outbox     the writer called where delivery statuses change (dispatch, receipts)
signing    secrets and the `webhook-signature` header
ssrf       which addresses a webhook may reach, checked at connect time
transport  one HTTP POST, pinned to the checked address
delivery   claim → send → record → retry, disable (services behind the task)
relay      the sweeper: re-publishes what is due and not in flight
services   endpoints: create, delete, rotate the secret, test, replay, disable
selectors  reads for the API and the admin
"""
