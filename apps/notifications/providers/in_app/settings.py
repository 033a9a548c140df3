"""The in-app inbox (apps/inbox, docs/inbox.md): no remote provider, no credentials, no rate
limit, no receipts. Its "send" stores the chunk's inbox messages in one statement."""

from ..declaration import ProviderDeclaration

DECLARATION = ProviderDeclaration(senders={"in_app": ("in_app", "InAppProvider")})
