"""The gateway's own settings: the ``gateway`` YAML section and ``QS_GATEWAY_*`` variables, one
module per concern (those of Redis are in :mod:`.redis`, the notification targets in
:mod:`.notifications`)."""

from .auth_limits import AuthLimitSettings
from .http import HttpSettings
from .manager import ManagerSettings
from .serving import ServingSettings
from .streams import StreamSettings
from .submissions import SubmissionSettings

__all__ = [
    "AuthLimitSettings",
    "HttpSettings",
    "ManagerSettings",
    "ServingSettings",
    "StreamSettings",
    "SubmissionSettings",
]
